"""Train with the lab's experiment terms: zoo.train's options plus the lab's.

    python -m research.train vgg19 --off-head 1 --background 0.5
    python -m research.train vgg19 --shuffled-faces 0.5 --map-norm max --epochs 10
    python -m research.train vgg19 --template-peaks permuted        # a control

Every zoo.train option works the same; the lab's options build a research.hooks.ExperimentHook
that zoo.engine.train calls (zoo.training_hook), and the run records what it did as
training.hook (config.json), hook (train_config.json, summary.json). Without a lab option (or
with their defaults) the run is zoo.train's. A --config file may also hold the lab's fields
(background, off_head, shuffled_faces, map_norm, template_peaks), as configs written before
issue 21 did.
"""
from __future__ import annotations

import dataclasses
import sys

from zoo.train import build_parser, option_values, run
from zoo.train_config import TrainConfig

from .ecloss_variants import MAP_NORMS, TEMPLATE_PEAKS
from .hooks import LAB_DEFAULTS, hook_from_settings

__all__ = ["build_lab_parser", "lab_config_from_args", "main"]


def build_lab_parser():
    p = build_parser(prog="python -m research.train")
    p.description = __doc__ + "\n" + (p.description or "")
    lab = p.add_argument_group("the lab's experiment terms (research/, our extensions; 0 = off)")
    lab.add_argument("--background", type=float, default=None, metavar="P",
                     help="give this share of the training faces a random background behind "
                          "the head (needs landmarks: --data orl)")
    lab.add_argument("--off-head", type=float, default=None, metavar="WEIGHT",
                     help="penalise the share of each map's activation that lies off the head "
                          "with this weight (needs landmarks: --data orl; no --translate)")
    lab.add_argument("--shuffled-faces", type=float, default=None, metavar="SHARE",
                     help="make this share of the content-free images part-shuffled copies of "
                          "the batch's faces (tiles in a random order; needs --content-free)")
    lab.add_argument("--map-norm", choices=MAP_NORMS, default=None,
                     help="max: normalise each map by its max before the MI")
    lab.add_argument("--template-peaks", choices=TEMPLATE_PEAKS, default=None,
                     help="interior: template peaks off the map's outer ring; permuted: each "
                          "template's cells shuffled (a control, not a method)")
    return p


def lab_config_from_args(argv=None):
    """(TrainConfig, the lab's settings) of a command line."""
    args = build_lab_parser().parse_args(argv)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values = option_values(args, fields | set(LAB_DEFAULTS))
    lab = {k: values.pop(k) for k in LAB_DEFAULTS if k in values}
    return TrainConfig(**values), lab


def main(argv=None) -> int:
    cfg, lab = lab_config_from_args(argv)
    try:
        hook = hook_from_settings(lab)
    except ValueError as e:
        print(f"research.train: error: {e}", file=sys.stderr)
        return 2
    return run(cfg, hook, prog="research.train")


if __name__ == "__main__":
    sys.exit(main())
