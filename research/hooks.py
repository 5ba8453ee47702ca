"""The lab's training terms as one zoo.training_hook.TrainingHook: ``ExperimentHook``.

    background      P  a share P of the training faces get a random background behind the head
                       (research.background; needs landmarks: --data orl)
    off_head        W  the share of each map's activation off the head, weight W
                       (research.off_head; needs landmarks and no --translate)
    shuffled_faces  S  a share S of the content-free images are part-shuffled faces of the batch
                       (research.shuffled_faces; needs --content-free)
    map_norm        "max": maps divided by their max before the MI (research.ecloss_variants)
    template_peaks  "interior" | "permuted" (a control): other templates (research.ecloss_variants)

Each does what the option of the same name did in zoo.train before issue 21 (the same numbers,
the same random draws), so a run of the old code with ``--off-head 0.1`` and
``python -m research.train ... --off-head 0.1`` give the same checkpoint. ``LAB_DEFAULTS`` are
the values that change nothing; ``hook_from_settings`` returns None for them, so such a run
trains through zoo alone.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch

from zoo.data.transforms import face_transform
from zoo.training_hook import TrainingHook

from .background import RandomBackground
from .ecloss_variants import MAP_NORMS, TEMPLATE_PEAKS, normalize_maps, variant_templates
from .off_head import head_cells, off_head_share
from .shuffled_faces import patch_shuffled, shuffled_face_count

__all__ = ["LAB_DEFAULTS", "ExperimentHook", "hook_from_settings"]

LAB_DEFAULTS: Dict[str, object] = {"background": 0.0, "off_head": 0.0, "shuffled_faces": 0.0,
                                   "map_norm": "none", "template_peaks": "all"}


class ExperimentHook(TrainingHook):
    """The five experiment terms of the lab (module docstring); the defaults change nothing."""

    def __init__(self, background: float = 0.0, off_head: float = 0.0,
                 shuffled_faces: float = 0.0, map_norm: str = "none",
                 template_peaks: str = "all"):
        if not 0 <= background <= 1:
            raise ValueError(f"background must be a probability in [0, 1], got {background}")
        if not 0 <= shuffled_faces <= 1:
            raise ValueError(f"shuffled_faces must be a share in [0, 1], got {shuffled_faces}")
        if not off_head >= 0:
            raise ValueError(f"off_head must be a weight >= 0, got {off_head}")
        if map_norm not in MAP_NORMS:
            raise ValueError(f"map_norm must be one of {MAP_NORMS}, got {map_norm!r}")
        if template_peaks not in TEMPLATE_PEAKS:
            raise ValueError(f"template_peaks must be one of {TEMPLATE_PEAKS}, got "
                             f"{template_peaks!r}")
        self.background, self.off_head = float(background), float(off_head)
        self.shuffled_faces = float(shuffled_faces)
        self.map_norm, self.template_peaks = map_norm, template_peaks
        self._templates: Dict[tuple, torch.Tensor] = {}

    def settings(self) -> Dict[str, object]:
        return {"background": self.background, "off_head": self.off_head,
                "shuffled_faces": self.shuffled_faces, "map_norm": self.map_norm,
                "template_peaks": self.template_peaks}

    def describe(self) -> dict:
        return {"hook": f"{type(self).__module__}.{type(self).__name__}", **self.settings()}

    def check(self, cfg) -> None:
        """ValueError for a resolved zoo.train_config.TrainConfig these settings cannot train."""
        if self.off_head and cfg.translate:
            raise ValueError("--off-head needs the head mask where the face is: it does not "
                             "combine with --translate")
        if self.shuffled_faces and cfg.loss == "ecloss" and not cfg.content_free:
            raise ValueError("--shuffled-faces replaces some of the content-free images: it "
                             "needs --content-free > 0")
        off_head = self.off_head if cfg.loss == "ecloss" else 0.0  # a term of ECLoss only
        for value, option in ((self.background, "--background"), (off_head, "--off-head")):
            if value and cfg.data != "orl":
                raise ValueError(f"{option} needs 68 landmarks for every training image to find "
                                 f"the head; only --data orl ships them, not {cfg.data}")

    def wrap_dataset(self, dataset, cfg):
        self.check(cfg)
        if self.off_head and cfg.loss == "ecloss":
            # items carry the head mask; image and mask are flipped together, not by transform
            return RandomBackground(dataset, self.background,
                                    transform=face_transform(cfg.input_size, train=False),
                                    head_size=cfg.input_size, flip=cfg.flip)
        if self.background:
            return RandomBackground(dataset, self.background)
        return dataset

    def content_free_images(self, faces, free, generator):
        n_shuffled = min(shuffled_face_count(len(free), self.shuffled_faces), len(faces))
        if n_shuffled:
            # faces with their tiles out of order take the place of some blank/noise images
            free[:n_shuffled] = patch_shuffled(faces[:n_shuffled], generator)
        return free

    def templates(self, ecloss, bank):
        if self.template_peaks == "all":
            return bank
        key = (bank.device, bank.dtype)
        if key not in self._templates:
            t = variant_templates(ecloss.map_size, ecloss.num_templates, ecloss.radius,
                                  ecloss.tau, self.template_peaks)
            self._templates[key] = torch.from_numpy(t).to(device=bank.device, dtype=bank.dtype)
        return self._templates[key]

    def ecloss_maps(self, maps):
        return normalize_maps(maps, self.map_norm)

    def extra_loss(self, face_maps, extras):
        if not (extras and self.off_head):
            return None
        return self.off_head * off_head_share(face_maps, head_cells(extras[0],
                                                                    face_maps.shape[-2:]))


def hook_from_settings(settings: Dict[str, object]) -> Optional[ExperimentHook]:
    """The hook of the lab settings in ``settings`` (keys of LAB_DEFAULTS; None or absent: the
    default), or None when they are all defaults."""
    given = {k: settings[k] for k in LAB_DEFAULTS if settings.get(k) is not None}
    if all(given[k] == LAB_DEFAULTS[k] for k in given):
        return None
    return ExperimentHook(**given)
