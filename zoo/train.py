"""Train a VGG face network with or without ECLoss.

    python -m zoo.train vgg19                                  # ORL, ECLoss, CPU/GPU preset
    python -m zoo.train vgg16 --loss softmax --epochs 20
    python -m zoo.train vgg19 --data faces/ --val lfw.bin      # identity folder, .bin val set
    torchrun --nproc_per_node 8 -m zoo.train vgg19 --data train.rec --val lfw.bin cfp_fp.bin

A thin CLI over zoo.engine.train; every option maps to a TrainConfig field.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Collection, Optional

from .config import BETA_MODES, HEAD_NAMES, IMPLS, LOSSES, MARGINALS, PADDINGS, PRESETS
from .engine import train
from .templates import DEFAULT_BETA, DEFAULT_TAU
from .train_config import TrainConfig
from .training_hook import TrainingHook

__all__ = ["build_parser", "option_values", "config_from_args", "run", "main"]


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


# A checkout's lab (research.train, not installed) extends this parser with its own options and
# trains through a zoo.training_hook.TrainingHook; this CLI shows the method's options only.
def build_parser(prog: str = "python -m zoo.train") -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("arch", help="vgg13 | vgg16 | vgg19")
    p.add_argument("--config", help="JSON file of TrainConfig fields (command-line options win)")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="default: gpu on a GPU, cpu otherwise; "
                        "paper = the paper's literal settings")
    p.add_argument("--loss", choices=LOSSES, default=None, help=f"default {d.loss}")
    p.add_argument("--head", choices=HEAD_NAMES, default=None)
    p.add_argument("--data", default=None, help="orl (default) | identity folder | train.rec")
    p.add_argument("--val", nargs="+", default=None, help="orl (default) and/or .bin files")
    p.add_argument("--templates", default=None, help="400 (paper) | full | any count")
    p.add_argument("--tau", type=float, default=None,
                   help=f"template amplitude (cpu/gpu presets 1, paper preset {DEFAULT_TAU:g})")
    p.add_argument("--radius", type=float, default=None,
                   help="template radius (4 at 14x14, scaled)")
    p.add_argument("--marginal", choices=MARGINALS, default=None)
    p.add_argument("--content-free", type=float, default=None, metavar="WEIGHT",
                   help="push maps of blank/noise images to the negative template with this "
                        "weight (our extension; 0 = off)")
    p.add_argument("--padding", choices=PADDINGS, default=None,
                   help="conv padding (VGG: zeros)")
    p.add_argument("--translate", type=float, default=None,
                   help="random-shift augmentation: resize by 1+T, random crop (0 = off)")
    p.add_argument("--alpha", type=float, default=None)
    p.add_argument("--beta", type=float, default=None,
                   help=f"(initial) beta (cpu preset 3 fixed, gpu 1 fixed, paper "
                        f"{DEFAULT_BETA:g} auto)")
    p.add_argument("--beta-mode", choices=BETA_MODES, default=None)
    p.add_argument("--beta-ratio", type=float, default=None,
                   help="auto beta: target beta*MI / (alpha*CE) (docs/paper-notes.md)")
    p.add_argument("--ecloss-impl", choices=IMPLS, default=None)
    p.add_argument("--width", type=float, default=None)
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument("--bn", type=_bool, default=None, metavar="true|false", dest="batch_norm")
    p.add_argument("--embedding-dim", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="global batch (split over ranks)")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--amp", action="store_true", default=None)
    p.add_argument("--no-flip", action="store_false", dest="flip", default=None)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--resume", action="store_true", default=None,
                   help="continue runs/<name>/checkpoint.pt (same options; more --epochs "
                        "rebuild the schedule: docs/training.md)")
    p.add_argument("--overwrite", action="store_true", default=None,
                   help="replace a model registered under the same name")
    p.add_argument("--name", default=None, help="model name (default vgg19-ecloss etc.)")
    p.add_argument("--out", default=None, help="run folder root (default runs/)")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument("--no-register", action="store_false", dest="register", default=None)
    p.add_argument("--no-eval", action="store_false", dest="evaluate", default=None)
    p.add_argument("--no-progress", action="store_false", dest="progress", default=None)
    return p


def option_values(args: argparse.Namespace,
                  fields: Optional[Collection[str]] = None) -> dict:
    """The settings of a run from parsed options: the fields of the --config JSON file, then the
    options given on the command line (they win). ``fields``: the names taken (TrainConfig's by
    default); an unknown field of the file is an error."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)} if fields is None else set(fields)
    values = {}
    if args.config:
        where = f"error: --config {args.config}"
        try:
            with open(args.config) as f:
                loaded = json.load(f)
        except OSError as e:
            raise SystemExit(f"{where}: cannot read it ({e.strerror})")
        except ValueError as e:
            raise SystemExit(f"{where}: not valid JSON ({e})")
        if not isinstance(loaded, dict):
            raise SystemExit(f"{where}: expected a JSON object of TrainConfig fields")
        unknown = set(loaded) - fields
        if unknown:
            raise SystemExit(f"{where}: unknown fields {sorted(unknown)}")
        values.update(loaded)
    for key, value in vars(args).items():
        if key in fields and value is not None:
            values[key] = value
    if "loss" not in values and "-" in args.arch:  # "vgg19-softmax" names the loss too
        values["loss"] = args.arch.split("-", 1)[1]
    return values


def config_from_args(argv=None) -> TrainConfig:
    return TrainConfig(**option_values(build_parser().parse_args(argv)))

def run(cfg: TrainConfig, hook: Optional[TrainingHook] = None, prog: str = "zoo.train") -> int:
    """Train; 0, or 2 with one line on stderr for a bad setting or a run that had to stop."""
    try:
        train(cfg, hook)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    return 0


def main(argv=None) -> int:
    return run(config_from_args(argv))


if __name__ == "__main__":
    sys.exit(main())
