"""Evaluate a zoo model: verification accuracy and the paper's explainability metrics, with figures.

    python -m zoo.evaluate vgg19-ecloss                    # ORL: held-out pairs + part metrics
    python -m zoo.evaluate vgg19-ecloss --data lfw.bin     # verification on an insightface .bin
    python -m zoo.evaluate vgg19-ecloss --data faces_with_pts/   # images + iBUG .pts landmarks

Writes metrics.json, report.md and the figures (Fig. 5, 6, 7, part histogram) to --out (default
runs/<name>/evaluation), and channel_parts.json (each channel's dominant part) beside the model's
weights, where export and the runtime pick it up. The metrics and the table are computed by
zoo.channel_parts from the maps collected here.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from export.part_masks import PART_NAMES, part_masks_from_landmarks

from .channel_parts import (
    channel_parts_table,
    cross_fitted_shown,
    explainability_metrics,
    shown_measures,
)
from .data.landmarks import LandmarkFolder
from .data.orl import ORL_SPLITS
from .hub import WEIGHTS_SHA256, model_weights_sha256
from .metrics import explainability
from .parts import scale_landmarks
from .runs import evaluation_dir
from .validation import verification_on

__all__ = ["collect_explainability", "shifted_pair", "evaluate", "render_report", "main"]


def _orl_explain_source(split: str, orl_num_train: int, orl_split_seed: int,
                        orl_num_val: int = 0, orl_fold: int = 0):
    from .data.orl import ORL_HEIGHT, ORL_WIDTH, ORLFaces
    ds = ORLFaces(split, transform=None, num_train=orl_num_train, seed=orl_split_seed,
                  num_val=orl_num_val, fold=orl_fold)

    def item(i):
        return ds.load(i), ds.landmarks(i), (ORL_HEIGHT, ORL_WIDTH)
    return ds, len(ds), item


@torch.no_grad()
def collect_explainability(model, items, input_size: int, device=None, batch_size: int = 32,
                           shuffle_cells: bool = False):
    """Run the model over ``items`` (a list of (PIL image, 68 landmarks, (h, w))) and return
    target maps (I, C, n, n), IoUs (I, C, 7), part precisions (I, C, 7), part masks (I, 7, S, S),
    landmarks in the SxS frame
    (I, 68, 2), the resized images (I, S, S, 3) uint8, and the maps of the content-free probe
    images (B, C, n, n; zoo.data.content_free) for the input-dependence measures.

    shuffle_cells: a control - every map (faces, probes, shifted faces) has its cells shuffled
    (zoo.metrics.controls) before any metric sees it: the chance level of each map metric."""
    from .data.content_free import content_free_images
    from .data.transforms import face_transform
    from .metrics.controls import SHUFFLE_SEED, shuffle_map_cells
    tf = face_transform(input_size)
    device = torch.device(device) if device else next(model.parameters()).device
    model.eval()
    rng = np.random.default_rng(SHUFFLE_SEED)

    def maps_of(x):
        f = model.forward_features(x).float().cpu().numpy()
        return shuffle_map_cells(f, rng) if shuffle_cells else f

    fmaps, ious, precisions, masks, lms, imgs = [], [], [], [], [], []
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        x = torch.stack([tf(img) for img, _, _ in chunk]).to(device)
        f = maps_of(x)
        for (img, lm, hw), fm in zip(chunk, f):
            pts = scale_landmarks(lm, hw, (input_size, input_size))
            m = part_masks_from_landmarks(pts, input_size, input_size)
            region = explainability.top10_activation(fm, input_size)
            ious.append(explainability.part_iou(region, m))
            precisions.append(explainability.part_precision(region, m))
            masks.append(m)
            lms.append(pts)
            imgs.append(np.asarray(img.convert("RGB").resize((input_size, input_size))))
        fmaps.append(f)
    probes = content_free_images(input_size)
    x = torch.stack([tf(img) for img in probes.values()]).to(device)
    probe_maps = maps_of(x)
    # the same faces with their content moved one map cell to the right (shifted_pair)
    plain, moved = [], []
    for start in range(0, len(items), batch_size):
        pairs = [shifted_pair(img, input_size, model.feature_size)
                 for img, _, _ in items[start:start + batch_size]]
        plain.append(maps_of(torch.stack([tf(a) for a, _ in pairs]).to(device)))
        moved.append(maps_of(torch.stack([tf(b) for _, b in pairs]).to(device)))
    return {"fmaps": np.concatenate(fmaps), "ious": np.stack(ious),
            "precisions": np.stack(precisions), "masks": np.stack(masks),
            "landmarks": np.stack(lms), "images": np.stack(imgs), "probe_maps": probe_maps,
            "probe_kinds": list(probes),
            "shift_maps": (np.concatenate(plain), np.concatenate(moved))}


def shifted_pair(img, size: int, map_size: int):
    """Two size x size views of one face whose content differs by a shift of exactly one map
    cell (size / map_size pixels) to the right: the face is resized to (size + cell) x size and
    cropped at x = cell and at x = 0."""
    cell = size // map_size
    big = img.convert("RGB").resize((size + cell, size), resample=2)   # 2 = bilinear
    return big.crop((cell, 0, cell + size, size)), big.crop((0, 0, size, size))


def _fig6_channels(metrics, k: int = 6) -> List[int]:
    """The k channels with the most evidence (part share x input dependence, never a fixed-cell
    channel first); without input dependence: part share x IoU."""
    pc = metrics["per_channel"]
    if "evidence" in pc:
        score = np.asarray(pc["evidence"], dtype=np.float64)
    else:
        score = np.asarray(pc["dominant_share"]) * np.asarray(pc["mean_best_iou"])
    score = np.where(np.asarray(pc["dominant_part"]) < 0, score - 2, score)
    return [int(c) for c in np.argsort(-score, kind="stable")[:k]]


def evaluate(name_or_path: str, data: str = "orl", out: Optional[str] = None,
             split: str = "heldout", device: Optional[str] = None, max_images: Optional[int] = None,
             figures: bool = True, orl_num_train: int = 30, orl_split_seed: int = 0,
             write_channel_parts: bool = True, orl_num_val: int = 0,
             orl_fold: int = 0, shuffle_cells: bool = False,
             fit: Optional[str] = None) -> Dict[str, object]:
    """Evaluate one model; returns the metrics dict that metrics.json holds.

    fit: the faces the channel table that ranks the shown channels is fitted on, for the "shown"
    measures (shown_ring_share, shown_shift_*): "halves" (ORL's default: the faces of each half
    of the scored identities are ranked by the table fitted on the other half), an ORL split
    ("train", "val"; its faces are never the scored ones) or "same" (fitted on the faces it
    scores: circular, and the only choice for other data). The same-faces numbers are kept as
    input_dependence.self_fit; channel_parts.json is fitted on the scored faces either way.

    shuffle_cells: a control (chance levels), every map's cells shuffled before the explanation
    metrics; its channel_parts.json is never written to the model."""
    from .builder import load
    model = load(name_or_path)
    cfg = model.zoo_config
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available()
                                                           else "cpu")
    model.to(dev)
    size = int(cfg["arch"]["input_size"])
    name = cfg["name"]
    out_dir = Path(out) if out else evaluation_dir(name)
    out_dir.mkdir(parents=True, exist_ok=True)
    result: Dict[str, object] = {"model": name, "data": data, "config": {
        k: cfg[k] for k in ("arch", "loss", "head", "ecloss")}}
    sha = model_weights_sha256(model)  # binds metrics.json and channel_parts.json to the weights
    if sha is not None:
        result[WEIGHTS_SHA256] = sha

    items = None
    if data == "orl":
        # verification on the validation identities when choosing (split="val"), else held out
        result["verification"] = verification_on(model, "orl", size, dev,
                                                  orl_num_train=orl_num_train,
                                                  orl_split_seed=orl_split_seed,
                                                  orl_num_val=orl_num_val, orl_fold=orl_fold,
                                                  orl_split="val" if split == "val" else "heldout")
        ds, n, item = _orl_explain_source(split, orl_num_train, orl_split_seed, orl_num_val,
                                          orl_fold)
        idx = range(n if max_images is None else min(n, max_images))
        items = [item(i) for i in idx]
        result["explain_split"] = split
        fit = fit or "halves"
        if fit == split:
            raise ValueError(f"fit={fit!r} is the scored split; use 'same' for that")
    elif data.endswith(".bin"):
        result["verification"] = verification_on(model, data, size, dev)
    else:
        folder = LandmarkFolder(data)
        idx = range(len(folder) if max_images is None else min(len(folder), max_images))
        items = [folder.item(i) for i in idx]
        result["images_without_landmarks"] = [str(p) for p in folder.missing]

    if items:
        col = collect_explainability(model, items, size, dev, shuffle_cells=shuffle_cells)
        result["shuffled_cells"] = bool(shuffle_cells)
        result["explainability"] = explainability_metrics(col["fmaps"], col["ious"],
                                                          col["landmarks"], size,
                                                          col["probe_maps"], col["shift_maps"],
                                                          col["precisions"])
        if data == "orl" and fit != "same" and "input_dependence" in result["explainability"]:
            _fit_elsewhere(result, col, fit, model, size, dev, ds.labels[:len(items)],
                           (orl_num_train, orl_split_seed, orl_num_val, orl_fold), shuffle_cells)
        table = channel_parts_table(result["explainability"])
        if sha is not None:
            table[WEIGHTS_SHA256] = sha
        (out_dir / "channel_parts.json").write_text(json.dumps(table))
        if write_channel_parts and not shuffle_cells and model.zoo_dir is not None:
            (Path(model.zoo_dir) / "channel_parts.json").write_text(json.dumps(table))
        if figures:
            result["figures"] = _write_figures(out_dir, col, result["explainability"], name)
        np.savez_compressed(out_dir / "feature_maps_sample.npz", fmaps=col["fmaps"][:8],
                            images=col["images"][:8])
    (out_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    (out_dir / "report.md").write_text(render_report(result))
    result["out"] = str(out_dir)
    return result


def _fit_elsewhere(result, col, fit: str, model, size: int, dev, labels, orl_args,
                   shuffle_cells: bool) -> None:
    """Replace the shown measures of result["explainability"]["input_dependence"] by those
    ranked with a channel table fitted on other faces (evaluate's ``fit``); keep the same-faces
    ones as "self_fit"."""
    dep = result["explainability"]["input_dependence"]
    keys = ("shown_ring_share", "shown_shift_follows", "shown_shift_stays")
    dep["self_fit"] = {k: dep[k] for k in keys if k in dep}
    if fit == "halves":
        ids = sorted(set(labels))
        first = set(ids[:len(ids) // 2])
        groups = [[i for i, y in enumerate(labels) if (y in first) == half]
                  for half in (True, False)]
        if not all(groups):   # one identity (e.g. --max-images 10): no other faces to fit on
            dep["fit"] = {"faces": "same", "why": "fit='halves' needs 2 identities; got 1"}
            return
        dep.update(cross_fitted_shown(col, groups, size))
        dep["fit"] = {"faces": "halves", "identities": [[ids[k] for k in sorted(first)],
                                                        [k for k in ids if k not in first]]}
        return
    ds, n, item = _orl_explain_source(fit, *orl_args)
    other = collect_explainability(model, [item(i) for i in range(n)], size, dev,
                                   shuffle_cells=shuffle_cells)
    fitted = explainability_metrics(other["fmaps"], other["ious"], other["landmarks"], size,
                                    other["probe_maps"], other["shift_maps"],
                                    other["precisions"])
    dep.update(shown_measures(col["fmaps"], channel_parts_table(fitted), col["shift_maps"]))
    dep["fit"] = {"faces": fit, "identities": list(ds.identities), "num_faces": int(n)}


def _write_figures(out_dir: Path, col, metrics, name) -> Dict[str, str]:
    from . import figures
    imgs = col["images"]
    size = imgs.shape[1]
    # six faces spread evenly over the set: one per identity where the set holds several
    # identities in order (ORL: 10 images each)
    spread = np.linspace(0, len(imgs) - 1, min(6, len(imgs))).round().astype(int)
    faces = sorted(set(spread.tolist()))
    chans = _fig6_channels(metrics)
    parts = metrics["per_channel"]["dominant_part"]
    labels = [PART_NAMES[parts[c]] if parts[c] >= 0 else "none" for c in chans]
    chosen = [col["fmaps"][i][chans] for i in faces]          # (K, n, n) per chosen face
    heat = np.stack([explainability.upsample_maps(f, size).numpy() for f in chosen])
    regions = np.stack([explainability.top10_activation(f, size) for f in chosen])
    figs = {
        "fig5": figures.feature_maps_figure(out_dir / "fig5_feature_maps.png", imgs[faces[0]],
                                            {name: col["fmaps"][faces[0]]}),
        "fig6": figures.heatmaps_figure(out_dir / "fig6_heatmaps.png",
                                        [imgs[i] for i in faces], heat, regions, chans, labels),
        "fig7": figures.part_masks_figure(out_dir / "fig7_part_masks.png",
                                          [imgs[i] for i in faces],
                                          [col["masks"][i] for i in faces]),
        "histogram": figures.part_histogram_figure(
            out_dir / "part_histogram.png", np.asarray(metrics["per_channel"]["A"]),
            title=f"{name}: per-channel part histogram (channels by evidence)",
            num_images=metrics["num_images"], order=_fig6_channels(metrics, k=64)),
    }
    return {k: str(v) for k, v in figs.items()}


def _fmt(v, digits=4):
    return "n/a" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def render_report(result: Dict[str, object]) -> str:
    lines = [f"# Evaluation of {result['model']}", "", f"data: `{result['data']}`", ""]
    ver = result.get("verification")
    if ver:
        lines += ["## Verification (10-fold, threshold chosen on the other folds, flip-averaged)",
                  "", "| accuracy | std | AUC | TAR@FAR=1e-2 | TAR@FAR=1e-3 | pairs |",
                  "|---|---|---|---|---|---|",
                  f"| {_fmt(ver['accuracy'])} | {_fmt(ver['std'])} | {_fmt(ver['auc'])} | "
                  f"{_fmt(ver['tar_at_far_1e-2'])} | {_fmt(ver['tar_at_far_1e-3'])} | "
                  f"{ver['num_pairs']} |", ""]
        one = ver.get("one_view")
        if one:   # what a default (one-view) export embeds
            lines += [f"One view (no mirror average, as exports embed by default): accuracy "
                      f"{_fmt(one['accuracy'])} +- {_fmt(one['std'])}, AUC {_fmt(one['auc'])}, "
                      f"threshold {_fmt(one['threshold'])}.", ""]
    ex = result.get("explainability")
    if ex:
        parts = ex["per_channel"]["dominant_part"]
        hist = {p: sum(1 for d in parts if d == k) for k, p in enumerate(PART_NAMES)}
        lines += ["## Explainability (target layer, top-10% activation vs 7 part masks)", "",
                  "| PE | LS (paper) | LS-max (ours) | regions on no part | activation peaks "
                  "(10%) | ICNN location instability | MI at tau=1 (uniform / batch) | images | "
                  "channels |",
                  "|---|---|---|---|---|---|---|---|---|",
                  f"| {_fmt(ex['part_explainability'])} | {_fmt(ex['location_consistency'])} | "
                  f"{_fmt(ex.get('location_consistency_max'))} | "
                  f"{_fmt(ex.get('none_fraction'), 3)} | "
                  f"{_fmt(ex['activation_robustness'], 3)} | {_fmt(ex['location_instability'])} | "
                  f"{_fmt(ex.get('mi_tau1_uniform'), 3)} / {_fmt(ex.get('mi_tau1_batch'), 3)} | "
                  f"{ex['num_images']} | {ex['num_channels']} |", "",
                  "LS (paper) = mean_i sqrt(sum_k (A_ik - 1/7)^2) / 7 (at most 0.132); LS-max = "
                  "mean_i max_k A_ik (ours). A region whose best part IoU is below "
                  f"{ex.get('part_iou_floor', explainability.PART_IOU_FLOOR)} lands on no "
                  "part.", "",
                  "Channels by dominant part: " + ", ".join(f"{p} {n}" for p, n in hist.items())
                  + f", none {sum(1 for d in parts if d < 0)}", ""]
        if ex.get("peaks"):
            lines += ["Activation peaks per firing map by prominence threshold (share of the "
                      "map's range): all = outer ring + interior", "",
                      "| threshold | all | outer ring | interior |", "|---|---|---|---|"]
            lines += [f"| {t} | {_fmt(v['all'], 3)} | {_fmt(v['ring'], 3)} | "
                      f"{_fmt(v['interior'], 3)} |" for t, v in ex["peaks"].items()]
            lines.append("")
        dep = ex.get("input_dependence")
        if dep:
            lines += ["## Input dependence (faces vs content-free images: grey, black, white, "
                      "noise, smooth noise, checkerboard, ramp)", "",
                      "| channels at a fixed cell whatever the input | dead channels | mean input "
                      f"dependence | shown ({dep['shown_channels']}/image) on the outer ring | "
                      f"strongest {2 * dep['shown_channels']}/image on the outer ring | uniform |",
                      "|---|---|---|---|---|---|",
                      f"| {_fmt(dep['fixed_cell_share'], 3)} | {_fmt(dep['dead_share'], 3)} | "
                      f"{_fmt(dep['mean_dependence'], 3)} | {_fmt(dep['shown_ring_share'], 3)} | "
                      f"{_fmt(dep['strongest_ring_share'], 3)} | "
                      f"{_fmt(dep['uniform_ring_share'], 3)} |", ""]
            if "shift_follows" in dep:
                lines += ["Face content moved one map cell to the right: the share of channel "
                          f"peaks that follow it {_fmt(dep['shift_follows'], 3)} (shown channels "
                          f"{_fmt(dep['shown_shift_follows'], 3)}), that stay put "
                          f"{_fmt(dep['shift_stays'], 3)} (shown "
                          f"{_fmt(dep['shown_shift_stays'], 3)}); channels whose peak stays put "
                          f"on >= 90% of the faces: {_fmt(dep['position_channel_share'], 3)}.",
                          ""]
    for key, path in (result.get("figures") or {}).items():
        lines.append(f"![{key}]({Path(path).name})")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m zoo.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model",
                   help="registered name (zoo.list_models()), model folder or .safetensors")
    p.add_argument("--data", default="orl", help="orl | file.bin | folder of images with .pts")
    p.add_argument("--split", default="heldout", choices=ORL_SPLITS,
                   help="ORL images for the explainability metrics (default: held-out identities)")
    p.add_argument("--out", help="output folder (default runs/<name>/evaluation)")
    p.add_argument("--device", help="cpu | cuda")
    p.add_argument("--max-images", type=int)
    p.add_argument("--no-figures", action="store_false", dest="figures")
    p.add_argument("--fit", choices=("halves", "same") + ORL_SPLITS[:2],
                   help="ORL: the faces the channel table that ranks the shown channels is "
                        "fitted on for the shown measures: halves (default: each half of the "
                        "scored identities ranked by the other half's table), train, val, or "
                        "same (the scored faces themselves: circular)")
    p.add_argument("--swap-game", metavar="EXPORT_DIR",
                   help="also play the part-swap game (zoo.swap_game) on the ORL split with this "
                        "export of the model, both views; scores go into metrics.json")
    args = p.parse_args(argv)
    try:
        res = evaluate(args.model, args.data, args.out, args.split, args.device, args.max_images,
                       args.figures, fit=args.fit)
        if args.swap_game:
            from .swap_game import swap_game_metric
            res["swap_game"] = swap_game_metric(args.swap_game, args.split)
            (Path(res["out"]) / "metrics.json").write_text(json.dumps(res, indent=2))
    except (ValueError, FileNotFoundError, KeyError, RuntimeError) as e:
        print(f"zoo.evaluate: error: {e}", file=sys.stderr)
        return 2
    print(render_report(res))
    print(f"wrote {res['out']}/metrics.json, report.md and figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
