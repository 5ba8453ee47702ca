"""Model registry and loading: names -> configs -> VGGFace weights (timm / torchvision style).

    list_models("vgg16*")                       names: the paper variants + local + remote
    create("vgg16-ecloss", width=0.25)          untrained model built from a (default) config
    build(default_config("vgg16", width=0.25))  untrained model of a resolved config
    save(model, config)                         ZOO_HOME/<name>/model.safetensors + config.json
    load("vgg16-ecloss")                        eval-mode model with ``model.zoo_config``
    load("vgg16-ecloss", weights="https://..", sha256="..")   remote weights, hash-checked

The config schema, the paper models and ``default_config`` live in zoo.config; atomic writes,
downloads and weight readers in zoo._io. Their public names are re-exported here, so
``registry.default_config`` / ``registry.PAPER_MODELS`` / ``registry.DownloadError`` keep working.

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
import json
import os
import uuid
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch

from . import _io
from ._io import load_weights
from .config import (
    ARCH_KEYS,
    DERIVED_KEYS,
    PAPER_MODELS,
    current_zoo_version,
    default_config,
    load_config,
    read_config_json,
    resolve_stored_config,
    valid_model_name,
)
from .models.vgg import VGGFace

# isort: split
# Re-exported: callers use registry.<name> for the config schema and the download errors.
from ._io import ChecksumError, DownloadError  # noqa: F401
from .config import (  # noqa: F401
    BETA_MODES,
    CHANNEL_ORDERS,
    CONFIG_KEYS,
    ECLOSS_KEYS,
    HEAD_NAMES,
    LOSSES,
    MAP_NORMS,
    MARGINALS,
    SETTABLE_KEYS,
)

__all__ = [
    "PAPER_MODELS", "REMOTE", "LOSSES", "HEAD_NAMES", "WEIGHTS_FILE", "CONFIG_FILE",
    "DownloadError", "ChecksumError", "zoo_home", "default_config", "list_models", "create",
    "build", "save", "load", "register_remote", "download", "load_config", "load_weights",
]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
DOWNLOADS_DIR = "_downloads"  # "_" cannot start a model name, so it never collides with one
_META_CONFIG = "zoo_config"    # safetensors metadata keys (metadata is str -> str)
_META_SAVE_ID = "zoo_save_id"
_WEIGHTS_SHA256 = "weights_sha256"  # config.json: sha256 of model.safetensors, checked on load

# Published weights: name -> {"url", "sha256", "config"}. Empty until weights are published;
# register_remote() adds entries at run time (see docs/registry.md).
REMOTE: Dict[str, Dict[str, Any]] = {}


def zoo_home() -> Path:
    """$ZOO_HOME, else ~/.cache/ecloss-zoo (not created here)."""
    env = os.environ.get("ZOO_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ecloss-zoo"


def build(cfg: Dict[str, Any]) -> VGGFace:
    """Untrained VGGFace of a resolved config (``default_config``'s output); the config is
    ``model.zoo_config``. zoo.engine builds the network it trains with this."""
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
        if not entry.is_dir() or not valid_model_name(entry.name):
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
    return build(cfg)


# ----------------------------------------------------------------------------------------------
# save
# ----------------------------------------------------------------------------------------------

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
    cfg = default_config(dict(config), zoo_version=current_zoo_version(),
                         **({"name": name} if name is not None else {}))
    _check_model_matches(net, cfg)
    folder = (Path(root) if root is not None else zoo_home()) / cfg["name"]
    folder.mkdir(parents=True, exist_ok=True)
    _io.sweep_stale_tmp(folder)

    from safetensors.torch import save_file
    save_id = uuid.uuid4().hex
    state = _state_dict_for_save(net)

    written = {}

    def write_weights(tmp: Path) -> None:
        save_file(state, str(tmp), metadata={_META_CONFIG: json.dumps(cfg),
                                             _META_SAVE_ID: save_id, "format": "pt"})
        written["sha256"] = _io.file_sha256(tmp)

    def write_config(tmp: Path) -> None:  # runs after write_weights: the hash is known
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({**cfg, "save_id": save_id, _WEIGHTS_SHA256: written["sha256"]}, f,
                      indent=2, allow_nan=False)
            f.write("\n")

    # Weights renamed first: from then on they carry their own config (see module docstring).
    _io.atomic_write_files(folder, [(WEIGHTS_FILE, write_weights), (CONFIG_FILE, write_config)])
    return folder


# ----------------------------------------------------------------------------------------------
# remote weights
# ----------------------------------------------------------------------------------------------

def register_remote(name: str, url: str, sha256: str,
                    config: Optional[Dict[str, Any]] = None) -> None:
    """Make ``load(name)`` fetch ``url`` (checked against ``sha256``) into the cache.
    ``config`` defaults to the paper config of ``name`` (which must then be a paper name)."""
    sha256 = _io.check_sha256(sha256)
    if not _io.is_url(url):
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
    """``zoo._io.download`` into ``dest_dir``, by default the cache ZOO_HOME/_downloads: the file
    is checked against ``sha256`` before it is cached, and a cached file is re-hashed."""
    dest = Path(dest_dir) if dest_dir is not None else zoo_home() / DOWNLOADS_DIR
    return _io.download(url, sha256, dest, progress=progress, timeout=timeout)


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
        data = read_config_json(folder_cfg)
        sid, wid = data.get("save_id"), meta.get(_META_SAVE_ID)
        if embedded is not None and sid is not None and wid is not None and sid != wid:
            warnings.warn(f"{folder_cfg} belongs to another save than {wpath} (interrupted "
                          "save?); using the config stored inside the weights file")
            return resolve_stored_config(embedded, f"{wpath} (metadata)")
        return resolve_stored_config(data, str(folder_cfg))
    if embedded is not None:
        return resolve_stored_config(embedded, f"{wpath} (metadata)")
    if fallback is not None:
        return copy.deepcopy(fallback)
    raise FileNotFoundError(f"{folder_cfg or wpath}: no config.json beside the weights and none "
                            "stored inside them; pass a registered name instead")


def _verify_weights_hash(folder_cfg: Path, meta: Dict[str, str], wpath: Path) -> None:
    """ValueError naming ``wpath`` unless its sha256 is the one config.json recorded at save.
    Configs of older saves (no hash) and configs of another save (interrupted between the two
    renames: the weights then carry their own config) are not checked."""
    if not folder_cfg.is_file():
        return
    data = read_config_json(folder_cfg)
    expected = data.get(_WEIGHTS_SHA256)
    if expected is None or data.get("save_id") != meta.get(_META_SAVE_ID):
        return
    try:
        expected = _io.check_sha256(expected)
    except ValueError as exc:
        raise ValueError(f"{folder_cfg}: {_WEIGHTS_SHA256}: {exc}") from None
    actual = _io.file_sha256(wpath)
    if actual != expected:
        raise ValueError(f"{wpath}: sha256 {actual} differs from the {expected} recorded in "
                         f"{folder_cfg} when it was saved: the weights were changed or damaged "
                         "on disk; save or download them again")


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
            state, meta = _io.read_safetensors(wpath)
            cfg = _pair_config(cfg_file, meta, wpath, None)
            _verify_weights_hash(cfg_file, meta, wpath)
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
                state, meta = _io.read_safetensors(wpath)
                cfg = _pair_config(local[spec] / CONFIG_FILE, meta, wpath, None)
                _verify_weights_hash(local[spec] / CONFIG_FILE, meta, wpath)
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
        if _io.is_url(w):
            if sha256 is None:
                raise ValueError(f"weights url {w} needs sha256= (the expected hash of the file)")
            wpath = download(w, sha256, progress=progress)
        else:
            wpath = Path(w).expanduser()
            if not wpath.is_file():
                raise FileNotFoundError(f"{wpath}: weights file not found")
        state = load_weights(wpath)

    model = build(cfg)
    _load_state_checked(model, state, wpath)
    model.to(map_location)
    model.eval()
    model.zoo_dir = model_dir
    return model
