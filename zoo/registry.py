"""Model registry and loading: names -> configs -> VGGFace weights (timm / torchvision style).

    list_models("vgg16*")                       names: the paper variants + local + remote
    create("vgg16-ecloss", width=0.25)          untrained model built from a (default) config
    save(model, config)                         ZOO_HOME/<name>/model.safetensors + config.json
    load("vgg16-ecloss")                        eval-mode model with ``model.zoo_config``
    load("vgg16-ecloss", weights="https://..", sha256="..")   remote weights, hash-checked

Storage (docs/registry.md): ``zoo_home()`` is $ZOO_HOME or ~/.cache/ecloss-zoo; each model is a
folder ``<name>/`` with ``model.safetensors`` (the embedding network's state_dict, no pickle) and
``config.json``. Downloads are cached content-addressed under ``_downloads/``.

Atomic saves: both files are written to hidden temp files in the model folder, fsynced and then
renamed over the old ones. Two renames cannot be one atomic step, so the weights file also
carries the full config and a save id in its safetensors metadata; ``load`` notices a config.json
left over from an interrupted save (its save id differs) and uses the config stored with the
weights instead. Either the previous or the new model loads, never a mixture.
"""
from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
import math
import os
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch

from .data.transforms import FACE_MEAN, FACE_STD
from .models.vgg import PADDINGS, VGG_CONFIGS, VGGFace, _scaled
from .templates import TEMPLATE_PEAKS

__all__ = [
    "PAPER_MODELS", "REMOTE", "LOSSES", "HEAD_NAMES", "WEIGHTS_FILE", "CONFIG_FILE",
    "DownloadError", "ChecksumError", "zoo_home", "default_config", "list_models", "create",
    "save", "load", "register_remote", "download", "load_config", "load_weights",
]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
DOWNLOADS_DIR = "_downloads"  # "_" cannot start a model name, so it never collides with one
LOSSES = ("softmax", "ecloss")
HEAD_NAMES = ("softmax", "cosface", "arcface")
MARGINALS = ("uniform", "batch")
BETA_MODES = ("fixed", "auto")
CHANNEL_ORDERS = ("RGB", "BGR")
_META_CONFIG = "zoo_config"    # safetensors metadata keys (metadata is str -> str)
_META_SAVE_ID = "zoo_save_id"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_BASE_RE = re.compile(r"^vgg(\d+)$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")

ARCH_KEYS = ("depth", "batch_norm", "width", "input_size", "embedding_dim", "dropout",
             "embedding_bn", "padding")
ECLOSS_KEYS = ("num_templates", "tau", "radius", "marginal", "alpha", "beta", "beta_mode",
               "map_norm", "template_peaks", "content_free")
# Keys a caller may set; target_layer / feature_size / feature_channels follow from "arch".
SETTABLE_KEYS = ("name", "arch", "mean", "std", "channel_order", "loss", "head", "ecloss",
                 "training", "metrics", "zoo_version")
DERIVED_KEYS = ("target_layer", "feature_size", "feature_channels")
CONFIG_KEYS = SETTABLE_KEYS[:1] + ("arch", "mean", "std", "channel_order") + DERIVED_KEYS + (
    "loss", "head", "ecloss", "training", "metrics", "zoo_version")

_PAPER_ARCH = {"batch_norm": False, "width": 1.0, "input_size": 224, "embedding_dim": 512,
               "dropout": 0.0, "embedding_bn": True, "padding": "zeros"}
_PAPER_ECLOSS = {"num_templates": 400, "tau": 1e-3, "radius": 4.0, "marginal": "uniform",
                 "alpha": 1.0, "beta": 1e-5, "beta_mode": "auto", "map_norm": "none",
                 "template_peaks": "all", "content_free": 0.0}


class DownloadError(RuntimeError):
    """A download failed or was incomplete; nothing was cached."""


class ChecksumError(DownloadError):
    """A downloaded (or cached) file does not have the expected sha256; nothing was cached."""


def _zoo_version() -> str:
    import zoo  # at call time: zoo/__init__ imports this module before defining __version__
    return getattr(zoo, "__version__", "unknown")


