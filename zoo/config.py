"""Model configs: the schema, the six paper models, ``default_config`` and validation.

A config is a JSON dict (docs/registry.md, "Config fields") that says everything needed to
rebuild a model: the VGGFace arguments ("arch"), input normalisation, the loss / head / ECLoss
settings it was trained with and what the run recorded. This module knows nothing about files
beyond reading one config.json: storage lives in zoo.registry and zoo._io.

It is also the one place of the configuration choices (LOSSES, HEAD_NAMES, MARGINALS,
BETA_MODES, IMPLS, PADDINGS, CHANNEL_ORDERS) and of the training presets (PRESETS,
EXPLAINABLE_ECLOSS, PAPER_GEOMETRY): the validation here, zoo.ecloss, zoo.ops, zoo.train_config
and the argparse choices of the CLIs import them. PADDINGS and HEAD_NAMES are defined beside
their implementation (zoo.models.vgg, zoo.heads). This module imports no other zoo module than
those leaves and zoo.templates (never zoo.registry, zoo.engine, zoo.ecloss or zoo.ops), so every
module can import it.

Configs written before the lab moved to research/ (issue 21) may hold the ECLoss keys of
LEGACY_ECLOSS_KEYS (``map_norm``, ``template_peaks``) and training keys such as ``background``,
``off_head`` and ``shuffled_faces``: a stored config keeps them (so such a model still says how it
was trained), the product writes none of them. A run trained with a hook
(zoo.training_hook) records the hook's ``describe()`` as ``training.hook``.

    default_config("vgg16-ecloss", width=0.25)   complete, validated dict
    load_config("ZOO_HOME/name/config.json")      the same for a stored file; errors name it
"""
from __future__ import annotations

import copy
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Dict, Optional, Union

from ._version import __version__
from .data.transforms import FACE_MEAN, FACE_STD
from .heads import HEADS
from .models.vgg import PADDINGS, VGG_CONFIGS, scaled_channels
from .reference_config import reference_config, reference_family
from .templates import DEFAULT_BETA, DEFAULT_NUM_TEMPLATES, DEFAULT_RADIUS, DEFAULT_TAU

__all__ = [
    "LOSSES", "HEAD_NAMES", "MARGINALS", "BETA_MODES", "IMPLS", "PADDINGS",
    "CHANNEL_ORDERS", "LEGACY_ECLOSS_KEYS",
    "ARCH_KEYS", "ECLOSS_KEYS", "SETTABLE_KEYS", "DERIVED_KEYS", "CONFIG_KEYS", "PAPER_MODELS",
    "EXPLAINABLE_ECLOSS", "EXPLAINABLE_ECLOSS_14", "PAPER_GEOMETRY", "PRESETS",
    "default_config", "load_config", "derived_fields", "valid_model_name",
]

# ----------------------------------------------------------------------------------------------
# configuration choices (one definition each)
# ----------------------------------------------------------------------------------------------

LOSSES = ("softmax", "ecloss")
HEAD_NAMES = tuple(HEADS)       # softmax | cosface | arcface (zoo.heads.HEADS)
MARGINALS = ("uniform", "batch")   # P(T) in Eq. 5: the paper's uniform, or the batch marginal
BETA_MODES = ("fixed", "auto")     # zoo.ecloss.BetaPolicy
IMPLS = ("auto", "reference", "extension")  # how zoo.ecloss computes the MI (zoo.ops: extension)
CHANNEL_ORDERS = ("RGB", "BGR")
# PADDINGS (zeros | reflect | replicate) is imported above.
# ECLoss keys that configs written before issue 21 hold, with the values they may have: read,
# checked and kept, never written (the lab's map normalisation and template variants are
# research/'s hooks now; "none" and "all" are the paper's).
LEGACY_ECLOSS_KEYS = {"map_norm": ("none", "max"),
                      "template_peaks": ("all", "interior", "permuted")}

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_BASE_RE = re.compile(r"^vgg(\d+)$")

ARCH_KEYS = ("depth", "batch_norm", "width", "input_size", "embedding_dim", "dropout",
             "embedding_bn", "padding")
