"""Atomic writes, the zoo's one routine for them, and the sweeping of their stale temp files.
Nothing here knows about models (zoo.hub stores them, with these writes).

``atomic_write_files`` and ``atomic_write_bytes`` are what every writer uses (model saves and
downloads in zoo.hub, training checkpoints, .rec / .bin files): a hidden temp file in the
target's own folder (a rename across file systems is not atomic), fsync, ``os.replace``, fsync
the folder.
A reader therefore sees the old file or the new one, never half of one. Temp files are named
``.<final name>.tmp.<pid>.<tag>``: the pid lets ``sweep_stale_tmp`` delete the leftovers of a
process that died mid-write (SIGKILL) without touching a live writer's file.
"""
from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Callable, Sequence, Tuple, Union

__all__ = ["atomic_write_files", "atomic_write_bytes", "sweep_stale_tmp"]

_TMP_RE = re.compile(r"^\..+\.tmp\.(\d+)\.[0-9a-f]+$")
# Written by the model saves before the writers shared this module; still swept.
_LEGACY_TMP_RE = re.compile(r"^\..+\.(\d+)\.[0-9a-f]+\.tmp$")


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
    to agree must be able to tell (zoo.hub.save stores a save id in both)."""
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
