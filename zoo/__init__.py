"""ECLoss face zoo: activation-template-matching loss, VGG face networks, data, metrics."""
from ._version import __version__
from .ecloss import BetaPolicy, ECLoss, mutual_information, total_loss
from .registry import create, list_models, load, save
from .templates import build_templates, full_template_count, get_templates
