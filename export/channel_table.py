"""The channel -> part table: its checks, and how `explain` ranks and shows channels from it.

The table (channel_parts.json) is written by zoo.evaluate on the torch side and read here by the
runtime; the ranking is one function (rank_channels) both sides call. No torch here.
"""
import json
import math
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

# Paper Eq. 8-9: maps are upsampled to the input size and the top 10% of pixels are kept.
TOP_FRACTION = 0.1
# How many channels `explain` shows; the evaluation's "shown ring share" uses the same number.
SHOWN_CHANNELS = 8
# The relative activation of a channel counts up to this many times its typical face peak.
MAX_RELATIVE_PEAK = 2.0
# Added to every cell's count of a channel's held-out peak cells before the place term is read
# off them (rank_channels): a cell where the channel never peaked still scores > 0.
PLACE_PSEUDOCOUNT = 0.5
# The place term was chosen at 7 x 7 maps; at 14 x 14 it put more shown channels on the border
# (on faces that are not ORL and on ORL validation identities, also with the counts pooled to
# 7 x 7 blocks: docs/results.md, Part 2, item 13), so zoo.evaluate stores the counts only for
# maps of at most this many cells a side.
PLACE_MAX_MAP_SIZE = 7

# Per-channel numbers of a channel -> part table (written by zoo.evaluate, see rank_channels).
_PER_CHANNEL_KEYS = ("channel_iou", "channel_consistency", "channel_share",
                     "channel_input_dependence", "channel_fixed", "channel_typical_peak",
                     "channel_shift_stays", "channel_part_precision", "channel_evidence")


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
    # per-channel numbers: the evaluation writes channel_iou, channel_consistency (S_i) and the
    # evidence that ranks channels (rank_channels); older tables have only the first two
    for key in _PER_CHANNEL_KEYS:
        vals = table.get(key)
        if vals is None:
            continue
        if (not isinstance(vals, list) or len(vals) != len(parts)
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           and math.isfinite(v) for v in vals)):
            raise ValueError(f"{where}: {key} must be a list of {len(parts)} finite numbers")
        out[key] = [float(v) for v in vals]
    cells = table.get("channel_peak_cells")
    if cells is not None:
        # per channel, how often its peak fell on each cell of the map on held-out faces
        if (not isinstance(cells, list) or len(cells) != len(parts) or not cells
                or not isinstance(cells[0], list) or not cells[0]
                or not all(isinstance(row, list) and len(row) == len(cells[0]) for row in cells)
                or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                           for row in cells for v in row)):
            raise ValueError(f"{where}: channel_peak_cells must be {len(parts)} lists of equal "
                             "length of counts (integers >= 0)")
        out["channel_peak_cells"] = [list(row) for row in cells]
    sha = table.get("weights_sha256")  # the weights the table was computed from (zoo.evaluate)
    if sha is not None:
        if not (isinstance(sha, str) and len(sha) == 64
                and all(c in "0123456789abcdef" for c in sha)):
            raise ValueError(f"{where}: weights_sha256 must be 64 lower-case hex digits")
        out["weights_sha256"] = sha
    return out


def place_agreement(cells: Sequence[int], counts: Any) -> np.ndarray:
    """Per channel: how usual it is for the channel to peak at ``cells[c]`` (this image's argmax
    cell, row-major), from its held-out peak-cell counts (C, n*n): (count at that cell + 0.5) /
    (its most frequent cell's count + 0.5), in (0, 1]."""
    counts = np.asarray(counts, dtype=np.float64) + PLACE_PSEUDOCOUNT
    cells = np.asarray(cells, dtype=np.int64)
    if counts.ndim != 2 or cells.shape != (counts.shape[0],):
        raise ValueError(f"place_agreement: {cells.shape} cells for counts {counts.shape}")
    if cells.min(initial=0) < 0 or cells.max(initial=0) >= counts.shape[1]:
        raise ValueError(f"place_agreement: cells must be in 0..{counts.shape[1] - 1} (the "
                         f"table counts {counts.shape[1]} cells per channel; got cell "
                         f"{int(cells.max(initial=0))}: a table written for other maps?)")
    return counts[np.arange(len(cells)), cells] / counts.max(axis=1)