ECLOSS_KEYS = ("num_templates", "tau", "radius", "marginal", "alpha", "beta", "beta_mode",
               "content_free")
# Keys a caller may set; target_layer / feature_size / feature_channels follow from "arch".
SETTABLE_KEYS = ("name", "arch", "mean", "std", "channel_order", "loss", "head", "ecloss",
                 "training", "metrics", "zoo_version")
DERIVED_KEYS = ("target_layer", "feature_size", "feature_channels")
# Every key of a resolved config, in the order config.json lists them.
CONFIG_KEYS = ("name", "arch", "mean", "std", "channel_order",
               "target_layer", "feature_size", "feature_channels",
               "loss", "head", "ecloss", "training", "metrics", "zoo_version")

_PAPER_ARCH = {"batch_norm": False, "width": 1.0, "input_size": 224, "embedding_dim": 512,
               "dropout": 0.0, "embedding_bn": True, "padding": "zeros"}
_PAPER_ECLOSS = {"num_templates": DEFAULT_NUM_TEMPLATES, "tau": DEFAULT_TAU,
                 "radius": DEFAULT_RADIUS, "marginal": "uniform", "alpha": 1.0,
                 "beta": DEFAULT_BETA, "beta_mode": "auto", "content_free": 0.0}


def valid_model_name(name: Any) -> bool:
    """Letters, digits and '._+-', starting with a letter or digit (so never a hidden or
    "_downloads" folder)."""
    return isinstance(name, str) and bool(_NAME_RE.match(name))


def current_zoo_version() -> str:
    """The installed zoo version, recorded in each config that is resolved or saved."""
    return __version__


def derived_fields(arch: Dict[str, Any]) -> Dict[str, Any]:
    """target layer, map size and channels of an arch, without building the network."""
    cfg = VGG_CONFIGS[arch["depth"]]
    convs = sum(1 for v in cfg if v != "M")
    pools = len(cfg) - convs
    n_modules = pools + convs * (3 if arch["batch_norm"] else 2)  # conv [+bn] + relu per conv
    return {"target_layer": f"features.{n_modules - 1}",
            "feature_size": arch["input_size"] // 16,
            "feature_channels": scaled_channels(cfg[-1], arch["width"])}


def _paper_config(depth: int, loss: str) -> Dict[str, Any]:
    arch = {"depth": depth, **_PAPER_ARCH}
    return {
        "name": f"vgg{depth}-{loss}", "arch": arch,
        "mean": list(FACE_MEAN), "std": list(FACE_STD), "channel_order": "RGB",
        **derived_fields(arch),
        "loss": loss, "head": "softmax", "ecloss": dict(_PAPER_ECLOSS),
        # Empty until a training run fills them: a config never claims a run that did not happen.
        "training": {}, "metrics": {},
        "zoo_version": None,  # filled at resolution time
    }


# The six paper variants: 224 px, full width, no BN, 512-d embedding, ECLoss params of the paper.
PAPER_MODELS: Dict[str, Dict[str, Any]] = {
    f"vgg{d}-{loss}": _paper_config(d, loss) for d in sorted(VGG_CONFIGS) for loss in LOSSES}

# ----------------------------------------------------------------------------------------------
# training presets (zoo.train_config.TrainConfig)
# ----------------------------------------------------------------------------------------------

# Presets fill the options the user did not give; a run with no --preset gets "cpu" without a
# GPU and "gpu" with one. "cpu" trains ECLoss with EXPLAINABLE_ECLOSS, the setting chosen on
# validation identities (docs/results.md): tau = 1 and a fixed beta = 3 (the paper's tau = 1e-3
# with beta from 1e-5 leaves the MI term inert at this scale; at beta = 1 the explanations lean on
# the image border twice as often), plus the content-free term (our extension) and reflection
# padding: without them about half of the channels fire at a fixed cell whatever the input, or
# stay put when the face moves. "cpu" was chosen by measurement on the 2-core development machine
# (docs/training.md): VGG+BN at width 1/4 and 112 px (7x7 target maps), 30 epochs of the ORL
# training images. "gpu" is the paper's network and schedule (224 px, full width, 14x14 maps)
# with EXPLAINABLE_ECLOSS_14, the 14 x 14 validation step's choice by the same rule (3 seeds at
# width 1/8, docs/results.md Part 1): reflection padding at beta = 1, without the content-free
# term. "paper" is the paper's setting, literally.
EXPLAINABLE_ECLOSS = dict(tau=1.0, beta=3.0, beta_mode="fixed", padding="reflect",
                          content_free=1.0, translate=0.0)
