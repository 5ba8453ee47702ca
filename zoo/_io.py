"""File plumbing of the zoo: atomic writes, stale-temp sweeping, sha256, verified downloads and
weight-file readers. Nothing here knows about model names or configs (zoo.registry, zoo.config).

Atomic writes (``atomic_write_files``, ``atomic_write_bytes``) are the one routine every writer
uses (registry saves, training checkpoints, downloads): a hidden temp file in the target's own
folder (a rename across file systems is not atomic), fsync, ``os.replace``, fsync the folder.
A reader therefore sees the old file or the new one, never half of one. Temp files are named
``.<final name>.tmp.<pid>.<tag>``: the pid lets ``sweep_stale_tmp`` delete the leftovers of a
process that died mid-write (SIGKILL) without touching a live writer's file.
"""
from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid
import warnings
from functools import partial
from pathlib import Path
from typing import Callable, Dict, Sequence, Tuple, Union

import torch

__all__ = [
    "DownloadError", "ChecksumError", "atomic_write_files", "atomic_write_bytes",
    "sweep_stale_tmp", "file_sha256", "check_sha256", "is_url", "download", "read_safetensors",
    "read_torch", "load_weights",
]

_TMP_RE = re.compile(r"^\..+\.tmp\.(\d+)\.[0-9a-f]+$")
# Written by zoo.registry before the writers shared this module; still swept.
_LEGACY_TMP_RE = re.compile(r"^\..+\.(\d+)\.[0-9a-f]+\.tmp$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class DownloadError(RuntimeError):
    """A download failed or was incomplete; nothing was cached."""


class ChecksumError(DownloadError):
    """A downloaded (or cached) file does not have the expected sha256; nothing was cached."""


# ----------------------------------------------------------------------------------------------
# atomic writes
# ----------------------------------------------------------------------------------------------

def _temp_path(folder: Path, final_name: str, tag: str) -> Path:
    return folder / f".{final_name}.tmp.{os.getpid()}.{tag}"


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make the renames in ``folder`` durable, where the platform allows it."""
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


def atomic_write_files(folder: Union[str, os.PathLike],
                       writers: Sequence[Tuple[str, Callable[[Path], None]]]) -> None:
    """Write several files of ``folder`` as one save: each ``(name, write)`` pair's ``write(tmp)``
    fills a temp file, every temp file is fsynced, then they are renamed over ``folder/name`` in
    the given order and the folder is fsynced. If a writer raises (or a crash comes) before the
    renames, no file has changed; the temp files are removed on any exception. A crash between
    two renames leaves the earlier files new and the later ones old: callers that need the files
    to agree must be able to tell (registry.save stores a save id in both)."""
    folder = Path(folder)
    tag = uuid.uuid4().hex[:8]
    temps = [_temp_path(folder, name, tag) for name, _ in writers]
    try:
        for tmp, (_, write) in zip(temps, writers):
            write(tmp)
            _fsync_file(tmp)
        for tmp, (name, _) in zip(temps, writers):
            os.replace(tmp, folder / name)
        _fsync_dir(folder)
    finally:
        for tmp in temps:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass


def atomic_write_bytes(path: Union[str, os.PathLike], data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically (see ``atomic_write_files``)."""
    path = Path(path)
    atomic_write_files(path.parent, [(path.name, lambda tmp: tmp.write_bytes(data))])


def sweep_stale_tmp(folder: Union[str, os.PathLike]) -> None:
    """Delete temp files left in ``folder`` by atomic writes whose process died (e.g. SIGKILL).
    Files of live processes (maybe a concurrent save) and of this process are kept."""
    folder = Path(folder)
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for fname in names:
        match = _TMP_RE.match(fname) or _LEGACY_TMP_RE.match(fname)
        if match is None:
            continue
        pid = int(match.group(1))
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


def download(url: str, sha256: str, dest_dir: Union[str, os.PathLike], progress: bool = True,
             timeout: float = 60.0) -> Path:
    """Fetch ``url`` into ``dest_dir`` (created if missing) and return its path.

    Streams into a hidden temp file in ``dest_dir`` with a tqdm bar, then checks the byte
    count against Content-Length and the sha256; only a verified file is renamed into place.
    Any failure (hash mismatch, short read, network error, Ctrl-C) deletes the temp file and
    raises DownloadError / ChecksumError naming the url. A cached file is re-hashed and reused.
    """
    sha256 = check_sha256(sha256)
    if not is_url(url):
        raise ValueError(f"not an http(s)/file url: {url!r}")
    dest = Path(dest_dir)
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
