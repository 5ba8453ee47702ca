"""The model hub: where models are stored, and their files. Nothing here knows model names beyond
the folders of the store (zoo.registry), nor builds a network (zoo.builder).

    zoo_home()                                  $ZOO_HOME, else ~/.cache/ecloss-zoo
    save(model, config)                         ZOO_HOME/<name>/model.safetensors + config.json
    local_models()                              the saved models: name -> folder
    read_stored(config_file, weights_file)      (state_dict, config, sha256), hash-checked
    download(url, sha256)                       a verified file in ZOO_HOME/_downloads
    load_weights(path)                          a state_dict from .safetensors / weights-only .pt

Storage (docs/registry.md): each model is a folder ``<name>/`` with ``model.safetensors`` (the
embedding network's state_dict, no pickle) and ``config.json``. Downloads are cached
content-addressed under ``_downloads/``.

Atomic saves (zoo._io.atomic_write_files): both files are written to hidden temp files in the
model folder, fsynced and then renamed over the old ones. Two renames cannot be one atomic step,
so the weights file also carries the full config and a save id in its safetensors metadata;
``read_stored`` notices a config.json left over from an interrupted save (its save id differs)
and uses the config stored with the weights instead. Either the previous or the new model loads,
never a mixture. ``save`` also records the sha256 of the weights in config.json, which
``read_stored`` checks.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
from functools import partial
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch

from export.model_files import PARTS_FILE

from ._io import atomic_write_files, sweep_stale_tmp
from .config import (
    ARCH_KEYS,
    current_zoo_version,
    default_config,
    read_config_json,
    resolve_stored_config,
    valid_model_name,
)
from .models.vgg import VGGFace

__all__ = [
    "WEIGHTS_FILE", "CONFIG_FILE", "DOWNLOADS_DIR", "DownloadError", "ChecksumError", "zoo_home",
    "local_models", "save", "read_stored", "verify_weights_hash", "file_sha256", "check_sha256",
    "is_url", "download", "read_safetensors", "read_torch", "load_weights", "WEIGHTS_SHA256",
    "model_weights_sha256", "check_same_weights",
]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
DOWNLOADS_DIR = "_downloads"  # "_" cannot start a model name, so it never collides with one
_META_CONFIG = "zoo_config"    # safetensors metadata keys (metadata is str -> str)
_META_SAVE_ID = "zoo_save_id"
# config.json: sha256 of model.safetensors, checked on load; the same key in every file derived
# from weights (channel_parts.json, metrics.json, the export's metadata): the sha256 of the
# weights file it was computed from
WEIGHTS_SHA256 = "weights_sha256"
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class DownloadError(RuntimeError):
    """A download failed or was incomplete; nothing was cached."""


class ChecksumError(DownloadError):
    """A downloaded (or cached) file does not have the expected sha256; nothing was cached."""


def zoo_home() -> Path:
    """$ZOO_HOME, else ~/.cache/ecloss-zoo (not created here)."""
    env = os.environ.get("ZOO_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ecloss-zoo"


def local_models(root: Optional[Path] = None) -> Dict[str, Path]:
    """name -> folder of every saved model in ``root`` (default ZOO_HOME): a folder with a valid
    model name holding both config.json and model.safetensors."""
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
    sweep_stale_tmp(folder)

    from safetensors.torch import save_file
    save_id = uuid.uuid4().hex
    state = _state_dict_for_save(net)

    written = {}

    def write_weights(tmp: Path) -> None:
        save_file(state, str(tmp), metadata={_META_CONFIG: json.dumps(cfg),
                                             _META_SAVE_ID: save_id, "format": "pt"})
        written["sha256"] = file_sha256(tmp)

    def write_config(tmp: Path) -> None:  # runs after write_weights: the hash is known
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({**cfg, "save_id": save_id, WEIGHTS_SHA256: written["sha256"]}, f,
                      indent=2, allow_nan=False)
            f.write("\n")

    # Weights renamed first: from then on they carry their own config (see module docstring).
    atomic_write_files(folder, [(WEIGHTS_FILE, write_weights), (CONFIG_FILE, write_config)])
    _drop_stale_parts(folder, written["sha256"])
    return folder


def _drop_stale_parts(folder: Path, sha256: str) -> None:
    """Remove the channel -> part table beside new weights unless it records these weights'
    sha256: it was computed from the weights just replaced (zoo.evaluate writes a new one)."""
    parts = folder / PARTS_FILE
    if not parts.is_file():
        return
    try:
        recorded = json.loads(parts.read_text(encoding="utf-8")).get(WEIGHTS_SHA256)
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded != sha256:
        parts.unlink()


def model_weights_sha256(model) -> Optional[str]:
    """The sha256 of the weights file ``model`` was loaded from, as hashed when it was loaded
    (zoo.load records it as ``model.zoo_weights_sha256``: a file changed since does not rebind
    the model); None for a model not loaded from a file."""
    return getattr(model, "zoo_weights_sha256", None)


def check_same_weights(where: str, recorded: Optional[str], actual: Optional[str],
                       rerun: str) -> None:
    """ValueError naming ``where`` when a derived file's recorded weights hash differs from the
    weights in use; ``rerun``: the command that rewrites it. A file without a hash (written
    before hashes were recorded) or weights without a file are not checked."""
    if recorded is None or actual is None or recorded == actual:
        return
    raise ValueError(f"{where}: computed from other weights (sha256 {recorded[:12]}...) than "
                     f"the model's (sha256 {actual[:12]}...), e.g. before a retraining; rerun "
                     f"{rerun}")


# ----------------------------------------------------------------------------------------------
# reading a saved model back
# ----------------------------------------------------------------------------------------------

def _pair_config(folder_cfg: Path, data: Optional[Dict[str, Any]], meta: Dict[str, str],
                 wpath: Path) -> Dict[str, Any]:
    """The config for a weights file: config.json beside it (``data``, read by the caller; None
    when there is none), unless that file belongs to another save (interrupted between the two
    renames); then the copy inside the weights."""
    embedded = None
    if _META_CONFIG in meta:
        try:
            embedded = json.loads(meta[_META_CONFIG])
        except json.JSONDecodeError as exc:
            raise ValueError(f"{wpath}: corrupt config in the safetensors "
                             f"metadata ({exc})") from None
    if data is not None:
        sid, wid = data.get("save_id"), meta.get(_META_SAVE_ID)
        if embedded is not None and sid is not None and wid is not None and sid != wid:
            warnings.warn(f"{folder_cfg} belongs to another save than {wpath} (interrupted "
                          "save?); using the config stored inside the weights file")
            return resolve_stored_config(embedded, f"{wpath} (metadata)")
        return resolve_stored_config(data, str(folder_cfg))
    if embedded is not None:
        return resolve_stored_config(embedded, f"{wpath} (metadata)")
    raise FileNotFoundError(f"{folder_cfg}: no config.json beside the weights and none "
                            "stored inside them; pass a registered name instead")


def verify_weights_hash(folder_cfg: Path, meta: Dict[str, str], wpath: Path,
                        data: Optional[Dict[str, Any]] = None) -> Optional[str]:
    """ValueError naming ``wpath`` unless its sha256 is the one config.json recorded at save;
    returns that sha256 when it was checked. Configs of older saves (no hash) and configs of
    another save (interrupted between the two renames: the weights then carry their own config)
    are not checked (None). ``data``: config.json already read (else it is read here)."""
    if data is None:
        if not folder_cfg.is_file():
            return None
        data = read_config_json(folder_cfg)
    expected = data.get(WEIGHTS_SHA256)
    if expected is None or data.get("save_id") != meta.get(_META_SAVE_ID):
        return None
    try:
        expected = check_sha256(expected)
    except ValueError as exc:
        raise ValueError(f"{folder_cfg}: {WEIGHTS_SHA256}: {exc}") from None
    actual = file_sha256(wpath)
    if actual != expected:
        raise ValueError(f"{wpath}: sha256 {actual} differs from the {expected} recorded in "
                         f"{folder_cfg} when it was saved: the weights were changed or damaged "
                         "on disk; save or download them again")
    return actual


def read_stored(config_file: Path, weights_file: Path
                ) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any], str]:
    """(state_dict, resolved config, the weights' sha256) of a saved model: ``weights_file`` and
    the config that belongs to it (``config_file``, or the copy inside the weights after an
    interrupted save, or for a lone .safetensors file); the weights' sha256 is checked against
    config.json's (the file is hashed once either way)."""
    state, meta = read_safetensors(weights_file)
    data = read_config_json(config_file) if config_file.is_file() else None   # read once
    cfg = _pair_config(config_file, data, meta, weights_file)
    sha256 = ((data is not None and verify_weights_hash(config_file, meta, weights_file, data))
              or file_sha256(weights_file))
    return state, cfg, sha256


# ----------------------------------------------------------------------------------------------
# hashes and downloads
# ----------------------------------------------------------------------------------------------

def file_sha256(path: Union[str, os.PathLike]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_sha256(sha256: str) -> str:
    """``sha256`` in lower case; ValueError unless it is 64 hex digits."""
    if not isinstance(sha256, str) or not _SHA_RE.match(sha256.lower()):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}")
    return sha256.lower()


def is_url(s: str) -> bool:
    return urllib.parse.urlparse(s).scheme in ("http", "https", "file")


def _cache_name(url: str, sha256: str) -> str:
    base = os.path.basename(urllib.parse.urlparse(url).path) or "weights"
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".") or "weights"
    stem, dot, ext = base.rpartition(".")
    # Content-addressed: a new file at the same url (new hash) never reuses the old one.
    return f"{stem}-{sha256[:16]}.{ext}" if dot and stem else f"{base}-{sha256[:16]}"


