"""Training checkpoints: one file per run, written atomically, read without pickle.

``save_checkpoint`` writes with zoo._io's one atomic-write routine (temp file, fsync, rename) after
sweeping the temp files of killed writers, so a run killed at any moment leaves the previous
checkpoint intact; ``load_checkpoint`` reads with ``weights_only=True`` and names a bad file.
``rng_state`` / ``set_rng_state`` carry the RNG streams across a resume.
"""
from __future__ import annotations

import io
import random
from pathlib import Path

import torch

from ._io import atomic_write_bytes, sweep_stale_tmp

__all__ = ["save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state"]


def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save ``state`` to ``path`` atomically (zoo._io.atomic_write_bytes), after deleting
    the temp files of writers that were killed mid-write (e.g. a run killed and resumed)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    sweep_stale_tmp(Path(path).parent)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or foreign file: say which
        raise RuntimeError(f"{path}: cannot load checkpoint ({type(e).__name__}: {e})") from e


def rng_state() -> dict:
    """The torch and Python RNG states, in a form torch.load(weights_only=True) reads back."""
    return {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
            "python_pos": random.getstate()[2]}


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` returned."""
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(int(v) for v in state["python"]), state["python_pos"]))