# The 14 x 14 choice (the gpu preset): at 14 x 14, beta = 3 with the content-free term put more
# shown channels on the ring than reflection padding alone (0.27 vs 0.23 over 3 validation seeds)
EXPLAINABLE_ECLOSS_14 = {**EXPLAINABLE_ECLOSS, "beta": 1.0, "content_free": 0.0}
PAPER_GEOMETRY = dict(width=1.0, input_size=224, batch_norm=False, epochs=30, batch_size=64,
                      lr=0.03)
PRESETS: Dict[str, Dict[str, object]] = {
    "cpu": dict(width=0.25, input_size=112, batch_norm=True, epochs=30, batch_size=16, lr=0.05,
                **EXPLAINABLE_ECLOSS),
    "gpu": dict(**PAPER_GEOMETRY, **EXPLAINABLE_ECLOSS_14),
    "paper": dict(**PAPER_GEOMETRY, tau=DEFAULT_TAU, beta=DEFAULT_BETA, beta_mode="auto",
                  padding="zeros", content_free=0.0, translate=0.0),
}


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------

def _config_error(where: str, msg: str) -> ValueError:
    """A ValueError prefixed with ``where`` (a file name), so a bad file is named."""
    return ValueError(f"{where}: {msg}" if where else msg)


def _check_number(where, key, v, *, integer=False, positive=False, nonneg=False, below=None):
    wrong_type = not isinstance(v, int) if integer else not isinstance(v, (int, float))
    if isinstance(v, bool) or wrong_type:
        kind = "an integer" if integer else "a number"
        raise _config_error(where, f"{key} must be {kind}, got {v!r}")
    if not math.isfinite(v):
        raise _config_error(where, f"{key} must be finite, got {v!r}")
    if positive and not v > 0:
        raise _config_error(where, f"{key} must be > 0, got {v!r}")
    if nonneg and v < 0:
        raise _config_error(where, f"{key} must be >= 0, got {v!r}")
    if below is not None and not v < below:
        raise _config_error(where, f"{key} must be < {below}, got {v!r}")


def _check_choice(where, key, v, choices) -> None:
    if v not in choices:
        raise _config_error(where, f"{key} must be one of {choices}, got {v!r}")


def _check_flag(where, key, v) -> None:
    if not isinstance(v, bool):
        raise _config_error(where, f"{key} must be true or false, got {v!r}")


def _validate_arch(a: Dict[str, Any], where: str) -> None:
    if isinstance(a["depth"], bool) or a["depth"] not in list(VGG_CONFIGS):
        raise _config_error(where, f"arch.depth must be one of {sorted(VGG_CONFIGS)}, got "
                                   f"{a['depth']!r}")
    _check_flag(where, "arch.batch_norm", a["batch_norm"])
    _check_number(where, "arch.width", a["width"], positive=True)
    _check_number(where, "arch.input_size", a["input_size"], integer=True)
    if a["input_size"] % 16 or a["input_size"] < 32:
        raise _config_error(where, f"arch.input_size must be a multiple of 16 and >= 32, got "
                                   f"{a['input_size']}")
    _check_number(where, "arch.embedding_dim", a["embedding_dim"], integer=True, positive=True)
    _check_number(where, "arch.dropout", a["dropout"], nonneg=True, below=1)
    _check_flag(where, "arch.embedding_bn", a["embedding_bn"])
    _check_choice(where, "arch.padding", a["padding"], PADDINGS)


