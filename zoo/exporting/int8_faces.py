"""The faces of an int8 export: calibration faces and gate faces, resolved and checked before
anything is exported.

A model trained on ORL (config "training": data "orl") calibrates on faces of its own training
identities and is gated on its held-out identities (zoo.data.orl.orl_identity_splits with the
model's orl_num_train / orl_num_val / orl_split_seed). Other models need a calibration folder
(face images) and a gate folder (identity folders root/<identity>/<image> of faces never used
for training or calibration). A file that appears in both (same bytes) is refused, and so is a
gate set too small to judge a 1% flip rate.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from export.images import ImageError, is_image_file, load_image
from zoo.data.folders import scan_identity_folder
from zoo.data.orl import IMAGES_PER_IDENTITY, orl_identity_splits, orl_root
from zoo.hub import file_sha256

from .int8_gate import (
    GATE_MAX_FACES,
    GATE_MIN_DIFFERENT_PAIRS,
    GATE_MIN_PAIRS,
    GATE_MIN_SAME_PAIRS,
)

__all__ = ["Int8Error", "FaceSet", "orl_faces", "folder_faces", "identity_faces",
           "check_disjoint", "check_gate_size", "MIN_CALIB_FACES", "MAX_CALIB_FACES",
           "CALIB_SEED"]

MIN_CALIB_FACES = 8
MAX_CALIB_FACES = 512      # held as preprocessed images: 300 MB at 224 px
CALIB_SEED = 0


class Int8Error(ValueError):
    """The int8 export cannot run as asked: no calibration or gate faces, too few, overlap."""


@dataclass
class FaceSet:
    """Face image files; labels (identity per face) for a gate set, None for calibration."""
    source: str
    paths: List[Path]
    names: List[str]                      # how the metadata lists them
    labels: Optional[np.ndarray] = None
    skipped: List[str] = field(default_factory=list)   # "file: reason" of undecodable files


def _orl_split(cfg: Dict[str, Any]):
    t = cfg.get("training") or {}
    num_train, num_val = int(t.get("orl_num_train", 30)), int(t.get("orl_num_val", 0))
    seed = int(t.get("orl_split_seed", 0))
    train, _, heldout = orl_identity_splits(num_train, num_val, seed)
    return train, heldout, f"orl_num_train={num_train}, orl_num_val={num_val}, seed {seed}"


def orl_faces(cfg: Dict[str, Any], split: str, limit: Optional[int] = None) -> FaceSet:
    """The model's ORL "train" identities' faces (a seeded choice of ``limit``) or all faces of
    its "heldout" identities, labelled; from the split recorded in its config."""
    train, heldout, how = _orl_split(cfg)
    ids = train if split == "train" else heldout
    root = orl_root()
    keys = [(k, f"s{i}/{n}.pgm") for k, i in enumerate(ids)
            for n in range(1, IMAGES_PER_IDENTITY + 1)]
    if limit is not None and limit < len(keys):
        pick = np.random.default_rng(CALIB_SEED).permutation(len(keys))[:limit]
        keys = [keys[k] for k in sorted(pick)]
    what = "training" if split == "train" else "held-out"
    return FaceSet(source=f"ORL {what} identities ({len(ids)} people; {how})",
                   paths=[root / name for _, name in keys], names=[name for _, name in keys],
                   labels=np.array([k for k, _ in keys]))


def _decodable(paths: Sequence[Path], root: Path):
    """(kept paths, "file: reason" of the skipped ones): every file is decoded once, as the
    runtime decodes it, so a bad file is reported here and not inside the calibration."""
    kept, skipped = [], []
    for p in paths:
        try:
            load_image(p)
            kept.append(p)
        except (ImageError, OSError) as exc:
            skipped.append(f"{p.relative_to(root)}: {exc}")
    return kept, skipped


def folder_faces(folder: Union[str, os.PathLike], limit: int) -> FaceSet:
    """Face images anywhere under ``folder`` (image extensions, hidden files skipped), sorted;
    a seeded choice of ``limit`` when there are more. Undecodable files are skipped and listed."""
    root = Path(folder)
    if not root.is_dir():
        raise Int8Error(f"{root}: calibration folder does not exist or is not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p.name)
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if len(files) > limit:
        pick = np.random.default_rng(CALIB_SEED).permutation(len(files))[:limit]
        files = [files[k] for k in sorted(pick)]
    kept, skipped = _decodable(files, root)
    if len(kept) < MIN_CALIB_FACES:
        raise Int8Error(f"{root}: {len(kept)} decodable face images (need at least "
                        f"{MIN_CALIB_FACES} to calibrate; {len(skipped)} skipped)")
    return FaceSet(source=f"folder {root}", paths=kept,
                   names=[str(p.relative_to(root)) for p in kept], skipped=skipped)


def identity_faces(folder: Union[str, os.PathLike]) -> FaceSet:
    """Gate faces from identity folders root/<identity>/<image> (zoo.data.folders layout);
    undecodable files are skipped and listed; more than GATE_MAX_FACES: a seeded choice."""
    root = Path(folder)
    try:
        paths, labels, _ = scan_identity_folder(root)
    except NotADirectoryError as exc:
        raise Int8Error(f"gate folder: {exc}") from None
    if len(paths) > GATE_MAX_FACES:
        pick = sorted(np.random.default_rng(CALIB_SEED).permutation(len(paths))[:GATE_MAX_FACES])
        paths, labels = [paths[k] for k in pick], [labels[k] for k in pick]
    kept, skipped = _decodable(paths, root)
    label_of = dict(zip(paths, labels))
    return FaceSet(source=f"identity folders {root}", paths=kept,
                   names=[str(p.relative_to(root)) for p in kept],
                   labels=np.array([label_of[p] for p in kept]), skipped=skipped)


def check_disjoint(calib: FaceSet, gate: FaceSet) -> None:
    """The gate must judge faces calibration never saw: refuse a file (by content) in both."""
    seen = {file_sha256(p): p for p in calib.paths}
    both = [(seen[d], p) for p in gate.paths if (d := file_sha256(p)) in seen]
    if both:
        c, g = both[0]
        raise Int8Error(f"{len(both)} gate face(s) are also calibration faces (e.g. {g} = {c}); "
                        "the gate needs faces never used for calibration")


def check_gate_size(gate: FaceSet) -> None:
    """Int8Error unless the gate set gives enough pairs (all, same- and different-identity) for
    the gate's flip rate to mean something."""
    n = len(gate.paths)
    labels = gate.labels
    same = int(sum(c * (c - 1) // 2 for c in np.bincount(labels))) if n else 0
    total = n * (n - 1) // 2
    if total < GATE_MIN_PAIRS or same < GATE_MIN_SAME_PAIRS or total - same < (
            GATE_MIN_DIFFERENT_PAIRS):
        raise Int8Error(f"{gate.source}: {n} faces give {total} pairs ({same} same-identity); "
                        f"the int8 gate needs at least {GATE_MIN_PAIRS} pairs, "
                        f"{GATE_MIN_SAME_PAIRS} same-identity and {GATE_MIN_DIFFERENT_PAIRS} "
                        "different-identity, to measure a 1% flip rate")
