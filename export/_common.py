"""Names shared by the exporter (torch side) and the runtime (onnxruntime side); no torch here."""
import json
import math
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

EMBEDDING_FILE = "embedding.onnx"
FEATUREMAP_FILE = "featuremap.onnx"
TORCHSCRIPT_FILE = "model.ts"
PARTS_FILE = "channel_parts.json"   # written by the evaluation step beside model.safetensors
FORMAT_VERSION = "1"                # bump when metadata keys or graph outputs change meaning

INPUT_NAME = "images"
EMBEDDING_OUTPUT = "embeddings"
FEATURE_OUTPUT = "feature_maps"
HEATMAP_OUTPUT = "heatmaps"
MASK_OUTPUT = "masks"

# Paper Eq. 8-9: maps are upsampled to the input size and the top 10% of pixels are kept.
TOP_FRACTION = 0.1


def top_k_pixels(input_size: int, fraction: float = TOP_FRACTION) -> int:
    """Rank of the per-channel threshold of the top-fraction mask of an input_size^2 heatmap;
    the same rounding as zoo.metrics.explainability.top10_activation (the evaluation's masks)."""
    return max(1, int(round(fraction * input_size * input_size)))


def validate_parts(table: Any, num_channels: Optional[int], where: str) -> Dict[str, Any]:
    """Check a channel -> part table ({"part_names", "channel_part", "channel_iou"}); returns
    it with plain Python types. ``where`` (a file name) prefixes every error."""
    if not isinstance(table, dict):
        raise ValueError(f"{where}: channel-part table must be a JSON object, got "
                         f"{type(table).__name__}")
    for key in ("part_names", "channel_part"):
        if key not in table:
            raise ValueError(f"{where}: channel-part table has no {key!r} entry")
    names = table["part_names"]
    if (not isinstance(names, list) or not names
            or not all(isinstance(n, str) and n for n in names)):
        raise ValueError(f"{where}: part_names must be a non-empty list of strings, got {names!r}")
    parts = table["channel_part"]
    if not isinstance(parts, list) or not all(isinstance(p, int) and not isinstance(p, bool)
                                              for p in parts):
        raise ValueError(f"{where}: channel_part must be a list of integers")
    if num_channels is not None and len(parts) != num_channels:
        raise ValueError(f"{where}: channel_part has {len(parts)} entries but the model has "
                         f"{num_channels} target-layer channels")
    bad = [p for p in parts if not -1 <= p < len(names)]
    if bad:
        raise ValueError(f"{where}: channel_part values must be -1 (no part) or 0..{len(names) - 1}"
                         f", got {bad[:5]}")
    out = {"part_names": list(names), "channel_part": list(parts)}
    # per-channel numbers: the evaluation writes channel_iou (and channel_consistency, S_i)
    for key in ("channel_iou", "channel_consistency"):
        vals = table.get(key)
        if vals is None:
            continue
        if (not isinstance(vals, list) or len(vals) != len(parts)
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           and math.isfinite(v) for v in vals)):
            raise ValueError(f"{where}: {key} must be a list of {len(parts)} finite numbers")
        out[key] = [float(v) for v in vals]
    return out


def read_parts_file(path: Path, num_channels: Optional[int]) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    return validate_parts(table, num_channels, str(path))


def json_list(values: Sequence[float]) -> str:
    return json.dumps([float(v) for v in values])
