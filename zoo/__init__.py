"""ECLoss face zoo: activation-template-matching loss, VGG face networks, data, metrics."""
from .templates import get_templates, build_templates, full_template_count  # noqa: F401
from .ecloss import ECLoss, BetaPolicy, mutual_information, total_loss  # noqa: F401

from ._version import __version__  # noqa: F401
from .registry import list_models, create, load, save  # noqa: F401
