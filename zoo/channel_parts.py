"""What evaluation measures on a face set's target-layer maps, and the channel -> part table it
fits from them.

    explainability_metrics(fmaps, ious, landmarks, size, probe_maps, shift_maps, precisions)
        PE, the paper's LS (and LS-max), peaks, ICNN instability, input dependence, and per
        channel: its dominant part and the evidence that ranks it for explanations
    channel_parts_table(metrics)    what channel_parts.json holds (export and the runtime read it)
    template_mi_diagnostic(fmaps)   Eq. 5 at a common tau, comparable across models

zoo.evaluate collects the maps (collect_explainability) and writes the files.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch

from export.part_masks import PART_NAMES

from .metrics import explainability, input_dependence

__all__ = ["explainability_metrics", "channel_parts_table", "template_mi_diagnostic",
           "shown_measures", "cross_fitted_shown"]


def explainability_metrics(fmaps: np.ndarray, ious: np.ndarray, landmarks: np.ndarray,
                           input_size: int, probe_maps: Optional[np.ndarray] = None,
                           shift_maps: Optional[tuple] = None,
                           precisions: Optional[np.ndarray] = None) -> Dict[str, object]:
    """PE, the paper's LS (and our LS-max), peaks at several prominence thresholds split into
    outer ring and interior, ICNN location instability, and - with the maps of content-free
    probe images - input dependence and the evidence that ranks channels for explanations:
    evidence = (share of faces on the dominant part) x input dependence x (1 - share of faces on
    which the peak stays put when the face moves, with shift_maps) x (the mean share of the
    channel's region that lies on its dominant part, with precisions (I, C, P) from
    explainability.part_precision), 0 for a fixed-cell channel."""
    lc = explainability.location_consistency(ious)
    best_iou = ious.max(-1).mean(0)                              # per channel, over images
    mi_tau1 = template_mi_diagnostic(fmaps)
    peaks = explainability.peak_counts(fmaps)
    per_channel = {"dominant_part": lc["dominant_part"].tolist(), "S": lc["S"].tolist(),
                   "S_max": lc["S_max"].tolist(), "dominant_share": lc["dominant_share"].tolist(),
                   "none_share": lc["none_share"].tolist(), "mean_best_iou": best_iou.tolist(),
                   "A": lc["A"].tolist()}
    result = {
        # MI of Eq. 5 at tau = 1 (400 templates): comparable across models whatever tau they
        # were trained with; it also grows with the activation scale (docs/paper-notes.md)
        "mi_tau1_uniform": mi_tau1["uniform"],
        "mi_tau1_batch": mi_tau1["batch"],
        "part_explainability": explainability.part_explainability(ious),
        "location_consistency": lc["LS"],                # the paper's S_i formula
        "location_consistency_max": lc["LS_max"],        # ours: mean share of the dominant part
        "none_fraction": lc["none_fraction"],            # (image, channel) regions on no part
        "part_channels": float(np.mean(lc["dominant_part"] >= 0)),
        "part_iou_floor": explainability.PART_IOU_FLOOR,
        "activation_robustness": peaks[f"{explainability.PEAK_PROMINENCE:g}"]["all"],
        "peaks": peaks,
        "location_instability": explainability.location_instability(
            fmaps, landmarks, (input_size, input_size)),
        "num_images": int(len(fmaps)),
        "num_channels": int(fmaps.shape[1]),
        "per_channel": per_channel,
    }
    part_precision = None
    if precisions is not None:
        # per channel: the mean share of its region on its dominant part (0: a channel of no part)
        dom = lc["dominant_part"]
        on_dom = np.asarray(precisions)[:, np.arange(len(dom)), np.maximum(dom, 0)].mean(0)
        part_precision = np.where(dom >= 0, on_dom, 0.0)
        per_channel["part_precision"] = part_precision.tolist()
        result["part_precision"] = float(part_precision.mean())
    if probe_maps is not None:
        result["input_dependence"] = _input_dependence(fmaps, probe_maps, shift_maps, lc,
                                                       part_precision, per_channel)
    return result


def _input_dependence(fmaps: np.ndarray, probe_maps: np.ndarray, shift_maps: Optional[tuple],
                      lc: Dict[str, object], part_precision: Optional[np.ndarray],
                      per_channel: Dict[str, list]) -> Dict[str, object]:
    """The input-dependence summary of ``explainability_metrics``; adds each channel's input
    dependence, fixed flag, typical peak, evidence (and shift / peak-cell counts) to
    ``per_channel``."""
    from export.channel_table import PLACE_MAX_MAP_SIZE, SHOWN_CHANNELS
    n = fmaps.shape[-1]
    fixed = input_dependence.fixed_cell_channels(fmaps, probe_maps)
    dep = input_dependence.input_dependence(fmaps, probe_maps)
    face_peaks = fmaps.reshape(*fmaps.shape[:2], -1).max(-1)      # (I, C)
    typical = np.median(face_peaks, axis=0)
    evidence = lc["dominant_share"] * dep * ~fixed["fixed"]
    follow = None
    if shift_maps is not None:
        # a channel whose peak stays put when the face moves is a position detector: its
        # evidence shrinks with the share of faces on which it stayed put
        follow = input_dependence.translation_following(*shift_maps)
        evidence = evidence * (1.0 - follow["channel_stays"])
        per_channel["shift_stays"] = follow["channel_stays"].tolist()
    if part_precision is not None:
        # half a region on the background is half an explanation of the part it is named by
        evidence = evidence * part_precision
    per_channel.update({"input_dependence": dep.tolist(),
                        "fixed": fixed["fixed"].astype(int).tolist(),
                        "typical_peak": typical.tolist(), "evidence": evidence.tolist()})
    cells = input_dependence.argmax_cells(fmaps)                  # (I, C)
    # the runtime's ranking (export.channel_table.rank_channels) on the same table it will get
    table = {"channel_evidence": evidence.tolist(), "channel_typical_peak": typical.tolist(),
             "channel_part": lc["dominant_part"].tolist()}
    if n <= PLACE_MAX_MAP_SIZE:
        # where each channel peaks on these faces: the runtime's place term
        # (export.channel_table.place_agreement), for small maps only
        per_channel["peak_cells"] = input_dependence.peak_cell_counts(fmaps).tolist()
        table["channel_peak_cells"] = per_channel["peak_cells"]
    strongest = [cells[i, np.argsort(-face_peaks[i], kind="stable")[:2 * SHOWN_CHANNELS]]
                 for i in range(len(fmaps))]
    summary = {
        "fixed_cell_share": float(fixed["fixed"].mean()),
        "dead_share": float(fixed["dead"].mean()),
        "mean_dependence": float(dep[~fixed["dead"]].mean()) if (~fixed["dead"]).any()
        else 0.0,
        "strongest_ring_share": input_dependence.ring_share(np.stack(strongest), n),
        "uniform_ring_share": input_dependence.uniform_ring_share(n),
        "shown_channels": SHOWN_CHANNELS,
        "probe_images": int(len(probe_maps)),
    }
    # what explain shows (ranked by the table fitted on these same faces)
    summary.update(shown_measures(fmaps, table, shift_maps))
    if follow is not None:
        summary.update({
            "shift_follows": follow["follows"], "shift_stays": follow["stays"],
            "position_channel_share": follow["position_channels"]})
    return summary


def shown_measures(fmaps: np.ndarray, tables, shift_maps: Optional[tuple] = None
                   ) -> Dict[str, float]:
    """What `explain` shows on each face (the first SHOWN_CHANNELS that fire, ranked by a channel
    table): the share of shown peaks on the outer ring and, with shift_maps, the share of shown
    peaks that follow / stay put when the face moves. ``tables``: one channel table (as
    channel_parts_table writes it) for every face, or a list of one table per face."""
    from export.channel_table import SHOWN_CHANNELS, shown_channels
    if isinstance(tables, dict):
        tables = [tables] * len(fmaps)
    cells = input_dependence.argmax_cells(fmaps)                  # (I, C)
    shown_idx = [shown_channels(fmaps[i], tables[i], SHOWN_CHANNELS) for i in range(len(fmaps))]
    shown = np.array([cells[i, c] for i, idx in enumerate(shown_idx) for c in idx], int)
    out = {"shown_ring_share": input_dependence.ring_share(shown, fmaps.shape[-1])}
    if shift_maps is not None:
        shown_mask = np.zeros(fmaps.shape[:2], bool)
        for i, idx in enumerate(shown_idx):
            shown_mask[i, idx] = True
        follow_shown = input_dependence.translation_following(
            shift_maps[0] * shown_mask[..., None, None],
            shift_maps[1] * shown_mask[..., None, None])
        out.update({"shown_shift_follows": follow_shown["follows"],
                    "shown_shift_stays": follow_shown["stays"]})
    return out


def cross_fitted_shown(col: Dict[str, object], groups, input_size: int) -> Dict[str, float]:
    """shown_measures with every face ranked by a channel table fitted on OTHER faces: ``groups``
    (lists of face indices into the collected arrays, e.g. one per half of the identities); the
    faces of a group are ranked by the table fitted on all faces outside it. ``col``: what
    zoo.evaluate.collect_explainability returns."""
    n_faces = len(col["fmaps"])
    tables = [None] * n_faces
    for group in groups:
        fit = np.setdiff1d(np.arange(n_faces), np.asarray(group, int))
        if len(fit) == 0:
            raise ValueError("cross_fitted_shown: a group holds every face; nothing to fit on")
        shift = tuple(m[fit] for m in col["shift_maps"])
        metrics = explainability_metrics(col["fmaps"][fit], col["ious"][fit],
                                         col["landmarks"][fit], input_size, col["probe_maps"],
                                         shift, col["precisions"][fit])
        table = channel_parts_table(metrics)
        for i in group:
            tables[int(i)] = table
    if any(t is None for t in tables):
        raise ValueError("cross_fitted_shown: the groups must cover every face")
    return shown_measures(col["fmaps"], tables, col["shift_maps"])


def template_mi_diagnostic(fmaps: np.ndarray, tau: float = 1.0, num_templates: int = 400
                           ) -> Dict[str, float]:
    """Eq. 5 on held-out maps (I, C, n, n) at a common tau, both marginals, P(x) over all maps."""
    from .ecloss import mutual_information_reference
    from .templates import default_radius_for, get_templates
    n = fmaps.shape[-1]
    t = get_templates(n, num_templates, default_radius_for(n), tau, dtype=torch.float64)
    x = torch.as_tensor(fmaps, dtype=torch.float64).reshape(-1, n * n)
    return {m: float(mutual_information_reference(x, t, m)) for m in ("uniform", "batch")}


def channel_parts_table(metrics: Dict[str, object]) -> Dict[str, object]:
    """What export and the runtime need per channel: its part (-1: none), IoU, the paper's S_i,
    and - when input dependence was measured - the evidence that ranks channels (rank_channels
    in export/channel_table.py)."""
    pc = metrics["per_channel"]
    table = {"part_names": list(PART_NAMES), "channel_part": pc["dominant_part"],
             "channel_iou": pc["mean_best_iou"], "channel_consistency": pc["S"],
             "channel_share": pc["dominant_share"]}
    if "evidence" in pc:
        table.update({"channel_input_dependence": pc["input_dependence"],
                      "channel_fixed": pc["fixed"], "channel_typical_peak": pc["typical_peak"],
                      "channel_evidence": pc["evidence"]})
    if "shift_stays" in pc:
        table["channel_shift_stays"] = pc["shift_stays"]
    if "part_precision" in pc:
        table["channel_part_precision"] = pc["part_precision"]
    if "peak_cells" in pc:
        table["channel_peak_cells"] = pc["peak_cells"]
    return table