def _derived(arch: Dict[str, Any]) -> Dict[str, Any]:
    """target layer, map size and channels of an arch, without building the network."""
    cfg = VGG_CONFIGS[arch["depth"]]
    convs = sum(1 for v in cfg if v != "M")
    pools = len(cfg) - convs
    n_modules = pools + convs * (3 if arch["batch_norm"] else 2)  # conv [+bn] + relu per conv
    return {"target_layer": f"features.{n_modules - 1}",
            "feature_size": arch["input_size"] // 16,
            "feature_channels": _scaled(cfg[-1], arch["width"])}


def _paper_config(depth: int, loss: str) -> Dict[str, Any]:
    arch = {"depth": depth, **_PAPER_ARCH}
    return {
        "name": f"vgg{depth}-{loss}", "arch": arch,
        "mean": list(FACE_MEAN), "std": list(FACE_STD), "channel_order": "RGB",
        **_derived(arch),
        "loss": loss, "head": "softmax", "ecloss": dict(_PAPER_ECLOSS),
        # Empty until a training run fills them: a config never claims a run that did not happen.
        "training": {}, "metrics": {},
        "zoo_version": None,  # filled at resolution time
    }


# The six paper variants: 224 px, full width, no BN, 512-d embedding, ECLoss params of the paper.
PAPER_MODELS: Dict[str, Dict[str, Any]] = {
    f"vgg{d}-{loss}": _paper_config(d, loss) for d in (13, 16, 19) for loss in LOSSES}

# Published weights: name -> {"url", "sha256", "config"}. Empty until weights are published;
# register_remote() adds entries at run time (see docs/registry.md).
REMOTE: Dict[str, Dict[str, Any]] = {}


