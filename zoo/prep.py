"""Face cropping as in the paper: MTCNN detect, largest face, square crop with a margin, NO
alignment, resize. Thin CLI over :func:`crop_faces`:

    python -m zoo.prep SRC DST --size 224 [--margin 0.2] [--device cuda] [--batch-size 16]

SRC's folder layout is kept (``SRC/<identity>/<image>`` -> ``DST/<identity>/<image>.jpg``).
DST gets ``manifest.jsonl`` (one line per crop: source, output, MTCNN box, probability, 5
landmarks, crop box, all in source pixel coordinates) and ``report.json`` (counts plus every image
with no face or that could not be decoded). Bad images are reported and skipped, never fatal.
"""
import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from export.crop import largest_face, square_crop_box  # the one crop rule (runtime's too)
from export.images import is_image_file

from .data.images import ImageDecodeError, load_rgb


@dataclass
class PrepReport:
    """What :func:`crop_faces` did. ``failures``: list of {"src", "reason"} (no face or
    undecodable)."""
    src: str
    dst: str
    num_images: int = 0
    num_cropped: int = 0
    num_no_face: int = 0
    num_undecodable: int = 0
    failures: list = field(default_factory=list)
    manifest: str = ""
    report: str = ""
    num_renamed: int = 0
    renamed: list = field(default_factory=list)  # {"src", "dst"}: names changed by a collision

    @property
    def num_reported(self):
        return len(self.failures)

    def summary(self):
        return (f"{self.num_images} images: {self.num_cropped} cropped, {self.num_no_face} without "
                f"a face, {self.num_undecodable} undecodable (listed in {self.report})"
                + (f"; {self.num_renamed} crops renamed: their names collided (a.jpg, a.png)"
                   if self.num_renamed else ""))


def crop_face(img: Image.Image, box, size, margin):
    """The square crop of ``box`` (+margin) resized to (size, size); outside the image is black."""
    cb = square_crop_box(box, margin)
    rounded = tuple(int(round(v)) for v in cb)
    return img.crop(rounded).resize((size, size), Image.BILINEAR), rounded


def _list_images(src):
    return sorted(p for p in src.rglob("*") if p.is_file() and is_image_file(p.name))


def output_names(rels, ext):
    """The crop path of each source path ``rels`` (relative to SRC): the path with suffix
    ``ext``. When several sources would get one name (``a.jpg``, ``a.png``; compared ignoring
    case, for case-insensitive disks) the one already ending in ``ext``, else the first in
    order, keeps it; the others keep their own extension in the name (``a.png.jpg``), with a
    counter if that is taken too (``a.png-1.jpg``). Never two sources on one file."""
    plain = [r.with_suffix(ext) for r in rels]
    groups = {}
    for k, r in enumerate(plain):
        groups.setdefault(str(r).casefold(), []).append(k)
    out, taken = list(plain), {str(r).casefold() for r in plain}
    for ks in groups.values():
        if len(ks) == 1:
            continue
        keep = next((k for k in ks if rels[k].suffix.lower() == ext.lower()), ks[0])
        for k in ks:
            if k == keep:
                continue
            base, n = rels[k], 0
            cand = base.with_name(base.name + ext)
            while str(cand).casefold() in taken:
                n += 1
                cand = base.with_name(f"{base.name}-{n}{ext}")
            out[k] = cand
            taken.add(str(cand).casefold())
    return out


