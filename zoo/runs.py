"""Where a run's files lie: one folder per model name under a runs root (default ``runs/``).

    runs/<name>/               zoo.train: checkpoint.pt, log.csv, train_config.json,
                               summary.json, curves.png
    runs/<name>/evaluation/    zoo.evaluate: metrics.json, report.md, figures, channel_parts.json

zoo.engine, zoo.evaluate and zoo.compare (and the lab's research.study) take these paths from here.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

__all__ = ["RUNS_ROOT", "EVALUATION_DIR", "CHECKPOINT_FILE", "LOG_FILE", "SUMMARY_FILE",
           "TRAIN_CONFIG_FILE", "CURVES_FILE", "METRICS_FILE", "run_dir", "evaluation_dir"]

RUNS_ROOT = "runs"
EVALUATION_DIR = "evaluation"
CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "log.csv"
SUMMARY_FILE = "summary.json"
TRAIN_CONFIG_FILE = "train_config.json"
CURVES_FILE = "curves.png"
METRICS_FILE = "metrics.json"


def run_dir(name: str, root: Union[str, os.PathLike] = RUNS_ROOT) -> Path:
    """The training run folder of model ``name``: ``<root>/<name>``."""
    return Path(root) / name


def evaluation_dir(name: str, root: Union[str, os.PathLike] = RUNS_ROOT) -> Path:
    """Where zoo.evaluate writes the metrics and figures of ``name``:
    ``<root>/<name>/evaluation``."""
    return run_dir(name, root) / EVALUATION_DIR
