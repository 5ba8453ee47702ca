"""ECLoss face zoo: activation-template-matching loss, VGG face networks, data, metrics."""
try:
    import torch  # noqa: F401  (the zoo is the torch side; a clear error before anything else)
except ImportError as e:
    raise ImportError("zoo needs torch: install the full environment (make install) or "
                      "pip install '.[torch]'; the torch-free runtime is the export package"
                      ) from e

from ._version import __version__
from .builder import create, load
from .ecloss import BetaPolicy, ECLoss, mutual_information, total_loss
from .hub import save
from .registry import list_models
from .templates import build_templates, full_template_count, get_templates