def crop_faces(src, dst, size=224, margin=0.2, device=None, batch_size=16, min_face_size=20,
               ext=".jpg", progress=True, mtcnn=None) -> PrepReport:
    """Detect (facenet-pytorch MTCNN), crop the largest face with ``margin``, resize to ``size``.

    Images are read from ``src`` recursively; each crop is written to the same relative path in
    ``dst`` with suffix ``ext`` (JPEG quality 95 or PNG). Images of equal size are detected in
    batches of ``batch_size``. ``device``: "cpu", "cuda", ... (default: cuda when available).
    Returns a :class:`PrepReport`; ``dst/manifest.jsonl`` and ``dst/report.json`` are written.
    """
    import torch
    from tqdm import tqdm

    src, dst = Path(src).resolve(), Path(dst).resolve()
    if not src.is_dir():
        raise NotADirectoryError(f"{src}: source folder does not exist")
    if dst == src or src in dst.parents:
        raise ValueError(f"{dst}: the output folder must not lie inside the source folder {src}")
    if ext not in (".jpg", ".jpeg", ".png"):
        raise ValueError(f"ext must be .jpg, .jpeg or .png, got {ext!r}")
    size = int(size)
    if mtcnn is None:
        from facenet_pytorch import MTCNN  # weights ship inside the facenet-pytorch wheel
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        mtcnn = MTCNN(keep_all=True, min_face_size=min_face_size, device=device)
    dst.mkdir(parents=True, exist_ok=True)
    report = PrepReport(str(src), str(dst), manifest=str(dst / "manifest.jsonl"),
                        report=str(dst / "report.json"))
    files = _list_images(src)
    report.num_images = len(files)
    names = dict(zip(files, output_names([p.relative_to(src) for p in files], ext)))

    def fail(path, reason, kind):
        report.failures.append({"src": str(path.relative_to(src)), "reason": reason})
        setattr(report, kind, getattr(report, kind) + 1)

    bar = tqdm(total=len(files), desc="zoo.prep", unit="img", disable=not progress)
    with open(report.manifest, "w") as manifest:
        for start in range(0, len(files), batch_size):
            decoded = []
            for p in files[start:start + batch_size]:
                try:
                    decoded.append((p, load_rgb(p)))
                except (ImageDecodeError, OSError) as e:
                    fail(p, f"undecodable: {e}", "num_undecodable")
            groups = {}
            for p, img in decoded:  # MTCNN batches only images of one size
                groups.setdefault(img.size, []).append((p, img))
            for group in groups.values():
                try:
                    boxes, probs, points = mtcnn.detect([img for _, img in group], landmarks=True)
                except (RuntimeError, ValueError) as e:  # e.g. an image too small to scan
                    for p, _ in group:
                        fail(p, f"no face: detector error ({type(e).__name__}: {e})", "num_no_face")
                    continue
                for (p, img), b, pr, pt in zip(group, boxes, probs, points):
                    if b is None or len(b) == 0:
                        fail(p, "no face detected", "num_no_face")
                        continue
                    k = largest_face(np.asarray(b))
                    face, crop_box = crop_face(img, b[k], size, margin)
                    rel = names[p]
                    if rel != p.relative_to(src).with_suffix(ext):
                        report.renamed.append({"src": str(p.relative_to(src)), "dst": str(rel)})
                        report.num_renamed += 1
                    out = dst / rel
                    out.parent.mkdir(parents=True, exist_ok=True)
                    face.save(out, quality=95) if ext != ".png" else face.save(out)
                    manifest.write(json.dumps({
                        "src": str(p.relative_to(src)), "dst": str(rel),
                        "box": [round(float(v), 2) for v in b[k]],
                        "prob": round(float(pr[k]), 6),
                        "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in pt[k]],
                        "crop_box": list(crop_box), "num_faces": int(len(b)),
                        "size": size}) + "\n")
                    report.num_cropped += 1
            bar.update(len(files[start:start + batch_size]))
    bar.close()
    with open(report.report, "w") as f:
        json.dump(asdict(report), f, indent=1)
    return report


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m zoo.prep", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--margin", type=float, default=0.2,
                    help="fraction of the face box side added in total (default 0.2)")
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--min-face-size", type=int, default=20)
    ap.add_argument("--ext", default=".jpg", choices=[".jpg", ".jpeg", ".png"])
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    src = Path(a.src)
    try:
        if src.is_file():
            raise ValueError(f"{src}: a single file; zoo.prep crops every photo of a folder "
                             "(put the photo in a folder, or use `ecloss embed` / `--crop` on it)")
        if not src.exists():
            raise FileNotFoundError(f"{src}: no such folder")
        rep = crop_faces(a.src, a.dst, a.size, a.margin, a.device, a.batch_size,
                         a.min_face_size, a.ext, progress=not a.no_progress)
    except ImportError as e:
        print(f"zoo.prep: error: {e.name or e}: not installed (pip install '.[prep]')",
              file=sys.stderr)
        return 2
    except (OSError, ValueError, RuntimeError) as e:
        print(f"zoo.prep: error: {e}", file=sys.stderr)
        return 2
    print(rep.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
