"""The study's variants: named settings of a training run (research.study trains them).

A variant is a dict of TrainConfig overrides of the study's preset (zoo.train_config) plus the
lab's settings (research.hooks.LAB_DEFAULTS: background, off_head, shuffled_faces, map_norm,
template_peaks), which train through research.hooks.ExperimentHook. Some variants are records
only: "...-uncapped" names runs made by code that no longer exists (commit 64bfa4d and earlier),
evaluated under that name and never trained again. The per-run records in docs/results/ carry a
variant's settings as they were when the run was made.
"""
from __future__ import annotations

from typing import Dict

from zoo.templates import DEFAULT_BETA, DEFAULT_TAU

__all__ = ["PAPER_ECLOSS", "TAU1_FIXED1", "VARIANTS", "SHUFFLED_SUFFIX", "UNCAPPED_SUFFIX",
           "base_variant", "check_variant"]

# Variants: TrainConfig overrides of the cpu preset. "ecloss" is the paper's setting (tau 1e-3,
# 400 templates, uniform marginal, beta from 1e-5 by the automatic rule); every variant states
# its ECLoss parameters so that none depends on the preset's ECLoss defaults.
PAPER_ECLOSS = {"loss": "ecloss", "tau": DEFAULT_TAU, "beta": DEFAULT_BETA, "beta_mode": "auto",
                "padding": "zeros", "template_peaks": "all", "content_free": 0.0, "translate": 0.0,
                "background": 0.0, "shuffled_faces": 0.0, "off_head": 0.0}
TAU1_FIXED1 = {**PAPER_ECLOSS, "tau": 1.0, "beta": 1.0, "beta_mode": "fixed"}
VARIANTS: Dict[str, Dict[str, object]] = {
    "softmax": {"loss": "softmax", "padding": "zeros", "translate": 0.0, "background": 0.0},
    "ecloss": dict(PAPER_ECLOSS),
    "ecloss-tau1": {**PAPER_ECLOSS, "tau": 1.0},
    "ecloss-tau1-batch": {**PAPER_ECLOSS, "tau": 1.0, "marginal": "batch"},
    "ecloss-tau1-fixed1": dict(TAU1_FIXED1),
    # our extension: maps normalised by their max before the correlation
    "ecloss-norm": {**PAPER_ECLOSS, "tau": 1.0, "map_norm": "max"},
    "ecloss-norm-batch": {**PAPER_ECLOSS, "tau": 1.0, "map_norm": "max", "marginal": "batch"},
    "ecloss-norm-fixed1": {**PAPER_ECLOSS, "tau": 1.0, "map_norm": "max", "beta": 1.0,
                           "beta_mode": "fixed"},
}
# Remedies for channels that fire at a fixed border cell whatever the input (docs/results.md),
# each a change of the tau = 1, beta = 1 setting (TAU1_FIXED1); all but the padding ones are our
# extensions.
VARIANTS.update({
    "ecloss-tau1-fixed1-batch": {**TAU1_FIXED1, "marginal": "batch"},
    "ecloss-reflect": {**TAU1_FIXED1, "padding": "reflect"},
    "ecloss-replicate": {**TAU1_FIXED1, "padding": "replicate"},
    "ecloss-circular": {**TAU1_FIXED1, "padding": "circular"},
    "ecloss-content-free-circular": {**TAU1_FIXED1, "content_free": 1.0, "padding": "circular"},
    "ecloss-translate": {**TAU1_FIXED1, "translate": 0.15},
    "ecloss-content-free": {**TAU1_FIXED1, "content_free": 1.0},
    "ecloss-content-free-0.1": {**TAU1_FIXED1, "content_free": 0.1},
    "ecloss-content-free-5": {**TAU1_FIXED1, "content_free": 5.0},
    "ecloss-content-free-reflect": {**TAU1_FIXED1, "content_free": 1.0, "padding": "reflect"},
    "ecloss-content-free-batch": {**TAU1_FIXED1, "content_free": 1.0, "marginal": "batch"},
})
# Runs made before content_free_penalty capped the term (kept as records; the code that trained
# them is commit 64bfa4d and earlier): evaluated under these names, never trained again.
UNCAPPED_SUFFIX = "-uncapped"
VARIANTS.update({f"{name}{UNCAPPED_SUFFIX}": VARIANTS[name] for name in (
    "ecloss-content-free", "ecloss-content-free-0.1", "ecloss-content-free-reflect",
    "ecloss-content-free-batch")})
