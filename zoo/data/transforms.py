"""The one image transform every face model in the zoo is trained and evaluated with.

Faces are normalised to [-1, 1] per channel (mean 0.5, std 0.5), the convention of insightface and
facenet-pytorch; grey images (ORL is 8-bit grey PGM) are replicated to 3 channels so the same
VGG stem reads grey and colour datasets.
"""
from torchvision import transforms as T

FACE_MEAN = (0.5, 0.5, 0.5)
FACE_STD = (0.5, 0.5, 0.5)


def _to_rgb(img):
    # PIL "L"/"I;16"/"RGBA"/"P" -> 3 channels; a no-op for RGB.
    return img if img.mode == "RGB" else img.convert("RGB")


def face_transform(input_size: int, train: bool = False, translate: float = 0.0):
    """Return a callable PIL.Image -> float tensor (3, input_size, input_size).

    RGB conversion, bilinear resize to a square (crops are made square by zoo.prep, ORL's
    92x112 is stretched as the paper's pipeline does after its MTCNN crop), an optional random
    horizontal flip for training, ToTensor, Normalize(FACE_MEAN, FACE_STD).

    translate > 0 (training only): resize to round(input_size * (1 + translate)) and take a random
    input_size crop, so the face moves by up to translate/2 of the image in each direction and
    no fixed pixel of the input is always the same part of the face.
    """
    input_size = int(input_size)
    if input_size <= 0:
        raise ValueError(f"face_transform: input_size must be positive, got {input_size}")
    if not 0 <= translate < 1:
        raise ValueError(f"face_transform: translate must be in [0, 1), got {translate}")
    big = int(round(input_size * (1 + translate))) if train else input_size
    steps = [T.Lambda(_to_rgb),
             T.Resize((big, big), interpolation=T.InterpolationMode.BILINEAR)]
    if big != input_size:
        steps.append(T.RandomCrop(input_size))
    if train:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToTensor(), T.Normalize(FACE_MEAN, FACE_STD)]
    return T.Compose(steps)
