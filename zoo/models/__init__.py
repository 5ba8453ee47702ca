"""Face networks of the zoo."""
from .vgg import VGG_CONFIGS, VGGFace