def rank_channels(peaks: Sequence[float], table: Optional[Dict[str, Any]] = None,
                  one_part_at_a_time: bool = False,
                  cells: Optional[Sequence[int]] = None) -> List[int]:
    """Channel indices, most telling first, for one image whose channels peak at ``peaks``.

    With an evidence table (zoo.evaluate's channel_parts.json): score = evidence x relative
    activation, where evidence (in [0, 1]) = the share of held-out faces on which the channel
    lands on its part x its input dependence x (1 - the share of faces on which its peak stays
    put when the face moves) x the mean share of its region on its part, and 0 for a channel
    that fires at a fixed cell whatever the input; relative activation = peak / the channel's
    typical (median) face peak, capped at MAX_RELATIVE_PEAK; and, when the table has the
    channels' held-out peak cells and ``cells`` (this image's argmax cell per channel) is given,
    times place_agreement: a channel firing somewhere it seldom fires on faces is not showing
    the part it is named by on this face (chosen on faces that are not ORL, docs/results.md,
    Part 2). Channels in descending score, ties by raw peak.
    one_part_at_a_time=True takes channels with a positive score one part at a time instead (the
    best channel of every part, parts by their best score, then the second best of every part,
    ...; channels of no part and with no score follow): it shows more parts, but puts a part's
    weak best channel before another part's strong second one. It is off by default since the
    evidence order was chosen on validation identities (docs/results.md, Part 2): there, taking
    parts in turn put 0.31 of the shown channels on the 7 x 7 map's outer ring (mostly hair and
    jaw channels of weak evidence), the plain evidence order 0.23 (3 seeds).
    Without evidence: by raw peak, strongest first (what older exports did)."""
    peaks = np.asarray(peaks, dtype=np.float64)
    if table is None or "channel_evidence" not in table or "channel_typical_peak" not in table:
        return [int(c) for c in np.argsort(-peaks, kind="stable")]
    evidence = np.asarray(table["channel_evidence"], dtype=np.float64)
    typical = np.asarray(table["channel_typical_peak"], dtype=np.float64)
    if evidence.shape != peaks.shape or typical.shape != peaks.shape:
        raise ValueError(f"evidence table has {evidence.size} channels, the maps {peaks.size}")
    rel = np.minimum(np.divide(peaks, typical, out=np.zeros_like(peaks), where=typical > 0),
                     MAX_RELATIVE_PEAK)
    score = evidence * rel
    if cells is not None and "channel_peak_cells" in table:
        score = score * place_agreement(cells, table["channel_peak_cells"])
    order = [int(c) for c in np.lexsort((-peaks, -score))]
    parts = table.get("channel_part")
    if parts is None or not one_part_at_a_time:
        return order
    groups: Dict[int, List[int]] = {}
    for c in order:
        if score[c] > 0 and parts[c] >= 0:
            groups.setdefault(int(parts[c]), []).append(c)   # parts in order of their best
    ranked = [g[r] for r in range(max((len(g) for g in groups.values()), default=0))
              for g in groups.values() if r < len(g)]
    taken = set(ranked)
    return ranked + [c for c in order if c not in taken]


def shown_channels(maps: Any, table: Optional[Dict[str, Any]] = None,
                   top_k: int = SHOWN_CHANNELS) -> List[int]:
    """The channels `explain` shows for one image whose target maps are ``maps`` (C, n, n):
    the first ``top_k`` of rank_channels (with each channel's peak and argmax cell) that fire on
    it (peak > 0). A map that is zero everywhere has no place, and its argmax (the first cell)
    would be read as a peak in the top-left corner."""
    flat = np.asarray(maps, dtype=np.float64)
    flat = flat.reshape(flat.shape[0], -1)
    peaks = flat.max(axis=1)
    return [c for c in rank_channels(peaks, table, cells=flat.argmax(axis=1))
            if peaks[c] > 0][:top_k]


def read_parts_file(path: Path, num_channels: Optional[int]) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    return validate_parts(table, num_channels, str(path))