VARIANTS.update({
    "ecloss-interior": {**TAU1_FIXED1, "template_peaks": "interior"},
    "softmax-reflect": {"loss": "softmax", "padding": "reflect", "translate": 0.0,
                        "background": 0.0},
    # the default plus one more change each: templates peaking only inside the map, or shifted
    # faces (ORL faces fill the frame, so hair and jaw sit on the 7 x 7 ring)
    "ecloss-content-free-reflect-interior": {**TAU1_FIXED1, "content_free": 1.0,
                                             "padding": "reflect", "template_peaks": "interior"},
    "ecloss-content-free-reflect-translate": {**TAU1_FIXED1, "content_free": 1.0,
                                              "padding": "reflect", "translate": 0.15},
})
# The ECLoss weight beta of the content-free + reflect setting, swept (0.1 to 10; 1 was the
# default): how hard must the maps be pushed towards the templates? And the 14 x 14 choice
# (reflection padding alone) at beta = 3.
VARIANTS.update({f"ecloss-content-free-reflect-beta{b:g}": {
    **TAU1_FIXED1, "beta": b, "content_free": 1.0, "padding": "reflect"}
    for b in (0.1, 0.3, 3.0, 10.0)})
VARIANTS["ecloss-reflect-beta3"] = {**TAU1_FIXED1, "beta": 3.0, "padding": "reflect"}
# A random background behind the head on half of the training faces (research.background): ORL's
# even dark background makes the hair/background edges the sharpest features of every image.
VARIANTS.update({
    "softmax-reflect-background": {"loss": "softmax", "padding": "reflect", "translate": 0.0,
                                   "background": 0.5},
    "ecloss-content-free-reflect-background": {**TAU1_FIXED1, "content_free": 1.0,
                                               "padding": "reflect", "background": 0.5},
    "ecloss-content-free-reflect-beta3-background": {**TAU1_FIXED1, "beta": 3.0,
                                                     "content_free": 1.0, "padding": "reflect",
                                                     "background": 0.5},
})
# The ICNN paper's part-shuffled images: half of the content-free images of a step are the
# batch's own faces cut into 4 x 4 tiles put back in a random order, pushed to the negative
# template like the blank ones: face textures without a face must not light a part channel.
VARIANTS.update({
    "ecloss-content-free-reflect-beta3-shuffled": {**TAU1_FIXED1, "beta": 3.0,
                                                   "content_free": 1.0, "padding": "reflect",
                                                   "shuffled_faces": 0.5},
})
# Landmark supervision (our extension): the share of each map's activation off the head is
# penalised (research.off_head.off_head_share), with random backgrounds behind the head on half
# of the faces so that "off the head" is not always ORL's dark wall.
VARIANTS.update({f"ecloss-content-free-reflect-beta3-offhead{w:g}": {
    **TAU1_FIXED1, "beta": 3.0, "content_free": 1.0, "padding": "reflect", "background": 0.5,
    "off_head": w} for w in (1.0, 3.0)})
# Controls (not methods): the default's network never trained ("untrained"), and the default with
# each template's cells shuffled ("...-permuted": the same MI pressure of the same strength
# towards maps that match no spatial shape), so a gain can be traced to template matching.
VARIANTS.update({
    "untrained": {**TAU1_FIXED1, "content_free": 1.0, "padding": "reflect", "max_steps": 0},
    "ecloss-content-free-reflect-permuted": {**TAU1_FIXED1, "content_free": 1.0,
                                             "padding": "reflect", "template_peaks": "permuted"},
})
# Controls computed at evaluation, from a trained run of another variant: "<variant>+shuffled"
# is that run's maps with the cells of every map shuffled (chance levels of the map metrics).
SHUFFLED_SUFFIX = "+shuffled"


def base_variant(variant: str) -> str:
    """The trained variant behind ``variant``: "<v>+shuffled" -> "<v>", others unchanged."""
    return variant[:-len(SHUFFLED_SUFFIX)] if variant.endswith(SHUFFLED_SUFFIX) else variant


def check_variant(variant: str) -> str:
    """``variant`` if it is a VARIANTS key or "<key>+shuffled"; else a ValueError listing them."""
    base = base_variant(variant)
    if base not in VARIANTS:
        raise ValueError(f"unknown study variant {variant!r}; choose from {sorted(VARIANTS)} "
                         f"(any of them + {SHUFFLED_SUFFIX!r} for the cell-shuffled control)")
    return variant