def _validate_ecloss(e: Dict[str, Any], where: str) -> None:
    if e["num_templates"] != "full":
        _check_number(where, "ecloss.num_templates", e["num_templates"], integer=True,
                      positive=True)
    _check_number(where, "ecloss.tau", e["tau"], positive=True)
    if e["radius"] is not None:  # None: ECLoss scales the paper's r=4 with the map size
        _check_number(where, "ecloss.radius", e["radius"], positive=True)
    _check_choice(where, "ecloss.marginal", e["marginal"], MARGINALS)
    _check_number(where, "ecloss.alpha", e["alpha"], nonneg=True)
    _check_number(where, "ecloss.beta", e["beta"], nonneg=True)
    _check_choice(where, "ecloss.beta_mode", e["beta_mode"], BETA_MODES)
    for key, choices in LEGACY_ECLOSS_KEYS.items():
        if key in e:
            _check_choice(where, f"ecloss.{key}", e[key], choices)
    _check_number(where, "ecloss.content_free", e["content_free"], nonneg=True)


def _validate(cfg: Dict[str, Any], where: str = "") -> None:
    """Raise ValueError (prefixed with ``where``, e.g. a file name) on the first bad field."""
    if not valid_model_name(cfg["name"]):
        raise _config_error(where, f"model name {cfg['name']!r} is not valid: use letters, "
                                   "digits and '.', '_', '+', '-', starting with a letter or "
                                   "digit")
    _validate_arch(cfg["arch"], where)
    for key in ("mean", "std"):
        v = cfg[key]
        if not isinstance(v, list) or len(v) != 3:
            raise _config_error(where, f"{key} must be a list of 3 numbers, got {v!r}")
        for x in v:
            _check_number(where, key, x, positive=(key == "std"))
    _check_choice(where, "channel_order", cfg["channel_order"], CHANNEL_ORDERS)
    _check_choice(where, "loss", cfg["loss"], LOSSES)
    _check_choice(where, "head", cfg["head"], HEAD_NAMES)
    _validate_ecloss(cfg["ecloss"], where)
    for key in ("training", "metrics"):
        if not isinstance(cfg[key], dict):
            raise _config_error(where, f"{key} must be a dict, got {type(cfg[key]).__name__}")
    if not isinstance(cfg["zoo_version"], str):
        raise _config_error(where, f"zoo_version must be a string, got {cfg['zoo_version']!r}")
    try:
        json.dumps(cfg, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _config_error(where, f"config is not JSON-serialisable: {exc}") from None


# ----------------------------------------------------------------------------------------------
# building a config
# ----------------------------------------------------------------------------------------------

def _merge_sub(cfg, key, value, valid, where):
    """Lay the dict ``value`` over ``cfg[key]``; its keys must be in ``valid``."""
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
            valid = ARCH_KEYS if key == "arch" else (
                ECLOSS_KEYS + tuple(LEGACY_ECLOSS_KEYS) if from_dict else ECLOSS_KEYS)
            _merge_sub(cfg, key, value, valid, where)
        elif key in ARCH_KEYS:
            cfg["arch"][key] = value
        elif key in ECLOSS_KEYS:
            cfg["ecloss"][key] = value
        elif key in SETTABLE_KEYS:
            cfg[key] = copy.deepcopy(value)
        elif key in DERIVED_KEYS and from_dict:
            pass  # a stored config repeats them; they are recomputed and compared below
        elif key in ("save_id", "weights_sha256") and from_dict:
            pass  # storage details of config.json (pair it with model.safetensors, verify it)
        else:
            extra = f"; {list(DERIVED_KEYS)} follow from arch" if key in DERIVED_KEYS else ""
            raise TypeError(f"{where}unknown config key {key!r}{extra}. Valid keys: top-level "
                            f"{list(SETTABLE_KEYS)}, arch {list(ARCH_KEYS)}, ecloss "
                            f"{list(ECLOSS_KEYS)}")


def _given_base(name_or_base: Union[str, Dict[str, Any]]) -> Dict[str, Any]:
    """The fields ``name_or_base`` fixes: a copy of a dict, or depth + loss of a name / base."""
    if isinstance(name_or_base, dict):
        return dict(name_or_base)
    if isinstance(name_or_base, str):
        if name_or_base in PAPER_MODELS:
            paper = PAPER_MODELS[name_or_base]
            return {"arch": {"depth": paper["arch"]["depth"]}, "loss": paper["loss"]}
        if _BASE_RE.match(name_or_base) and int(name_or_base[3:]) in VGG_CONFIGS:
            return {"arch": {"depth": int(name_or_base[3:])}, "loss": "ecloss"}
        raise ValueError(f"unknown model or base {name_or_base!r}; known: "
                         f"{sorted(PAPER_MODELS)} or bases "
                         f"{['vgg%d' % d for d in sorted(VGG_CONFIGS)]}")
    raise TypeError(f"default_config takes a name or a config dict, got "
                    f"{type(name_or_base).__name__}")


def _requested(key: str, overrides: Dict[str, Any], given: Dict[str, Any],
               sub: Optional[str] = None) -> Any:
    """The value asked for ``key`` (flat, or inside the ``sub`` dict): overrides win over the
    given config; None when neither sets it."""
    for src in (overrides, given):
        if sub and isinstance(src.get(sub), dict) and key in src[sub]:
            return src[sub][key]
        if key in src and not isinstance(src.get(key), dict):
            return src[key]
    return None


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
    if reference_family(name_or_base) is not None:   # dlib-resnet (zoo.reference_config)
        cfg = reference_config(name_or_base, overrides, current_zoo_version())
        if not valid_model_name(cfg["name"]):
            raise ValueError(f"model name {cfg['name']!r} is not valid")
        return cfg
    given = _given_base(name_or_base)
    if isinstance(given.get("arch"), dict) and "family" in given["arch"]:  # "vgg", said
        given["arch"] = {k: v for k, v in given["arch"].items() if k != "family"}
    name_fixed = (isinstance(name_or_base, dict) and "name" in given) or "name" in overrides

    # Depth and loss pick the paper template; everything else is laid over it.
    depth = _requested("depth", overrides, given, sub="arch")
    depth = depth if depth in list(VGG_CONFIGS) and not isinstance(depth, bool) else 16
    loss = _requested("loss", overrides, given)
    loss = loss if isinstance(loss, str) and loss in LOSSES else "ecloss"
    cfg = copy.deepcopy(PAPER_MODELS[f"vgg{depth}-{loss}"])
    _apply(cfg, given, "", from_dict=True)
    _apply(cfg, overrides, "", from_dict=False)
    if not name_fixed:
        cfg["name"] = f"vgg{cfg['arch']['depth']}-{cfg['loss']}"
    if cfg["zoo_version"] is None:
        cfg["zoo_version"] = current_zoo_version()
    _validate(cfg)
    # Stored derived fields must agree with the stored arch, else the file describes another
    # network (arch overrides make them stale on purpose: then they are just recomputed).
    derived = derived_fields(cfg["arch"])
    arch_overridden = any(k == "arch" or k in ARCH_KEYS for k in overrides)
    for key, value in derived.items():
        if not arch_overridden and key in given and given[key] != value:
            raise ValueError(f"config says {key}={given[key]!r} but its arch {cfg['arch']} "
                             f"gives {value!r}")
    cfg.update(derived)
    return {k: cfg[k] for k in CONFIG_KEYS}


# ----------------------------------------------------------------------------------------------
# config files
# ----------------------------------------------------------------------------------------------

def read_config_json(path: Path) -> Dict[str, Any]:
    """The JSON object in ``path``, unvalidated; errors name the file."""
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


def resolve_stored_config(data: Dict[str, Any], where: str) -> Dict[str, Any]:
    """``default_config`` of a stored dict, with every error prefixed by ``where``."""
    try:
        return default_config(data)
    except (TypeError, ValueError) as exc:
        msg = str(exc)
        raise ValueError(msg if msg.startswith(where) else f"{where}: {msg}") from None


def load_config(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """Read and validate a config.json (missing fields filled from the paper defaults)."""
    path = Path(path)
    return resolve_stored_config(read_config_json(path), str(path))
