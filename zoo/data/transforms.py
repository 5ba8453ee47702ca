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


def face_transform(input_size: int, train: bool = False):
    """Return a callable PIL.Image -> float tensor (3, input_size, input_size).

    RGB conversion, bilinear resize to a square (crops are made square by zoo.prep, ORL's
    92x112 is stretched as the paper's pipeline does after its MTCNN crop), an optional random
    horizontal flip for training, ToTensor, Normalize(FACE_MEAN, FACE_STD).
    """
    input_size = int(input_size)
    if input_size <= 0:
        raise ValueError(f"face_transform: input_size must be positive, got {input_size}")
    steps = [T.Lambda(_to_rgb),
             T.Resize((input_size, input_size), interpolation=T.InterpolationMode.BILINEAR)]
    if train:
        steps.append(T.RandomHorizontalFlip())
    steps += [T.ToTensor(), T.Normalize(FACE_MEAN, FACE_STD)]
    return T.Compose(steps)