def _fetch_verified(url: str, sha256: str, timeout: float, progress: bool, desc: str,
                    tmp: Path) -> None:
    """Stream ``url`` into ``tmp``; raise unless the byte count and the sha256 are right."""
    from tqdm.auto import tqdm
    h = hashlib.sha256()
    received = 0
    try:
        resp = urllib.request.urlopen(url, timeout=timeout)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DownloadError(f"cannot download {url}: {exc}") from None
    with resp, open(tmp, "wb") as out:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=desc, disable=not progress) as bar:
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
    actual = h.hexdigest()
    if actual != sha256:
        raise ChecksumError(f"sha256 mismatch for {url}: expected {sha256}, got {actual} "
                            f"({received} bytes); the file was deleted, nothing was cached")


def download(url: str, sha256: str, dest_dir: Union[str, os.PathLike, None] = None,
             progress: bool = True, timeout: float = 60.0) -> Path:
    """Fetch ``url`` into ``dest_dir`` (default: the cache ZOO_HOME/_downloads; created if
    missing) and return its path.

    Streams into a hidden temp file in ``dest_dir`` with a tqdm bar, then checks the byte
    count against Content-Length and the sha256; only a verified file is renamed into place.
    Any failure (hash mismatch, short read, network error, Ctrl-C) deletes the temp file and
    raises DownloadError / ChecksumError naming the url. A cached file is re-hashed and reused.
    """
    sha256 = check_sha256(sha256)
    if not is_url(url):
        raise ValueError(f"not an http(s)/file url: {url!r}")
    dest = Path(dest_dir) if dest_dir is not None else zoo_home() / DOWNLOADS_DIR
    dest.mkdir(parents=True, exist_ok=True)
    sweep_stale_tmp(dest)
    final = dest / _cache_name(url, sha256)
    if final.is_file():
        actual = file_sha256(final)
        if actual == sha256:
            return final
        # The cache was altered after it was verified: drop it and fetch again.
        warnings.warn(f"{final}: cached file has sha256 {actual}, expected {sha256}; "
                      "downloading again")
        final.unlink()
    fetch = partial(_fetch_verified, url, sha256, timeout, progress, final.name)
    atomic_write_files(dest, [(final.name, fetch)])
    return final


# ----------------------------------------------------------------------------------------------
# weight files
# ----------------------------------------------------------------------------------------------

def read_safetensors(path: Path):
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


def read_torch(path: Path) -> Dict[str, torch.Tensor]:
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
        state = read_torch(path)
    else:
        state, _ = read_safetensors(path)
    for prefix in ("module.", "_orig_mod."):  # DDP / torch.compile checkpoints
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state
