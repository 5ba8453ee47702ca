"""Compare two zoo models side by side, as the paper's Tables 2-5 and Fig. 5.

    python -m zoo.compare vgg19-softmax vgg19-ecloss

Evaluates each model on ORL (reusing runs/<name>/evaluation/metrics.json when it exists and
--fresh is not given) and writes compare.md and fig5_compare.png to --out.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from . import hub

TABLES = [
    ("Table 2: verification (ORL held-out, 10-fold)", "verification",
     [("accuracy", "accuracy"), ("std", "std"), ("AUC", "auc"),
      ("TAR@FAR=1e-2", "tar_at_far_1e-2")]),
    ("Table 3: part explainability", "explainability",
     [("PE", "part_explainability"), ("regions on no part", "none_fraction")]),
    ("Table 4: location consistency", "explainability",
     [("LS (the paper's S_i)", "location_consistency"),
      ("LS-max (ours: mean share of the dominant part)", "location_consistency_max")]),
    ("Table 5: activation robustness", "explainability",
     [("mean peaks per map (10% prominence)", "activation_robustness")]
     + [(f"peaks at {t} prominence: {where}", ("peaks", t, where))
        for t in ("0", "0.1", "0.3") for where in ("ring", "interior")]
     + [("ICNN location instability (extra)", "location_instability")]),
    ("Input dependence (ours)", "explainability",
     [(label, ("input_dependence", key)) for label, key in (
         ("channels at a fixed cell whatever the input", "fixed_cell_share"),
         ("mean input dependence", "mean_dependence"),
         ("shown channels on the outer ring", "shown_ring_share"),
         ("16 strongest channels on the outer ring", "strongest_ring_share"),
         ("uniform outer-ring share", "uniform_ring_share"),
         ("peaks that follow a moved face", "shift_follows"),
         ("position channels (peak stays put)", "position_channel_share"))]),
]


def _lookup(section: dict, key):
    """section[key], or a nested value for a key path (tuple); None when missing."""
    for k in (key if isinstance(key, tuple) else (key,)):
        section = section.get(k) if isinstance(section, dict) else None
    return section


def stored_weights_sha256(name: str) -> Optional[str]:
    """The sha256 of a registered model's weights file (None for a name not in ZOO_HOME)."""
    folder = hub.local_models().get(name)
    weights = folder / hub.WEIGHTS_FILE if folder is not None else None
    return hub.file_sha256(weights) if weights is not None and weights.is_file() else None


def _metrics(name: str, fresh: bool, data: str) -> Dict[str, object]:
    """The model's evaluation: reused when it is of these data and of these weights (a model
    retrained under its name is evaluated again, never compared with its old numbers)."""
    from .evaluate import evaluate
    from .runs import METRICS_FILE, evaluation_dir
    path = evaluation_dir(name) / METRICS_FILE
    if path.exists() and not fresh:
        m = json.loads(path.read_text())
        current = stored_weights_sha256(name)
        same_weights = current is None or m.get(hub.WEIGHTS_SHA256) == current
        if m.get("data") == data and same_weights:
            return m
    return evaluate(name, data=data)


def _cell(v):
    if v is None:
        return "n/a"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def compare_table(metrics: Dict[str, Dict[str, object]]) -> str:
    names = list(metrics)
    out = []
    for title, section, rows in TABLES:
        out += [f"### {title}", "", "| metric | " + " | ".join(names) + " |",
                "|---|" + "---|" * len(names)]
        for label, key in rows:
            out.append(f"| {label} | " + " | ".join(
                _cell(_lookup(metrics[n].get(section) or {}, key)) for n in names) + " |")
        out.append("")
    return "\n".join(out)


def fig5_compare(path: Path, names: Sequence[str], image_index: int = 0,
                 data: str = "orl") -> Path:
    """Paper Fig. 5: one held-out face's target maps under each model."""
    from .builder import load
    from .data.orl import ORLFaces
    from .data.transforms import face_transform
    from .figures import feature_maps_figure
    maps, img = {}, None
    pil = ORLFaces("heldout", transform=None).load(image_index)
    for name in names:
        model = load(name)
        size = model.zoo_config["arch"]["input_size"]
        with torch.no_grad():
            maps[name] = model.forward_features(face_transform(size)(pil)[None])[0].numpy()
        img = np.asarray(pil.convert("RGB").resize((size, size)))
    return feature_maps_figure(path, img, maps)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m zoo.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_a")
    p.add_argument("model_b")
    p.add_argument("--out", default="runs/compare")
    p.add_argument("--fresh", action="store_true", help="re-evaluate even if metrics exist")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        metrics = {n: _metrics(n, args.fresh, "orl") for n in (args.model_a, args.model_b)}
        table = compare_table(metrics)
        fig = fig5_compare(out / "fig5_compare.png", [args.model_a, args.model_b])
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as e:
        print(f"zoo.compare: error: {e}", file=sys.stderr)
        return 2
    text = f"# {args.model_a} vs {args.model_b}\n\n{table}\n![Fig. 5]({fig.name})\n"
    (out / "compare.md").write_text(text)
    print(text)
    print(f"wrote {out}/compare.md and {fig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
