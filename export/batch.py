"""Batch use of an exported model (onnxruntime + numpy + Pillow only): embed a folder or a list
of images to a file, and search a gallery for the nearest identities of a probe.

    from export.verifier import FaceVerifier
    from export.batch import embed_images, save_embeddings, load_embeddings, gallery, search
    v = FaceVerifier("out/")
    emb = embed_images(v, "faces/")            # Embeddings: vectors (N, D), paths, identities
    save_embeddings("faces.npz", emb)          # + the model's name and export id
    g = gallery(v, "people/")                  # people/<identity>/<image>, or a .npz file
    hits = search(g, embed_images(v, ["probe.jpg"]), top_k=5)  # JSON-ready dicts

Inputs: a folder (every image file under it, sorted; an identity is the image's sub-folder), a
text file of image paths (one a line, relative to the file's folder), or a list of paths.
Undecodable images are skipped and listed (``Embeddings.skipped``: path -> reason), as zoo's
batch tools do (docs/data.md). The pairs file (``verify-pairs``) is export.pairs'.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from .images import ImageError, decode_image, is_image_file

__all__ = ["Embeddings", "Progress", "list_images", "embed_images", "save_embeddings",
           "load_embeddings", "gallery", "search", "EMBEDDINGS_FORMAT"]

EMBEDDINGS_FORMAT = "ecloss-embeddings-1"   # the .npz file's "format" entry
CHUNK = 32                                  # images decoded and run at once
PathLike = Union[str, os.PathLike]


@dataclass
class Embeddings:
    """L2-normalised embeddings with the image each came from and its identity (the image's
    folder name under a gallery root; "" when none), and what could not be embedded."""
    vectors: np.ndarray                       # (N, D) float32
    paths: List[str]
    identities: List[str]
    model_name: str = ""
    export_id: str = ""
    skipped: Dict[str, str] = field(default_factory=dict)   # path -> why it was skipped

    def __len__(self) -> int:
        return len(self.paths)


class Progress:
    """A progress line on stderr for long jobs: rewritten in place on a terminal, else printed
    every 10%. ``enabled=False`` prints nothing."""

    def __init__(self, what: str, total: int, enabled: bool = True, stream=None):
        self.what, self.total, self.enabled = what, total, enabled and total > 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0, self.shown = time.time(), -1

    def __call__(self, done: int) -> None:
        if not self.enabled:
            return
        pct = int(100 * done / self.total)
        if not self.tty and pct // 10 == self.shown // 10 and done < self.total:
            return
        self.shown = pct
        rate = done / max(time.time() - self.t0, 1e-9)
        line = f"{self.what}: {done}/{self.total} ({pct}%, {rate:.1f}/s)"
        end = "\n" if (not self.tty or done >= self.total) else ""
        self.stream.write(("\r" if self.tty else "") + line + end)
        self.stream.flush()


def list_images(source: Union[PathLike, Sequence[PathLike]]) -> List[Path]:
    """The image files a source names: a folder (every image file under it, sorted), a text
    file of paths (one a line, '#' comments, relative to the file's folder), one image file,
    or a list of these. FileNotFoundError / ValueError name the bad source."""
    if isinstance(source, (str, os.PathLike)):
        source = [source]
    out: List[Path] = []
    for item in source:
        path = Path(item)
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p)))
        elif path.is_file() and path.suffix.lower() in (".txt", ".lst", ".list"):
            lines = path.read_text(encoding="utf-8").splitlines()
            out.extend(path.parent / ln.strip() for ln in lines
                       if ln.strip() and not ln.strip().startswith("#"))
        elif path.is_file():
            out.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return out


def _embed_chunk(verifier, images: list, names: List[str], crop: Optional[str],
                 skipped: Dict[str, str]) -> List[Optional[np.ndarray]]:
    """One embedding per image (None for one whose face input fails: its reason goes into
    ``skipped``). Each image is prepared on its own, so a bad one costs no other image a second
    detection; the good ones are embedded together."""
    kwargs = {} if crop is None else {"crop": crop}
    out: List[Optional[np.ndarray]] = [None] * len(images)
    prepared, slots = [], []
    for k, (img, name) in enumerate(zip(images, names)):
        try:
            prepared.extend(verifier.prepare([img], **kwargs))
            slots.append(k)
        except (ImageError, ValueError) as exc:
            skipped[name] = str(exc)
    if prepared:
        for k, vec in zip(slots, verifier.embed(prepared)):
            out[k] = vec
    return out


def embed_images(verifier, source: Union[PathLike, Sequence[PathLike]],
                 crop: Optional[str] = None, root: Optional[PathLike] = None,
                 progress: Union[bool, Callable[[int], None]] = False) -> Embeddings:
    """Embed every image of ``source`` (list_images) with ``verifier`` (export.verifier's
    FaceVerifier). Undecodable images (and, with a detector, images it refuses) are skipped
    and listed in ``skipped``. ``crop``: passed to FaceVerifier.embed (None: its default).
    ``root``: identities are the first folder under it (default: each image's folder name).
    ``progress``: True for a progress line on stderr, or a callable(done)."""
    paths = list_images(source)
    report = (Progress("embed", len(paths)) if progress is True
              else progress if callable(progress) else (lambda done: None))
    vectors: List[np.ndarray] = []
    kept: List[str] = []
    skipped: Dict[str, str] = {}
    for start in range(0, len(paths), CHUNK):
        images, names = [], []
        for p in paths[start:start + CHUNK]:
            try:
                images.append(decode_image(p))
                names.append(str(p))
            except (ImageError, OSError) as exc:
                skipped[str(p)] = str(exc)
        if images:
            for name, vec in zip(names, _embed_chunk(verifier, images, names, crop, skipped)):
                if vec is not None:
                    vectors.append(vec)
                    kept.append(name)
        report(min(start + CHUNK, len(paths)))
    dim = int(verifier.metadata.get("embedding_dim", 0))
    mat = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, dim), np.float32)
    return Embeddings(vectors=mat, paths=kept, identities=[_identity(p, root) for p in kept],
                      model_name=str(verifier.metadata.get("model_name", "")),
                      export_id=str(verifier.metadata.get("export_id", "")), skipped=skipped)


def _identity(path: str, root: Optional[PathLike]) -> str:
    p = Path(path)
    if root is not None:
        try:
            rel = p.relative_to(root)
        except ValueError:
            return p.parent.name
        return rel.parts[0] if len(rel.parts) > 1 else ""
    return p.parent.name


def save_embeddings(path: PathLike, emb: Embeddings) -> Path:
    """Write ``emb`` to a .npz file (numpy arrays only, no pickle): embeddings, paths,
    identities, model_name, export_id, format."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"{path}: the embeddings file must end in .npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, embeddings=emb.vectors.astype(np.float32),
             paths=np.array(emb.paths, dtype=str), identities=np.array(emb.identities, dtype=str),
             model_name=np.array(emb.model_name), export_id=np.array(emb.export_id),
             format=np.array(EMBEDDINGS_FORMAT))
    return path


def load_embeddings(path: PathLike) -> Embeddings:
    """Read a file of save_embeddings; ValueError naming the file when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such embeddings file")
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z.get("format", "")) != EMBEDDINGS_FORMAT:
                raise ValueError("no 'format' entry of an ecloss embeddings file")
            vec = np.asarray(z["embeddings"], np.float32)
            paths, ids = [str(s) for s in z["paths"]], [str(s) for s in z["identities"]]
            name, eid = str(z["model_name"]), str(z["export_id"])
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: not an embeddings file of `ecloss embed` ({exc})") from None
    if vec.ndim != 2 or len(vec) != len(paths) or len(ids) != len(paths):
        raise ValueError(f"{path}: embeddings {vec.shape} do not match {len(paths)} paths")
    return Embeddings(vectors=vec, paths=paths, identities=ids, model_name=name, export_id=eid)


def gallery(verifier, source: PathLike, crop: Optional[str] = None,
            progress: Union[bool, Callable[[int], None]] = False) -> Embeddings:
    """A gallery to search: a .npz of save_embeddings (it must come from the same export as
    ``verifier``), or a folder of identity sub-folders (source/<identity>/<image>) embedded
    now."""
    source = Path(source)
    if source.suffix == ".npz":
        emb = load_embeddings(source)
        mine = str(verifier.metadata.get("export_id", ""))
        if emb.export_id and mine and emb.export_id != mine:
            raise ValueError(f"{source}: embedded by another export ({emb.model_name}, export id "
                             f"{emb.export_id}) than the model's ({mine}); embed the gallery "
                             "again with this model")
        return emb
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such gallery folder or .npz file")
    emb = embed_images(verifier, source, crop=crop, root=source, progress=progress)
    unnamed = [p for p, i in zip(emb.paths, emb.identities) if not i]
    if unnamed:
        raise ValueError(f"{source}: gallery images must lie in identity sub-folders "
                         f"(<gallery>/<identity>/<image>); {unnamed[0]} does not")
    return emb


def search(gallery_emb: Embeddings, probes: Embeddings, top_k: int = 5,
           threshold: Optional[float] = None) -> List[dict]:
    """For each probe, the ``top_k`` nearest identities of the gallery by cosine similarity
    (an identity's score: its best image), those below ``threshold`` left out: a list of
    {"probe", "matches": [{"identity", "similarity", "path"}], "best"} (best: the first match's
    identity, or None)."""
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if len(gallery_emb) == 0:
        raise ValueError("the gallery holds no embeddings")
    ids = np.array(gallery_emb.identities if any(gallery_emb.identities)
                   else [Path(p).parent.name for p in gallery_emb.paths])
    sims = probes.vectors.astype(np.float64) @ gallery_emb.vectors.astype(np.float64).T
    out = []
    for k, probe in enumerate(probes.paths):
        best: Dict[str, tuple] = {}
        for j in np.argsort(-sims[k], kind="stable"):
            if ids[j] not in best:
                best[ids[j]] = (float(sims[k, j]), gallery_emb.paths[j])
            if len(best) >= top_k:
                break
        matches = [{"identity": i, "similarity": s, "path": p} for i, (s, p) in best.items()
                   if threshold is None or s >= threshold]
        out.append({"probe": probe, "matches": matches,
                    "best": matches[0]["identity"] if matches else None})
    return out
