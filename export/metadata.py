"""The metadata an export writes into each of its files (ONNX metadata_props, model.ts's
metadata.json): str -> str, JSON for structured values.

    meta = build_metadata(net.zoo_config, flip=True, parts=table)

It carries what the runtime needs to use a file on its own (input name and size, channel order,
mean / std, the embedding and feature-map shapes), the verification threshold chosen at
evaluation (and which val set it came from), a summary of the evaluation metrics, the ECLoss
settings, the channel -> part table, and an export id shared by all the files of one export.
export.model_dir reads and checks it on the runtime side.

No torch here: a zoo config (a dict) in, a dict out.
"""
from __future__ import annotations

import json
import uuid
from typing import Any, Dict, Optional, Sequence

from .channel_table import TOP_FRACTION
from .model_files import FORMAT_VERSION, INPUT_NAME


def json_list(values: Sequence[float]) -> str:
    return json.dumps([float(v) for v in values])


__all__ = ["build_metadata"]


def _pick_threshold(metrics: Dict[str, Any], key: Optional[str], flip: bool = True):
    """(threshold, source, same protocol?) from the evaluation reports; the first val set unless
    ``key``. An export without flip TTA takes the report's ``one_view`` threshold (chosen on the
    same pairs embedded without the mirror); a report from before that existed only has the
    flip-TTA one, which is then used and said to be from the other protocol."""
    reports = {k: v for k, v in (metrics or {}).items()
               if isinstance(v, dict) and isinstance(v.get("threshold"), (int, float))}
    if key is not None and key not in reports:
        raise ValueError(f"no verification threshold for val set {key!r} in the model's "
                         f"metrics (have: {sorted(reports) or 'none'})")
    name = key if key is not None else next(iter(reports), None)
    if name is None:
        return None, None, True
    rep = reports[name]
    one = rep.get("one_view")
    if not flip and isinstance(one, dict) and isinstance(one.get("threshold"), (int, float)):
        return float(one["threshold"]), f"{name}.one_view", True
    return float(rep["threshold"]), name, flip


def _summary_metrics(metrics: Dict[str, Any]) -> Dict[str, Any]:
    keep = ("accuracy", "std", "auc", "threshold", "tar_at_far_1e-2", "tar_at_far_1e-3",
            "num_pairs")
    return {k: {m: v[m] for m in keep + ("one_view",) if m in v}
            for k, v in (metrics or {}).items() if isinstance(v, dict)}


def build_metadata(cfg: Dict[str, Any], *, flip: bool, parts: Optional[Dict[str, Any]],
                   threshold_key: Optional[str] = None) -> Dict[str, str]:
    """ONNX metadata_props (str -> str) from a zoo config; JSON for structured values.

    ``export_id`` is new at every call: export_model writes one metadata dict into all of its
    files, so the runtime can refuse a folder that mixes files of two exports."""
    size = int(cfg["arch"]["input_size"])
    threshold, source, same_protocol = _pick_threshold(cfg.get("metrics") or {}, threshold_key,
                                                       flip)
    meta = {
        "format_version": FORMAT_VERSION,
        "export_id": uuid.uuid4().hex,
        "model_name": str(cfg["name"]),
        "zoo_version": str(cfg.get("zoo_version")),
        "input_name": INPUT_NAME,
        "input_size": str(size),
        "input_layout": "NCHW",
        "channel_order": str(cfg.get("channel_order", "RGB")),
        "mean": json_list(cfg["mean"]),
        "std": json_list(cfg["std"]),
        "pixel_scale": "1/255",
        "preprocessing": (f"convert to {cfg.get('channel_order', 'RGB')} (grey replicated, alpha "
                          f"dropped); bilinear resize (Pillow) to {size}x{size}, aspect ratio not "
                          "kept; x/255; (x - mean) / std per channel; float32 NCHW"),
        "flip_tta": "true" if flip else "false",
        "embedding_dim": str(int(cfg["arch"]["embedding_dim"])),
        "arch": json.dumps(cfg["arch"]),
        "metrics": json.dumps(_summary_metrics(cfg.get("metrics") or {})),
    }
    if cfg.get("alignment"):   # a reference model (dlib's ResNet): the input is an aligned chip
        meta["alignment"] = str(cfg["alignment"])
        meta["preprocessing"] = (f"align the largest face into a {size}x{size} chip "
                                 f"({cfg['alignment']}: the detector's 5 points -> "
                                 "export.align.chip_from_mtcnn_points5); x/255; (x - mean) / std "
                                 "per channel (dlib's (pixel - mean) / 256); float32 NCHW")
    else:   # an ECLoss / softmax VGG of the zoo
        meta.update({
            "loss": str(cfg.get("loss")),
            "head": str(cfg.get("head")),
            "ecloss": json.dumps(cfg.get("ecloss") or {}),
            "target_layer": str(cfg.get("target_layer")),
            "feature_size": str(int(cfg["feature_size"])),
            "feature_channels": str(int(cfg["feature_channels"])),
            "top_fraction": repr(TOP_FRACTION),
        })
    if threshold is not None:
        meta["threshold"] = repr(threshold)
        meta["threshold_source"] = (f"metrics.{source}.threshold: mean of the 10-fold "
                                    "thresholds on cosine similarity of "
                                    + ("flip-TTA embeddings" if flip else "one-view embeddings")
                                    + ("" if same_protocol else
                                       " (chosen with flip TTA: the model was trained before "
                                       "one-view thresholds were recorded; export it with "
                                       "--flip-tta to match)"))
    if parts is not None:
        meta["channel_parts"] = json.dumps(parts)
    return meta
