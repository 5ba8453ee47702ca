"""Face detection in the runtime: MTCNN in numpy over three ONNX files (no torch).

    from export.detector import FaceDetector
    faces = FaceDetector("out/").detect("photo.jpg")   # out/detector/{pnet,rnet,onet}.onnx
    faces[0].box, faces[0].score, faces[0].points      # x1 y1 x2 y2; probability; 5 (x, y)

The networks are facenet-pytorch's MTCNN (P-Net, R-Net, O-Net; Zhang et al., "Joint Face
Detection and Alignment using Multi-task Cascaded Convolutional Networks", 2016) exported to ONNX
by zoo.exporting.detector; `python -m zoo.exporting` writes them into the model folder's
``detector/``.
The cascade around them is facenet_pytorch.models.utils.detect_face (version 2.5.3) re-written
in numpy, stage by stage, with its conventions kept (1-based crop corners, the "+1" box widths of
the regression and of the last NMS, float32 box arithmetic), so the boxes and points are those of
facenet-pytorch's MTCNN up to onnxruntime-vs-torch rounding (docs/export.md, "Face detection in
the runtime", gives the measured agreement). Where facenet-pytorch would fail, this returns a
result instead: an image too small for the pyramid gives no face (facenet-pytorch raises), and a
candidate box lying wholly outside the image is dropped (facenet-pytorch skips its crop, which
misaligns its later candidates with their network outputs).

Resampling: facenet-pytorch resizes the pyramid levels and the 24 / 48 px crops with
torch.nn.functional.interpolate(mode="area"), which is adaptive average pooling: output pixel i
averages input pixels floor(i * n / m) .. ceil((i + 1) * n / m) - 1 (n input, m output pixels
along an axis), with whole-pixel bins that overlap when n / m is not an integer. area_resample
computes exactly these bins from one integral image. Pillow's Image.BOX is not the same: it
weights the pixels at a bin's edges by the fraction they cover.

numpy + Pillow + onnxruntime only: must not import torch, zoo or scipy.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .images import ImageLike, load_image
from .model_dir import ModelDirError
from .model_files import EMBEDDING_FILE

__all__ = ["FaceDetector", "DetectedFace", "DetectorError", "open_detector", "DETECTOR_DIR",
           "DETECTOR_FILES",
           "DETECTOR_JSON", "DEFAULT_MIN_FACE_SIZE", "DEFAULT_THRESHOLDS", "DEFAULT_FACTOR",
           "area_resample", "integral_image", "scale_pyramid", "nms"]

DETECTOR_DIR = "detector"  # sub-folder of an exported model folder
PNET_FILE, RNET_FILE, ONET_FILE = "pnet.onnx", "rnet.onnx", "onet.onnx"
DETECTOR_FILES = (PNET_FILE, RNET_FILE, ONET_FILE)
DETECTOR_JSON = "detector.json"  # provenance and sha256 of each file (zoo.exporting)

# Graph names (zoo.exporting.detector writes them; FaceDetector checks them when it opens a file).
INPUT_NAME = "images"
REGRESSION_OUTPUT = "regression"      # box corrections, in units of the box's width / height
LANDMARK_OUTPUT = "landmarks"         # O-Net: 5 x then 5 y, as fractions of the box
PROBABILITY_OUTPUT = "probabilities"  # softmax over (not a face, a face)
OUTPUTS = {PNET_FILE: (REGRESSION_OUTPUT, PROBABILITY_OUTPUT),
           RNET_FILE: (REGRESSION_OUTPUT, PROBABILITY_OUTPUT),
           ONET_FILE: (REGRESSION_OUTPUT, LANDMARK_OUTPUT, PROBABILITY_OUTPUT)}

# facenet-pytorch's MTCNN defaults (and zoo.prep's).
DEFAULT_MIN_FACE_SIZE = 20
DEFAULT_THRESHOLDS = (0.6, 0.7, 0.7)  # P-Net, R-Net, O-Net face probability
DEFAULT_FACTOR = 0.709                # pyramid step: each level is 0.709 x the previous

PNET_WINDOW = 12   # P-Net sees 12 x 12 windows ...
PNET_STRIDE = 2    # ... every 2 pixels of a pyramid level (one max-pool of stride 2)
RNET_SIZE = 24
ONET_SIZE = 48
# Non-maximum suppression thresholds of detect_face.
NMS_PER_SCALE = 0.5
NMS_ACROSS_SCALES = 0.7
NMS_RNET = 0.7
NMS_ONET = 0.7     # with the overlap measured over the smaller box ("Min")


class DetectorError(ModelDirError):
    """The detector folder or one of its files is missing, unreadable, or not an MTCNN export."""


@dataclass
class DetectedFace:
    box: np.ndarray     # (4,) float64 x1, y1, x2, y2 in the input image's pixel coordinates
    score: float        # O-Net's face probability
    points: np.ndarray  # (5, 2) float64 (x, y): left eye, right eye, nose, left mouth corner,
    #                     right mouth corner (left = image left), facenet-pytorch's order

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))


# ----------------------------------------------------------------------------------------------
# resampling: torch's interpolate(mode="area")
# ----------------------------------------------------------------------------------------------

def integral_image(rgb: np.ndarray) -> np.ndarray:
    """(H + 1, W + 1, C) float64 sums of ``rgb`` (H, W, C) above and left of each corner: any
    rectangle's sum is four look-ups. float64 keeps the sums of uint8 pixels exact."""
    h, w, c = rgb.shape
    out = np.zeros((h + 1, w + 1, c), np.float64)  # 24 bytes a pixel: ~290 MB for 12 Mpx
    inner = out[1:, 1:]
    np.cumsum(rgb, axis=0, dtype=np.float64, out=inner)
    np.cumsum(inner, axis=1, out=inner)
    return out