def zoo_home() -> Path:
    """$ZOO_HOME, else ~/.cache/ecloss-zoo (not created here)."""
    env = os.environ.get("ZOO_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ecloss-zoo"


# ----------------------------------------------------------------------------------------------
# configs
# ----------------------------------------------------------------------------------------------

def _bad(where: str, msg: str) -> ValueError:
    return ValueError(f"{where}: {msg}" if where else msg)


def _check_number(where, key, v, *, integer=False, positive=False, nonneg=False, below=None):
    wrong_type = not isinstance(v, int) if integer else not isinstance(v, (int, float))
    if isinstance(v, bool) or wrong_type:
        kind = "an integer" if integer else "a number"
        raise _bad(where, f"{key} must be {kind}, got {v!r}")
    if not math.isfinite(v):
        raise _bad(where, f"{key} must be finite, got {v!r}")
    if positive and not v > 0:
        raise _bad(where, f"{key} must be > 0, got {v!r}")
    if nonneg and v < 0:
        raise _bad(where, f"{key} must be >= 0, got {v!r}")
    if below is not None and not v < below:
        raise _bad(where, f"{key} must be < {below}, got {v!r}")


def _validate(cfg: Dict[str, Any], where: str = "") -> None:
    """Raise ValueError (prefixed with ``where``, e.g. a file name) on the first bad field."""
    if not isinstance(cfg["name"], str) or not _NAME_RE.match(cfg["name"]):
        raise _bad(where, f"model name {cfg['name']!r} is not valid: use letters, digits and "
                          "'.', '_', '+', '-', starting with a letter or digit")
    a = cfg["arch"]
    if isinstance(a["depth"], bool) or a["depth"] not in list(VGG_CONFIGS):
        raise _bad(where, f"arch.depth must be one of {sorted(VGG_CONFIGS)}, got {a['depth']!r}")
    if not isinstance(a["batch_norm"], bool):
        raise _bad(where, f"arch.batch_norm must be true or false, got {a['batch_norm']!r}")
    _check_number(where, "arch.width", a["width"], positive=True)
    _check_number(where, "arch.input_size", a["input_size"], integer=True)
    if a["input_size"] % 16 or a["input_size"] < 32:
        raise _bad(where, f"arch.input_size must be a multiple of 16 and >= 32, got "
                          f"{a['input_size']}")
    _check_number(where, "arch.embedding_dim", a["embedding_dim"], integer=True, positive=True)
    _check_number(where, "arch.dropout", a["dropout"], nonneg=True, below=1)
    if not isinstance(a["embedding_bn"], bool):
        raise _bad(where, f"arch.embedding_bn must be true or false, got {a['embedding_bn']!r}")
    if a["padding"] not in PADDINGS:
        raise _bad(where, f"arch.padding must be one of {PADDINGS}, got {a['padding']!r}")
    for key in ("mean", "std"):
        v = cfg[key]
        if not isinstance(v, list) or len(v) != 3:
            raise _bad(where, f"{key} must be a list of 3 numbers, got {v!r}")
        for x in v:
            _check_number(where, key, x, positive=(key == "std"))
    if cfg["channel_order"] not in CHANNEL_ORDERS:
        raise _bad(where, f"channel_order must be one of {CHANNEL_ORDERS}, got "
                          f"{cfg['channel_order']!r}")
    if cfg["loss"] not in LOSSES:
        raise _bad(where, f"loss must be one of {LOSSES}, got {cfg['loss']!r}")
    if cfg["head"] not in HEAD_NAMES:
        raise _bad(where, f"head must be one of {HEAD_NAMES}, got {cfg['head']!r}")
    e = cfg["ecloss"]
    if e["num_templates"] != "full":
        _check_number(where, "ecloss.num_templates", e["num_templates"], integer=True,
                      positive=True)
    _check_number(where, "ecloss.tau", e["tau"], positive=True)
    if e["radius"] is not None:  # None: ECLoss scales the paper's r=4 with the map size
        _check_number(where, "ecloss.radius", e["radius"], positive=True)
    if e["marginal"] not in MARGINALS:
        raise _bad(where, f"ecloss.marginal must be one of {MARGINALS}, got {e['marginal']!r}")
    _check_number(where, "ecloss.alpha", e["alpha"], nonneg=True)
    _check_number(where, "ecloss.beta", e["beta"], nonneg=True)
    if e["beta_mode"] not in BETA_MODES:
        raise _bad(where, f"ecloss.beta_mode must be one of {BETA_MODES}, got "
                          f"{e['beta_mode']!r}")
    if e["map_norm"] not in ("none", "max"):
        raise _bad(where, f"ecloss.map_norm must be 'none' or 'max', got {e['map_norm']!r}")
    if e["template_peaks"] not in TEMPLATE_PEAKS:
        raise _bad(where, f"ecloss.template_peaks must be one of {TEMPLATE_PEAKS}, got "
                          f"{e['template_peaks']!r}")
    _check_number(where, "ecloss.content_free", e["content_free"], nonneg=True)
    for key in ("training", "metrics"):
        if not isinstance(cfg[key], dict):
            raise _bad(where, f"{key} must be a dict, got {type(cfg[key]).__name__}")
    if not isinstance(cfg["zoo_version"], str):
        raise _bad(where, f"zoo_version must be a string, got {cfg['zoo_version']!r}")
    try:
        json.dumps(cfg, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _bad(where, f"config is not JSON-serialisable: {exc}") from None


def _merge_sub(cfg, key, value, valid, where):
    if not isinstance(value, dict):
        raise TypeError(f"{where}{key} must be a dict, got {type(value).__name__}")
    unknown = sorted(set(value) - set(valid))
    if unknown:
        raise TypeError(f"{where}unknown {key} key(s) {unknown}; valid {key} keys: {list(valid)}")
    cfg[key].update(copy.deepcopy(value))


def _apply(cfg: Dict[str, Any], fields: Dict[str, Any], where: str, *, from_dict: bool) -> None:
    """Apply overrides: arch keys, ecloss keys and top-level keys, flat or nested."""
    for key, value in fields.items():
        if key in ("arch", "ecloss"):
            _merge_sub(cfg, key, value, ARCH_KEYS if key == "arch" else ECLOSS_KEYS, where)
        elif key in ARCH_KEYS:
            cfg["arch"][key] = value
        elif key in ECLOSS_KEYS:
            cfg["ecloss"][key] = value
        elif key in SETTABLE_KEYS:
            cfg[key] = copy.deepcopy(value)
        elif key in DERIVED_KEYS and from_dict:
            pass  # a stored config repeats them; they are recomputed and compared below
        elif key == "save_id" and from_dict:
            pass  # storage detail of config.json (pairs it with model.safetensors)
        else:
            extra = f"; {list(DERIVED_KEYS)} follow from arch" if key in DERIVED_KEYS else ""
            raise TypeError(f"{where}unknown config key {key!r}{extra}. Valid keys: top-level "
                            f"{list(SETTABLE_KEYS)}, arch {list(ARCH_KEYS)}, ecloss "
                            f"{list(ECLOSS_KEYS)}")


def default_config(name_or_base: Union[str, Dict[str, Any]] = "vgg16-ecloss",
                   /, **overrides) -> Dict[str, Any]:
    """A complete, validated config dict.

    ``name_or_base`` is a paper name ("vgg16-ecloss"), a base ("vgg16": the paper config with
    loss "ecloss" unless ``loss=`` says otherwise) or a (partial) config dict whose missing
    fields are filled from the paper config of its depth and loss. ``overrides`` set arch keys
    (width=0.25), ECLoss keys (tau=1.0), top-level keys (head="arcface"), or whole sub-dicts
    (arch={...}); anything else raises TypeError listing the valid keys. Unless a name is given,
    a config derived from a paper name or base is named "vgg<depth>-<loss>".
    """
    given: Dict[str, Any] = {}
    name_fixed = False
    if isinstance(name_or_base, dict):
        given = dict(name_or_base)
        name_fixed = "name" in given
    elif isinstance(name_or_base, str):
        if name_or_base in PAPER_MODELS:
            given = {"arch": {"depth": PAPER_MODELS[name_or_base]["arch"]["depth"]},
                     "loss": PAPER_MODELS[name_or_base]["loss"]}
        elif _BASE_RE.match(name_or_base) and int(name_or_base[3:]) in VGG_CONFIGS:
            given = {"arch": {"depth": int(name_or_base[3:])}, "loss": "ecloss"}
        else:
            raise ValueError(f"unknown model or base {name_or_base!r}; known: "
                             f"{sorted(PAPER_MODELS)} or bases "
                             f"{['vgg%d' % d for d in sorted(VGG_CONFIGS)]}")
    else:
        raise TypeError(f"default_config takes a name or a config dict, got "
                        f"{type(name_or_base).__name__}")
    name_fixed = name_fixed or "name" in overrides

    # Depth and loss pick the paper template; everything else is laid over it.
    def pick(key, sub=None):
        for src in (overrides, given):
            if sub and isinstance(src.get(sub), dict) and key in src[sub]:
                return src[sub][key]
            if key in src and not isinstance(src.get(key), dict):
                return src[key]
        return None
    depth = pick("depth", "arch")
    depth = depth if depth in list(VGG_CONFIGS) and not isinstance(depth, bool) else 16
    loss = pick("loss")
    loss = loss if isinstance(loss, str) and loss in LOSSES else "ecloss"
    cfg = copy.deepcopy(PAPER_MODELS[f"vgg{depth}-{loss}"])
    _apply(cfg, given, "", from_dict=True)
    _apply(cfg, overrides, "", from_dict=False)
    if not name_fixed:
        cfg["name"] = f"vgg{cfg['arch']['depth']}-{cfg['loss']}"
    if cfg["zoo_version"] is None:
        cfg["zoo_version"] = _zoo_version()
    _validate(cfg)
    # Stored derived fields must agree with the stored arch, else the file describes another
    # network (arch overrides make them stale on purpose: then they are just recomputed).
    derived = _derived(cfg["arch"])
    arch_overridden = any(k == "arch" or k in ARCH_KEYS for k in overrides)
    for key, value in derived.items():
        if not arch_overridden and key in given and given[key] != value:
            raise ValueError(f"config says {key}={given[key]!r} but its arch {cfg['arch']} "
                             f"gives {value!r}")
    cfg.update(derived)
    return {k: cfg[k] for k in CONFIG_KEYS}


def _build(cfg: Dict[str, Any]) -> VGGFace:
    model = VGGFace(**cfg["arch"])
    # The derived fields are computed without building; check them against the real network.
    actual = {"target_layer": model.target_layer, "feature_size": model.feature_size,
              "feature_channels": model.feature_channels}
    assert actual == {k: cfg[k] for k in DERIVED_KEYS}, (actual, cfg)
    model.zoo_config = copy.deepcopy(cfg)
    return model


# ----------------------------------------------------------------------------------------------
# listing
# ----------------------------------------------------------------------------------------------

def _local_models(root: Optional[Path] = None) -> Dict[str, Path]:
    root = Path(root) if root is not None else zoo_home()
    found: Dict[str, Path] = {}
    try:
        entries = list(os.scandir(root))
    except (FileNotFoundError, NotADirectoryError):
        return found
    for entry in entries:
        if not entry.is_dir() or not _NAME_RE.match(entry.name):
            continue
        folder = Path(entry.path)
        if (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file():
            found[entry.name] = folder
    return found


def _known_names() -> List[str]:
    return sorted(set(PAPER_MODELS) | set(REMOTE) | set(_local_models()))


def list_models(pattern: Optional[str] = None) -> List[str]:
    """Sorted names: the six paper variants, registered remote weights and local models
    (folders in ZOO_HOME with config.json + model.safetensors); ``pattern`` is an fnmatch
    pattern ("vgg16*")."""
    names = _known_names()
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return names


def _unknown(name: str) -> ValueError:
    return ValueError(f"unknown model {name!r}; known models: {', '.join(_known_names())} "
                      f"(ZOO_HOME={zoo_home()})")


def _config_for_name(name: str) -> Dict[str, Any]:
    local = _local_models()
    if name in local:
        return load_config(local[name] / CONFIG_FILE)
    if name in REMOTE:
        return copy.deepcopy(REMOTE[name]["config"])
    if name in PAPER_MODELS:
        return default_config(name)
    raise _unknown(name)


def create(name: str, /, **overrides) -> VGGFace:
    """Untrained VGGFace from the config of ``name`` (paper, local or remote) with overrides;
    the resolved config is ``model.zoo_config``. ``name`` is positional-only so that
    ``name=`` can rename the config: create("vgg19-ecloss", width=0.25, name="cpu-vgg19")."""
    if not isinstance(name, str):
        raise TypeError(f"create takes a model name, got {type(name).__name__}")
    base = _config_for_name(name)
    cfg = default_config(base, **overrides) if overrides else base
    return _build(cfg)


# ----------------------------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------------------------

def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # platforms without directory fds: the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _tmp_path(folder: Path, final: str, tag: str) -> Path:
    # Hidden and pid-tagged: never mistaken for a model file; stale ones are swept by pid.
    return folder / f".{final}.{os.getpid()}.{tag}.tmp"


def _sweep_stale_tmp(folder: Path) -> None:
    """Delete temp files left by saves/downloads whose process died (e.g. SIGKILL)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for fname in names:
        parts = fname.split(".")
        if not (fname.startswith(".") and fname.endswith(".tmp") and len(parts) >= 5):
            continue
        try:
            pid = int(parts[-3])
        except ValueError:
            continue
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # alive: maybe a concurrent save
        except ProcessLookupError:
            pass
        except OSError:
            continue  # exists but not ours (EPERM)
        try:
            os.unlink(folder / fname)
        except OSError:
            pass


def _state_dict_for_save(model: VGGFace) -> Dict[str, torch.Tensor]:
    # safetensors wants contiguous CPU tensors that share no storage.
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}


def _unwrap(model) -> VGGFace:
    # DDP / DataParallel / torch.compile wrappers hold the network in .module / ._orig_mod.
    for attr in ("module", "_orig_mod"):
        inner = getattr(model, attr, None)
        if isinstance(inner, torch.nn.Module):
            return _unwrap(inner)
    if not isinstance(model, VGGFace):
        raise TypeError(f"save expects a zoo VGGFace embedding network, got "
                        f"{type(model).__name__}")
    return model


def _check_model_matches(model: VGGFace, cfg: Dict[str, Any]) -> None:
    a = cfg["arch"]
    drop = model.dropout.p if isinstance(model.dropout, torch.nn.Dropout) else 0.0
    actual = {"depth": model.depth, "batch_norm": model.batch_norm, "width": model.width,
              "input_size": model.input_size, "embedding_dim": model.embedding_dim,
              "dropout": drop,
              "embedding_bn": isinstance(model.embedding_bn, torch.nn.BatchNorm1d),
              "padding": model.padding}
    diff = {k: (a[k], actual[k]) for k in ARCH_KEYS
            if (a[k] != actual[k] if isinstance(a[k], str) else float(a[k]) != float(actual[k]))}
    if diff:
        raise ValueError("config arch does not describe this model: " + ", ".join(
            f"{k}: config {c!r} vs model {m!r}" for k, (c, m) in diff.items()))


def save(model, config: Optional[Dict[str, Any]] = None, name: Optional[str] = None,
         root: Optional[Union[str, os.PathLike]] = None) -> Path:
    """Register ``model`` as ``<root or ZOO_HOME>/<name>/`` (model.safetensors + config.json),
    atomically; returns the folder. ``config`` defaults to ``model.zoo_config``; ``name`` to the
    config's name. Only the embedding network's weights are stored (no head, no optimizer)."""
    net = _unwrap(model)
    if config is None:
        config = getattr(net, "zoo_config", None)
        if config is None:
            raise ValueError("save needs a config: pass config= or use a model from zoo.create")
    # zoo_version records the version that wrote the files.
    cfg = default_config(dict(config), zoo_version=_zoo_version(),
                         **({"name": name} if name is not None else {}))
    _check_model_matches(net, cfg)
    folder = (Path(root) if root is not None else zoo_home()) / cfg["name"]
    folder.mkdir(parents=True, exist_ok=True)
    _sweep_stale_tmp(folder)

    from safetensors.torch import save_file
    save_id = uuid.uuid4().hex
    tag = uuid.uuid4().hex[:8]
    tmp_w = _tmp_path(folder, WEIGHTS_FILE, tag)
    tmp_c = _tmp_path(folder, CONFIG_FILE, tag)
    try:
        save_file(_state_dict_for_save(net), str(tmp_w),
                  metadata={_META_CONFIG: json.dumps(cfg), _META_SAVE_ID: save_id,
                            "format": "pt"})
        with open(tmp_w, "rb+") as f:
            os.fsync(f.fileno())
        with open(tmp_c, "w", encoding="utf-8") as f:
            json.dump({**cfg, "save_id": save_id}, f, indent=2, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        # Weights first: from here on they carry their own config (see module docstring).
        os.replace(tmp_w, folder / WEIGHTS_FILE)
        os.replace(tmp_c, folder / CONFIG_FILE)
        _fsync_dir(folder)
    finally:
        for tmp in (tmp_w, tmp_c):
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
    return folder


def _read_json(path: Path) -> Dict[str, Any]:
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: config file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: corrupt config, not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: config must be a JSON object, got {type(data).__name__}")
    return data


def _resolve_stored(data: Dict[str, Any], where: str) -> Dict[str, Any]:
    try:
        return default_config(data)
    except (TypeError, ValueError) as exc:
        msg = str(exc)
        raise ValueError(msg if msg.startswith(where) else f"{where}: {msg}") from None


def load_config(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """Read and validate a config.json (missing fields filled from the paper defaults)."""
    path = Path(path)
    return _resolve_stored(_read_json(path), str(path))


def _read_safetensors(path: Path):
    """(state_dict, metadata) of a safetensors file; errors name the file."""
    from safetensors import safe_open
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own SafetensorError / OSError types
        raise ValueError(f"{path}: corrupt or unreadable safetensors file ({exc})") from None
    return state, meta


def _read_torch(path: Path) -> Dict[str, torch.Tensor]:
    """A .pt/.pth checkpoint via torch.load(weights_only=True): no arbitrary unpickling."""
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read as a weights-only torch checkpoint "
                         f"({exc})") from None
    if isinstance(obj, dict):
        for key in ("model", "state_dict", "model_state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a state_dict (name -> tensor) or a checkpoint with a "
                         "'model' / 'state_dict' entry")
    return obj


def load_weights(path: Union[str, os.PathLike]) -> Dict[str, torch.Tensor]:
    """State dict from .safetensors (or weights-only .pt/.pth/.bin), wrapper prefixes removed."""
    path = Path(path)
    if path.suffix in (".pt", ".pth", ".bin", ".ckpt"):
        state = _read_torch(path)
    else:
        state, _ = _read_safetensors(path)
    for prefix in ("module.", "_orig_mod."):  # DDP / torch.compile checkpoints
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _fit(model: VGGFace, state: Dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        arch = model.zoo_config["arch"] if hasattr(model, "zoo_config") else {}
        parts = [f"{path}: weights do not fit the architecture {arch}"]
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_short(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {_short(shapes)}")
        raise ValueError("; ".join(parts))
    model.load_state_dict(state, strict=True)


def _short(items: List[str], n: int = 8) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def _is_url(s: str) -> bool:
    return urllib.parse.urlparse(s).scheme in ("http", "https", "file")


# ----------------------------------------------------------------------------------------------
# remote weights
# ----------------------------------------------------------------------------------------------

def _check_sha(sha256: str) -> str:
    if not isinstance(sha256, str) or not _SHA_RE.match(sha256.lower()):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    return sha256.lower()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cache_name(url: str, sha256: str) -> str:
    base = os.path.basename(urllib.parse.urlparse(url).path) or "weights"
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".") or "weights"
    stem, dot, ext = base.rpartition(".")
    # Content-addressed: a new file at the same url (new hash) never reuses the old one.
    return f"{stem}-{sha256[:16]}.{ext}" if dot and stem else f"{base}-{sha256[:16]}"


def register_remote(name: str, url: str, sha256: str,
                    config: Optional[Dict[str, Any]] = None) -> None:
    """Make ``load(name)`` fetch ``url`` (checked against ``sha256``) into the cache.
    ``config`` defaults to the paper config of ``name`` (which must then be a paper name)."""
    sha256 = _check_sha(sha256)
    if not _is_url(url):
        raise ValueError(f"not an http(s)/file url: {url!r}")
    if config is None:
        if name not in PAPER_MODELS:
            raise ValueError(f"{name!r} is not a paper model: pass config= for its architecture")
        cfg = default_config(name)
    else:
        cfg = default_config(dict(config), name=name)
    REMOTE[name] = {"url": url, "sha256": sha256, "config": cfg}


def download(url: str, sha256: str, dest_dir: Union[str, os.PathLike, None] = None,
             progress: bool = True, timeout: float = 60.0) -> Path:
    """Fetch ``url`` into ``dest_dir`` (default ZOO_HOME/_downloads) and return its path.

    Streams into a hidden temp file in ``dest_dir`` with a tqdm bar, then checks the byte
    count against Content-Length and the sha256; only a verified file is renamed into place.
    Any failure (hash mismatch, short read, network error, Ctrl-C) deletes the temp file and
    raises DownloadError / ChecksumError naming the url. A cached file is re-hashed and reused.
    """
    sha256 = _check_sha(sha256)
    if not _is_url(url):
        raise ValueError(f"not an http(s)/file url: {url!r}")
    dest = Path(dest_dir) if dest_dir is not None else zoo_home() / DOWNLOADS_DIR
    dest.mkdir(parents=True, exist_ok=True)
    _sweep_stale_tmp(dest)
    final = dest / _cache_name(url, sha256)
    if final.is_file():
        actual = _file_sha256(final)
        if actual == sha256:
            return final
        # The cache was altered after it was verified: drop it and fetch again.
        warnings.warn(f"{final}: cached file has sha256 {actual}, expected {sha256}; "
                      "downloading again")
        final.unlink()

    from tqdm.auto import tqdm
    tmp = _tmp_path(dest, final.name, uuid.uuid4().hex[:8])
    h = hashlib.sha256()
    received = 0
    try:
        try:
            resp = urllib.request.urlopen(url, timeout=timeout)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DownloadError(f"cannot download {url}: {exc}") from None
        with resp, open(tmp, "wb") as out:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=final.name, disable=not progress) as bar:
                while True:
                    try:
                        block = resp.read(1 << 16)
                    except (OSError, ValueError) as exc:  # IncompleteRead, reset, timeout
                        raise DownloadError(f"download of {url} interrupted after {received} "
                                            f"bytes: {exc!r}; nothing was cached") from None
                    if not block:
                        break
                    out.write(block)
                    h.update(block)
                    received += len(block)
                    bar.update(len(block))
            if total is not None and received != total:
                raise DownloadError(f"incomplete download of {url}: got {received} of {total} "
                                    "bytes (Content-Length); nothing was cached")
            out.flush()
            os.fsync(out.fileno())
        actual = h.hexdigest()
        if actual != sha256:
            raise ChecksumError(f"sha256 mismatch for {url}: expected {sha256}, got {actual} "
                                f"({received} bytes); the file was deleted, nothing was cached")
        os.replace(tmp, final)
        _fsync_dir(dest)
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
    return final


# ----------------------------------------------------------------------------------------------
# load
# ----------------------------------------------------------------------------------------------

def _train_hint(name: str) -> str:
    cfg = PAPER_MODELS[name]
    return (f"no weights registered for {name!r} yet (looked in {zoo_home() / name}). Train "
            f"them with `python -m zoo.train vgg{cfg['arch']['depth']} --loss {cfg['loss']}`, "
            "which registers the model under this name, or pass weights=<file.safetensors or "
            "url> (with sha256= for a url)")


def _pair_config(folder_cfg: Optional[Path], meta: Dict[str, str], wpath: Path,
                 fallback: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The config for a weights file: config.json beside it, unless that file belongs to
    another save (interrupted between the two renames); then the copy inside the weights."""
    embedded = None
    if _META_CONFIG in meta:
        try:
            embedded = json.loads(meta[_META_CONFIG])
        except json.JSONDecodeError as exc:
            raise ValueError(f"{wpath}: corrupt config in the safetensors "
                             f"metadata ({exc})") from None
    if folder_cfg is not None and folder_cfg.is_file():
        data = _read_json(folder_cfg)
        sid, wid = data.get("save_id"), meta.get(_META_SAVE_ID)
        if embedded is not None and sid is not None and wid is not None and sid != wid:
            warnings.warn(f"{folder_cfg} belongs to another save than {wpath} (interrupted "
                          "save?); using the config stored inside the weights file")
            return _resolve_stored(embedded, f"{wpath} (metadata)")
        return _resolve_stored(data, str(folder_cfg))
    if embedded is not None:
        return _resolve_stored(embedded, f"{wpath} (metadata)")
    if fallback is not None:
        return copy.deepcopy(fallback)
    raise FileNotFoundError(f"{folder_cfg or wpath}: no config.json beside the weights and none "
                            "stored inside them; pass a registered name instead")


def load(name_or_path: Union[str, os.PathLike], weights: Optional[Union[str, os.PathLike]] = None,
         map_location: Union[str, torch.device] = "cpu", sha256: Optional[str] = None,
         progress: bool = True) -> VGGFace:
    """An eval-mode VGGFace with ``model.zoo_config`` and ``model.zoo_dir`` (the local folder of
    its config.json, where evaluation adds channel_parts.json; None for remote/paper configs).

    ``name_or_path``: a registered name (local ZOO_HOME/<name>/, remote, or a paper name with
    ``weights=``), a folder with config.json + model.safetensors, or a .safetensors file with
    config.json beside it. ``weights``: a local weights file or an http(s) url (then ``sha256=``
    is required) replacing the registered weights.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"load takes a name or a path, got {type(name_or_path).__name__}")
    spec = os.fspath(name_or_path)
    path = Path(spec).expanduser()
    cfg: Optional[Dict[str, Any]] = None
    wpath: Optional[Path] = None
    model_dir: Optional[Path] = None  # the local folder the config came from, if any
    meta: Dict[str, str] = {}
    state = None

    # A bare registered name wins over a same-named folder in the cwd (e.g. a run folder).
    explicit_path = (isinstance(name_or_path, os.PathLike) or os.sep in spec
                     or bool(os.altsep and os.altsep in spec) or spec.startswith((".", "~"))
                     or spec.endswith((".safetensors", ".json")))
    if not explicit_path and spec in _known_names():
        pass
    elif path.exists():
        if path.is_dir():
            cfg_file, wpath = path / CONFIG_FILE, path / WEIGHTS_FILE
        else:
            cfg_file, wpath = path.parent / CONFIG_FILE, path
        model_dir = cfg_file.parent
        if weights is None:
            state, meta = _read_safetensors(wpath)
            cfg = _pair_config(cfg_file, meta, wpath, None)
        else:
            if not cfg_file.is_file():
                raise FileNotFoundError(f"{cfg_file}: config file not found")
            cfg = load_config(cfg_file)
    elif explicit_path:
        raise FileNotFoundError(f"{spec}: no such file or folder")
    if cfg is None and state is None:
        local = _local_models()
        if spec in local:
            wpath = local[spec] / WEIGHTS_FILE
            model_dir = local[spec]
            if weights is None:
                state, meta = _read_safetensors(wpath)
                cfg = _pair_config(local[spec] / CONFIG_FILE, meta, wpath, None)
            else:
                cfg = load_config(local[spec] / CONFIG_FILE)
        elif spec in REMOTE:
            entry = REMOTE[spec]
            cfg = copy.deepcopy(entry["config"])
            if weights is None:
                weights, sha256 = entry["url"], entry["sha256"]
        elif spec in PAPER_MODELS:
            if weights is None:
                raise FileNotFoundError(_train_hint(spec))
            cfg = default_config(spec)
        else:
            raise _unknown(spec)

    if weights is not None:
        w = os.fspath(weights)
        if _is_url(w):
            if sha256 is None:
                raise ValueError(f"weights url {w} needs sha256= (the expected hash of the file)")
            wpath = download(w, sha256, progress=progress)
        else:
            wpath = Path(w).expanduser()
            if not wpath.is_file():
                raise FileNotFoundError(f"{wpath}: weights file not found")
        state = load_weights(wpath)

    model = _build(cfg)
    _fit(model, state, wpath)
    model.to(map_location)
    model.eval()
    model.zoo_dir = model_dir
    return model
