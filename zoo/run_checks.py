"""What a training run checks before its first step, and what --resume compares.

    check_inputs(cfg, log)                 --data, --val, the run folder and ZOO_HOME writable,
                                           and registering over an existing name (--overwrite)
    read_resume(cfg, ckpt_path, hook)      the checkpoint a --resume continues, after comparing
                                           its options with this run's (ValueError naming each
                                           difference)
    stretch_schedule(scheduler, fresh)     more --epochs on resume: the one-cycle schedule
                                           rebuilt for the new total, the step count continued

zoo.engine calls them in its setup, before the network is built (docs/training.md, "Resume").
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import warnings
from pathlib import Path
from typing import Callable, Dict, Optional

from . import hub
from .checkpoint import load_checkpoint
from .train_config import TrainConfig

__all__ = ["RESUME_MAY_CHANGE", "NUM_FOLDS", "check_inputs", "check_writable", "read_resume",
           "resume_differences", "stretch_schedule"]

# the options a --resume may change: where and how the run is shown, stopped, validated and
# registered, and (with a rebuilt schedule) how long it trains; every other option must equal
# the checkpoint's, or the result would not be the run its config says
RESUME_MAY_CHANGE = frozenset({"epochs", "max_steps", "resume", "register", "evaluate",
                               "device", "log_every", "progress", "workers", "out", "val",
                               "overwrite", "name", "ecloss_impl"})
NUM_FOLDS = 10  # the LFW protocol's folds (zoo.metrics.verification): a .bin needs as many pairs


def check_writable(folder: Path, what: str) -> None:
    """ValueError unless ``folder`` is (or can be created as) a writable folder."""
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"{what} {folder}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{what} {folder}: {probe} is not writable")


def _check_val(val: str) -> None:
    if val == "orl":
        return
    path = Path(val)
    if path.suffix != ".bin":
        raise ValueError(f"--val {val}: expected 'orl' or an insightface .bin file")
    if not path.is_file():
        raise FileNotFoundError(f"--val {val}: no such file")
    from .data.insightface_bin import read_bin_raw  # unpickles, decodes no image
    try:
        _, issame = read_bin_raw(path)
    except (pickle.UnpicklingError, ValueError, OSError, EOFError) as e:
        raise ValueError(f"--val {val}: not a readable .bin ({e})") from None
    n_same = int(sum(bool(s) for s in issame))
    if len(issame) < NUM_FOLDS:
        raise ValueError(f"--val {val}: {len(issame)} pairs; the {NUM_FOLDS}-fold protocol "
                         f"needs at least {NUM_FOLDS}")
    if n_same in (0, len(issame)):
        raise ValueError(f"--val {val}: needs both same and different pairs, has "
                         f"{n_same} same of {len(issame)}")


def _check_data(data: str) -> None:
    if data == "orl":
        return
    path = Path(data)
    if path.suffix == ".rec":
        if not path.is_file():
            raise FileNotFoundError(f"--data {data}: no such .rec file")
        if not path.with_suffix(".idx").is_file():
            raise FileNotFoundError(f"--data {data}: its index {path.with_suffix('.idx')} "
                                    "is missing")
    elif not path.is_dir():
        raise FileNotFoundError(f"--data {data}: not 'orl', an identity folder or a .rec file")


def check_inputs(cfg: TrainConfig, log: Callable[..., None]) -> None:
    """Every input and output of a (resolved) run, before anything is built: --data, each
    --val (a .bin must hold >= NUM_FOLDS pairs of both kinds), the run folder and ZOO_HOME
    writable, and the registered name (refused without --overwrite or --resume; replaced with
    a line saying what)."""
    _check_data(cfg.data)
    if cfg.evaluate:
        for val in cfg.val:
            _check_val(val)
    check_writable(Path(cfg.out), "--out")
    if not cfg.register:
        return
    check_writable(hub.zoo_home(), "ZOO_HOME")
    folder = hub.local_models().get(cfg.name)
    if folder is None:
        return
    if not (cfg.overwrite or cfg.resume):
        raise ValueError(f"{cfg.name} is already registered at {folder}; --overwrite replaces "
                         f"it, --name NEW registers another name, --no-register registers "
                         "nothing")
    try:
        sha = json.loads((folder / hub.CONFIG_FILE).read_text()).get(hub.WEIGHTS_SHA256)
    except (OSError, ValueError, AttributeError):
        sha = None
    log(f"this run replaces the registered {cfg.name} at {folder}"
        + (f" (weights sha256 {sha[:12]}...)" if sha else "")
        + "; its channel_parts.json is removed at registration, and its evaluation and exports "
          f"are refused from then on: rerun `python -m zoo.evaluate {cfg.name}` and the export")


def resume_differences(saved: Dict, cfg: TrainConfig, hook: Optional[dict] = None) -> list:
    """'option: checkpoint X, now Y' for each option that differs from the checkpoint's config
    and may not change on resume (RESUME_MAY_CHANGE); options the checkpoint predates are
    skipped."""
    now = {**dataclasses.asdict(cfg), "hook": hook or {}}
    out = []
    for key in sorted(now):
        if key in RESUME_MAY_CHANGE or key not in saved:
            continue
        a, b = saved[key], now[key]
        if isinstance(a, list) or isinstance(b, list):
            a, b = list(a or []), list(b or [])
        if a != b:
            option = "--" + key.replace("_", "-")
            out.append(f"{option}: checkpoint {a!r}, now {b!r}")
    return out


def read_resume(cfg: TrainConfig, ckpt_path: Path, hook: Optional[dict],
                log: Callable[..., None]) -> Optional[dict]:
    """The checkpoint state a --resume continues (None without --resume or without a
    checkpoint). ValueError naming every option that differs from the checkpoint's, or for
    fewer --epochs than the checkpoint has done."""
    if not cfg.resume:
        return None
    if not ckpt_path.exists():
        log(f"--resume: no checkpoint at {ckpt_path}, starting from scratch")
        return None
    state = load_checkpoint(ckpt_path)
    saved = json.loads(state.get("config") or "{}")
    diffs = resume_differences(saved, cfg, hook)
    if diffs:
        raise ValueError(f"--resume {ckpt_path}: the options differ from the checkpoint's "
                         f"({'; '.join(diffs)}); resume with the run's options (its "
                         "train_config.json), or train a new --name")
    if cfg.epochs < state["epoch"]:
        raise ValueError(f"--resume {ckpt_path}: --epochs {cfg.epochs} is fewer than the "
                         f"{state['epoch']} epochs the checkpoint has done")
    if saved.get("epochs") not in (None, cfg.epochs):
        log(f"--resume: --epochs {cfg.epochs} (checkpoint {saved['epochs']}): the one-cycle "
            f"schedule is rebuilt for {cfg.epochs} epochs and continues at step "
            f"{state['step']}")
    return state


def stretch_schedule(scheduler, fresh_state: dict) -> None:
    """After loading a checkpoint's one-cycle scheduler: give it the total and phases of
    ``fresh_state`` (the state of a scheduler built for the new --epochs), keep its step count,
    and set the optimizer's learning rate and momentum to the rebuilt schedule's at that step."""
    state = scheduler.state_dict()
    if state.get("total_steps") == fresh_state.get("total_steps"):
        return
    state["total_steps"] = fresh_state["total_steps"]
    state["_schedule_phases"] = fresh_state["_schedule_phases"]
    scheduler.load_state_dict(state)
    with warnings.catch_warnings():  # get_lr outside step() warns; here it is the point
        warnings.simplefilter("ignore")
        lrs = scheduler.get_lr()  # also sets the cycled momentum of each group
    for group, lr in zip(scheduler.optimizer.param_groups, lrs):
        group["lr"] = lr
    state = scheduler.state_dict()
    state["_last_lr"] = list(lrs)
    scheduler.load_state_dict(state)