def _area_bins(start: int, n_in: int, n_out: int) -> Tuple[np.ndarray, np.ndarray]:
    """First and one-past-last input index of each output pixel's bin (adaptive average
    pooling, as torch computes them), offset by ``start``."""
    i = np.arange(n_out)
    return start + (i * n_in) // n_out, start + ((i + 1) * n_in + n_out - 1) // n_out


def area_resample(integral: np.ndarray, top: int, bottom: int, left: int, right: int,
                  height: int, width: int) -> np.ndarray:
    """The image rows top..bottom-1, columns left..right-1 resized to (height, width, C) float32
    as torch's interpolate(mode="area") resizes them (up or down). ``integral``:
    integral_image of the whole image."""
    r0, r1 = _area_bins(top, bottom - top, height)
    c0, c1 = _area_bins(0, right - left, width)
    span = integral[:, left:right + 1]
    rows = span[r1] - span[r0]          # rows first, then columns: two cheap gathers
    total = rows[:, c1] - rows[:, c0]
    count = ((r1 - r0)[:, None] * (c1 - c0)[None, :])[..., None]
    return (total / count).astype(np.float32)


def _network_input(patches: Sequence[np.ndarray]) -> np.ndarray:
    """(N, 3, h, w) float32 network input from (h, w, 3) 0..255 patches: (x - 127.5) / 128."""
    x = np.stack(patches).transpose(0, 3, 1, 2)
    return ((x - np.float32(127.5)) * np.float32(0.0078125)).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------------------
# the cascade's box arithmetic (float32, as in detect_face)
# ----------------------------------------------------------------------------------------------

def scale_pyramid(height: int, width: int, min_face_size: float, factor: float) -> List[float]:
    """The image scales P-Net runs at: the first maps a min_face_size face onto P-Net's 12 px
    window, each next is ``factor`` times smaller, down to a shorter side of 12 px."""
    m = PNET_WINDOW / min_face_size
    shorter = min(height, width) * m
    scales, scale = [], m
    while shorter >= PNET_WINDOW:
        scales.append(scale)
        scale *= factor
        shorter *= factor
    return scales


