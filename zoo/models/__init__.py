"""Face networks of the zoo."""
from .vgg import VGGFace, VGG_CONFIGS, vgg13_face, vgg16_face, vgg19_face  # noqa: F401
