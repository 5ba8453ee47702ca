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

TABLES = [
    ("Table 2: verification (ORL held-out, 10-fold)", "verification",
     [("accuracy", "accuracy"), ("std", "std"), ("AUC", "auc"), ("TAR@FAR=1e-2", "tar_at_far_1e-2")]),
    ("Table 3: part explainability", "explainability", [("PE", "part_explainability")]),
    ("Table 4: location consistency", "explainability", [("LS", "location_consistency")]),
    ("Table 5: activation robustness", "explainability",
     [("mean peaks per map", "activation_robustness"),
      ("ICNN location instability (extra)", "location_instability")]),
]


def _metrics(name: str, fresh: bool, data: str) -> Dict[str, object]:
    from .evaluate import evaluate
    path = Path("runs") / name / "evaluation" / "metrics.json"
    if path.exists() and not fresh:
        m = json.loads(path.read_text())
        if m.get("data") == data:
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
                _cell((metrics[n].get(section) or {}).get(key)) for n in names) + " |")
        out.append("")
    return "\n".join(out)


def fig5_compare(path: Path, names: Sequence[str], image_index: int = 0,
                 data: str = "orl") -> Path:
    """Paper Fig. 5: one held-out face's target maps under each model."""
    from . import registry
    from .data.orl import ORLFaces
    from .data.transforms import face_transform
    from .figures import feature_maps_figure
    maps, img = {}, None
    pil = ORLFaces("heldout", transform=None).load(image_index)
    for name in names:
        model = registry.load(name)
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