def pnet_candidates(regression: np.ndarray, probability: np.ndarray, scale: float,
                    threshold: float) -> np.ndarray:
    """(K, 9) float32 candidates from one pyramid level's P-Net maps (regression (4, h, w),
    face probability (h, w)): x1, y1, x2, y2 (the 12 px window of each cell with probability >=
    threshold, back in image pixels), score, then the cell's 4 regression values."""
    ys, xs = np.nonzero(probability >= threshold)   # row-major, as torch's nonzero()
    cell = np.stack([xs, ys], axis=1).astype(np.float32)
    first = np.floor((PNET_STRIDE * cell + 1) / np.float32(scale))
    last = np.floor((PNET_STRIDE * cell + PNET_WINDOW) / np.float32(scale))
    return np.concatenate([first, last, probability[ys, xs][:, None],
                           regression[:, ys, xs].T], axis=1).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, best score first. A box is dropped when its
    overlap with a kept box exceeds ``threshold``.

    mode "union": intersection over union with areas (x2 - x1) * (y2 - y1), as torchvision's nms
    (detect_face's first two stages). mode "min": intersection over the smaller box with areas
    (x2 - x1 + 1) * (y2 - y1 + 1), as detect_face's own nms_numpy (its last stage)."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    plus = 1.0 if mode == "min" else 0.0
    x1, y1, x2, y2 = (boxes[:, k].astype(np.float64) for k in range(4))
    area = (x2 - x1 + plus) * (y2 - y1 + plus)
    # Equal scores happen (O-Net saturates near 1) and then the order decides which box stays:
    # torchvision sorts stably, best first; nms_numpy takes the last of numpy's default
    # ascending argsort.
    order = (np.argsort(scores)[::-1] if mode == "min"
             else np.argsort(-scores, kind="stable"))
    keep = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + plus)
        ih = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + plus)
        inter = iw * ih
        if mode == "min":
            overlap = inter / np.minimum(area[i], area[rest])
        else:
            overlap = inter / (area[i] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.asarray(keep, np.int64)


def regress(boxes: np.ndarray, regression: np.ndarray) -> np.ndarray:
    """detect_face's bbreg: move each corner by its regression value times the box's width or
    height counted inclusively (x2 - x1 + 1). Returns a new (N, 5) array (score kept)."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, 0] = boxes[:, 0] + regression[:, 0] * w
    out[:, 1] = boxes[:, 1] + regression[:, 1] * h
    out[:, 2] = boxes[:, 2] + regression[:, 2] * w
    out[:, 3] = boxes[:, 3] + regression[:, 3] * h
    return out


def square(boxes: np.ndarray) -> np.ndarray:
    """detect_face's rerec: each box made square (side = its longer side), same centre."""
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * np.float32(0.5) - side * np.float32(0.5)
    out[:, 1] = boxes[:, 1] + h * np.float32(0.5) - side * np.float32(0.5)
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def crop_windows(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """detect_face's pad: the (N, 4) int rows top, bottom, columns left, right (Python slice
    bounds) of the image part inside each box. The box corners are truncated to integers and
    read as 1-based (so the crop starts one pixel up-left of the box); parts outside the image
    are cut off, not zero-padded (the crop is then stretched to the network's size)."""
    b = np.trunc(boxes[:, :4]).astype(np.int64)
    left = np.maximum(b[:, 0], 1) - 1
    top = np.maximum(b[:, 1], 1) - 1
    right = np.minimum(b[:, 2], width)
    bottom = np.minimum(b[:, 3], height)
    return np.stack([top, bottom, left, right], axis=1)


# ----------------------------------------------------------------------------------------------
# the detector
# ----------------------------------------------------------------------------------------------

def file_sha256(path: Path) -> str:
    """The sha256 hex digest of a file (detector.json records one per network file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def detector_folder(folder: Union[str, os.PathLike]) -> Path:
    """The folder holding the three ONNX files: ``folder`` itself, or its DETECTOR_DIR when
    ``folder`` is an exported model folder. DetectorError when neither exists."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DetectorError(f"{folder}: detector folder not found (`python -m zoo.exporting` "
                            f"writes one into the model folder's {DETECTOR_DIR}/)")
    if (folder / PNET_FILE).exists():
        return folder
    if (folder / DETECTOR_DIR).is_dir():
        return folder / DETECTOR_DIR
    if (folder / EMBEDDING_FILE).exists():
        raise DetectorError(f"{folder / DETECTOR_DIR}: missing; this model folder was exported "
                            "without the face detector: export it again with `python -m "
                            "zoo.exporting`, or write one with `python -m "
                            f"zoo.exporting.detector --out "
                            f"{folder / DETECTOR_DIR}`")
    return folder


class FaceDetector:
    """MTCNN face detection over ``folder``'s pnet.onnx, rnet.onnx and onet.onnx (or those of
    ``folder``/detector/ for an exported model folder), on onnxruntime's CPU provider.

    threads: onnxruntime intra-op threads (default: onnxruntime's). min_face_size (pixels),
    thresholds (P-, R-, O-Net face probability) and factor (pyramid step) are facenet-pytorch's
    MTCNN settings, with its defaults.
    """

    def __init__(self, folder: Union[str, os.PathLike], threads: Optional[int] = None,
                 min_face_size: float = DEFAULT_MIN_FACE_SIZE,
                 thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                 factor: float = DEFAULT_FACTOR):
        if not (isinstance(min_face_size, (int, float)) and not isinstance(min_face_size, bool)
                and min_face_size > 0):
            raise ValueError(f"min_face_size must be a positive number of pixels, got "
                             f"{min_face_size!r}")
        thresholds = tuple(float(t) for t in thresholds)
        if len(thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in thresholds):
            raise ValueError(f"thresholds must be 3 probabilities (P-Net, R-Net, O-Net), got "
                             f"{thresholds!r}")
        if not 0.0 < float(factor) < 1.0:
            raise ValueError(f"factor must lie in (0, 1), got {factor!r}")
        self.min_face_size = float(min_face_size)
        self.thresholds = thresholds
        self.factor = float(factor)
        self.folder = detector_folder(folder)
        self.provenance = self._check_files()
        self._sessions = {f: self._open(f, threads) for f in DETECTOR_FILES}

    def _check_files(self) -> Dict:
        """detector.json (when present) read, every file there and, when listed, unchanged."""
        for fname in DETECTOR_FILES:
            path = self.folder / fname
            if not path.is_file():
                raise DetectorError(f"{path}: missing; {self.folder} is not a face detector "
                                    f"folder (expected {', '.join(DETECTOR_FILES)}: re-export "
                                    "the model with `python -m zoo.exporting`, or write them "
                                    "with `python -m zoo.exporting.detector --out DIR`)")
        meta_path = self.folder / DETECTOR_JSON
        if not meta_path.is_file():
            return {}
        try:
            meta = json.loads(meta_path.read_text())
            listed = {f: meta["files"][f]["sha256"] for f in meta.get("files", {})}
        except (ValueError, KeyError, TypeError) as exc:
            raise DetectorError(f"{meta_path}: not a detector description ({exc})") from None
        for fname, digest in listed.items():
            if fname in DETECTOR_FILES and file_sha256(self.folder / fname) != digest:
                raise DetectorError(f"{self.folder / fname}: sha256 differs from the one in "
                                    f"{meta_path}: the file is corrupt or was replaced")
        return meta

    def _open(self, fname: str, threads: Optional[int]):
        import onnxruntime as ort
        path = self.folder / fname
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = int(threads)
        try:
            session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail / InvalidProtobuf types
            raise DetectorError(f"{path}: onnxruntime cannot load this file ({exc})") from None
        inputs = [i.name for i in session.get_inputs()]
        outputs = tuple(o.name for o in session.get_outputs())
        if inputs != [INPUT_NAME] or outputs != OUTPUTS[fname]:
            raise DetectorError(f"{path}: not an MTCNN {fname[:4].upper()} export (input "
                                f"{inputs}, outputs {list(outputs)}; expected [{INPUT_NAME!r}], "
                                f"{list(OUTPUTS[fname])})")
        return session

    def _run(self, fname: str, x: np.ndarray) -> List[np.ndarray]:
        return self._sessions[fname].run(list(OUTPUTS[fname]), {INPUT_NAME: x})

    # -- the three stages ---------------------------------------------------------------------

    def _propose(self, integral: np.ndarray, height: int, width: int) -> np.ndarray:
        """Stage 1 (P-Net): face windows at every pyramid scale, NMS per scale then across
        scales, moved by their regression and squared: (N, 5) float32 boxes + score."""
        per_scale = []
        for scale in scale_pyramid(height, width, self.min_face_size, self.factor):
            level = area_resample(integral, 0, height, 0, width,
                                  int(height * scale + 1), int(width * scale + 1))
            regression, probability = self._run(PNET_FILE, _network_input([level]))
            found = pnet_candidates(regression[0], probability[0, 1], scale, self.thresholds[0])
            per_scale.append(found[nms(found[:, :4], found[:, 4], NMS_PER_SCALE)])
        found = np.concatenate(per_scale) if per_scale else np.zeros((0, 9), np.float32)
        found = found[nms(found[:, :4], found[:, 4], NMS_ACROSS_SCALES)]
        # The P-Net regression scales by x2 - x1 (no +1), unlike bbreg in the later stages.
        w = found[:, 2] - found[:, 0]
        h = found[:, 3] - found[:, 1]
        boxes = np.stack([found[:, 0] + found[:, 5] * w, found[:, 1] + found[:, 6] * h,
                          found[:, 2] + found[:, 7] * w, found[:, 3] + found[:, 8] * h,
                          found[:, 4]], axis=1)
        return square(boxes)

    def _crops(self, integral: np.ndarray, boxes: np.ndarray, size: int, width: int,
               height: int) -> Tuple[np.ndarray, np.ndarray]:
        """The image inside each box resized to size x size (one network batch), and which
        boxes have a crop at all (a box wholly outside the image has none)."""
        windows = crop_windows(boxes, width, height)
        inside = (windows[:, 1] > windows[:, 0]) & (windows[:, 3] > windows[:, 2])
        patches = [area_resample(integral, top, bottom, left, right, size, size)
                   for top, bottom, left, right in windows[inside]]
        return (_network_input(patches) if patches
                else np.zeros((0, 3, size, size), np.float32)), inside

    def _refine(self, integral: np.ndarray, boxes: np.ndarray, width: int,
                height: int) -> np.ndarray:
        """Stage 2 (R-Net on 24 x 24 crops): rescored, NMS, regressed, squared boxes."""
        x, inside = self._crops(integral, boxes, RNET_SIZE, width, height)
        boxes = boxes[inside]
        if not len(boxes):
            return boxes
        regression, probability = self._run(RNET_FILE, x)
        passed = probability[:, 1] > self.thresholds[1]
        boxes = np.concatenate([boxes[passed, :4], probability[passed, 1:2]], axis=1)
        regression = regression[passed]
        keep = nms(boxes[:, :4], boxes[:, 4], NMS_RNET)
        return square(regress(boxes[keep], regression[keep]))

    def _output(self, integral: np.ndarray, boxes: np.ndarray, width: int,
                height: int) -> Tuple[np.ndarray, np.ndarray]:
        """Stage 3 (O-Net on 48 x 48 crops): final boxes + score (N, 5) and points (N, 5, 2)."""
        x, inside = self._crops(integral, boxes, ONET_SIZE, width, height)
        boxes = boxes[inside]
        if not len(boxes):
            return boxes, np.zeros((0, 5, 2), np.float32)
        regression, landmarks, probability = self._run(ONET_FILE, x)
        passed = probability[:, 1] > self.thresholds[2]
        boxes = np.concatenate([boxes[passed, :4], probability[passed, 1:2]], axis=1)
        regression, landmarks = regression[passed], landmarks[passed]
        # Points are fractions of the (inclusive) box before its regression, 1-based.
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        points = np.stack([w * landmarks[:, :5] + boxes[:, 0:1] - 1,
                           h * landmarks[:, 5:] + boxes[:, 1:2] - 1], axis=2)
        boxes = regress(boxes, regression)
        keep = nms(boxes[:, :4], boxes[:, 4], NMS_ONET, mode="min")
        return boxes[keep], points[keep]

    def detect(self, image: ImageLike) -> List[DetectedFace]:
        """The faces in ``image`` (a path, PIL image or array, as export.images.load_image
        takes), best score first (equal scores: the larger box first); [] when there is none."""
        rgb = np.asarray(load_image(image), dtype=np.uint8)
        height, width = rgb.shape[:2]
        integral = integral_image(rgb)
        boxes = self._propose(integral, height, width)
        if len(boxes):
            boxes = self._refine(integral, boxes, width, height)
        points = np.zeros((0, 5, 2), np.float32)
        if len(boxes):
            boxes, points = self._output(integral, boxes, width, height)
        faces = [DetectedFace(box=b[:4].astype(np.float64), score=float(b[4]),
                              points=p.astype(np.float64)) for b, p in zip(boxes, points)]
        faces.sort(key=lambda f: (-f.score, -f.area))
        return faces


_OPEN: Dict[Tuple[str, Optional[int]], FaceDetector] = {}


def open_detector(folder: Union[str, os.PathLike],
                  threads: Optional[int] = None) -> FaceDetector:
    """The FaceDetector of ``folder`` (or of its DETECTOR_DIR), one per folder and thread count:
    opening the three sessions costs about 50 ms, and the crop, the explainers and the page
    all detect with the same export's files."""
    key = (str(detector_folder(folder).resolve()), threads)
    if key not in _OPEN:
        _OPEN[key] = FaceDetector(key[0], threads=threads)
    return _OPEN[key]
