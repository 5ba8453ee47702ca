"""What a training run is told: ``TrainConfig``, its resolution against the presets, and the
registry config of the model it trains.

``resolve_config`` fills the options left unset from a preset (zoo.config.PRESETS: "gpu" on a
GPU, "cpu" otherwise, or "paper") and checks them; ``model_config`` turns a resolved TrainConfig
into the registry config (zoo.config.default_config) the network is built from, so a value the
registry refuses fails before training; ``build_train_dataset`` opens the training set it names.
zoo.engine trains from these. Experiments add their settings through a training hook
(zoo.training_hook), not through fields here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from . import templates as _templates
from .config import LOSSES, PRESETS, default_config
from .models.vgg import VGG_CONFIGS
from .runs import RUNS_ROOT

__all__ = ["TrainConfig", "resolve_config", "model_config", "build_train_dataset",
           "settings_line"]


@dataclass
class TrainConfig:
    arch: str = "vgg19"                 # vgg13 | vgg16 | vgg19
    loss: str = "ecloss"                # softmax | ecloss (zoo.config.LOSSES)
    head: str = "softmax"               # softmax | cosface | arcface (zoo.config.HEAD_NAMES)
    data: str = "orl"                   # orl | identity folder | .rec file
    val: List[str] = field(default_factory=lambda: ["orl"])  # orl | .bin files
    preset: Optional[str] = None        # None: "gpu" on a GPU, "cpu" otherwise
    # architecture (None: from the preset)
    width: Optional[float] = None
    input_size: Optional[int] = None
    batch_norm: Optional[bool] = None
    embedding_dim: int = 512
    embedding_bn: bool = True
    dropout: float = 0.0
    padding: Optional[str] = None       # zeros | reflect | replicate (conv padding)
    # ECLoss (None: from the preset; the paper preset has the paper's values)
    templates: str = "400"              # "400", "full" or any count
    tau: Optional[float] = None
    radius: Optional[float] = None      # None: 4 at 14x14, scaled with the map size
    marginal: str = "uniform"
    content_free: Optional[float] = None  # weight of content_free_term (our extension), 0 = off
    alpha: float = 1.0
    beta: Optional[float] = None
    beta_mode: Optional[str] = None
    beta_ratio: float = 0.1
    beta_rate: float = 0.1
    ecloss_impl: str = "auto"
    # optimisation (None: from the preset)
    epochs: Optional[int] = None
    batch_size: Optional[int] = None    # global batch, split over the ranks
    lr: Optional[float] = None
    momentum: float = 0.9
    weight_decay: float = 5e-4
    flip: bool = True
    translate: Optional[float] = None   # random-shift augmentation (face_transform), 0 = off
    amp: bool = False
    workers: int = 0
    seed: int = 0
    max_steps: Optional[int] = None     # stop early (tests, smoke runs)
    # bookkeeping
    name: Optional[str] = None
    out: str = RUNS_ROOT
    resume: bool = False
    register: bool = True
    overwrite: bool = False             # register over an existing name (docs/training.md)
    evaluate: bool = True
    device: Optional[str] = None
    log_every: int = 10
    progress: bool = True
    orl_num_train: int = 30
    orl_num_val: int = 0                # ORL validation identities (taken after the training ones)
    orl_split_seed: int = 0
    orl_fold: int = 0                   # test fold (zoo.data.orl.orl_identity_splits)

    @property
    def depth(self) -> int:
        arch = self.arch.lower().split("-")[0]
        if not arch.startswith("vgg") or not arch[3:].isdigit() or int(arch[3:]) not in VGG_CONFIGS:
            raise ValueError(f"unknown architecture {self.arch!r}: use "
                             f"{', '.join(f'vgg{d}' for d in sorted(VGG_CONFIGS))}")
        return int(arch[3:])


def resolve_config(cfg: TrainConfig, cuda: bool) -> TrainConfig:
    """Fill unset options from the preset (gpu on a GPU, cpu otherwise) and validate."""
    cfg = dataclasses.replace(cfg)
    if cfg.preset is None:
        cfg.preset = "gpu" if cuda else "cpu"
    if cfg.preset not in PRESETS:
        raise ValueError(f"unknown preset {cfg.preset!r}; choose one of {sorted(PRESETS)}")
    if cfg.loss == "softmax" and cfg.content_free:
        raise ValueError("--content-free is a term of ECLoss: it needs --loss ecloss")
    for key, value in PRESETS[cfg.preset].items():
        if getattr(cfg, key) is None:
            setattr(cfg, key, value)
    _ = cfg.depth
    if cfg.loss not in LOSSES:
        raise ValueError(f"--loss must be one of {LOSSES}, got {cfg.loss!r}")
    if cfg.name is None:
        cfg.name = f"vgg{cfg.depth}-{cfg.loss}"
    if cfg.epochs < 1 or cfg.batch_size < 1 or not cfg.lr > 0:
        raise ValueError("epochs and batch size must be >= 1 and lr > 0")
    if not cfg.content_free >= 0 or not 0 <= cfg.translate < 1:
        raise ValueError("content_free must be >= 0 and translate in [0, 1)")
    if cfg.loss != "ecloss":
        cfg.content_free = 0.0  # a softmax run takes no ECLoss term from its preset
    return cfg


def settings_line(cfg: TrainConfig, hook: Optional[dict] = None) -> str:
    """A resolved config in one line, as a run prints it first (``hook``: the description of the
    training hook, zoo.training_hook)."""
    ecl = (f", tau {cfg.tau}, beta {cfg.beta} {cfg.beta_mode}, {cfg.templates} templates, "
           f"{cfg.marginal} marginal, content-free weight {cfg.content_free}"
           if cfg.loss == "ecloss" else "")
    return (f"using the {cfg.preset} preset (vgg{cfg.depth}, width {cfg.width}, "
            f"{cfg.input_size} px, bn={cfg.batch_norm}, {cfg.padding} padding, translate "
            f"{cfg.translate}, {cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr}, "
            f"loss {cfg.loss}, head {cfg.head}{ecl})" + (f"; hook {hook}" if hook else ""))


def model_config(cfg: TrainConfig, num_classes: int, metrics: Optional[dict] = None,
                 hook: Optional[dict] = None) -> dict:
    """The registry config of the model a (resolved) TrainConfig trains: zoo.config validates it
    (bad values raise ValueError here, before any training) and fills the derived fields.
    ``hook``: the description of the training hook (zoo.training_hook), as training.hook."""
    feature_size = cfg.input_size // 16
    return default_config(
        f"vgg{cfg.depth}", name=cfg.name, loss=cfg.loss, head=cfg.head,
        arch={"depth": cfg.depth, "batch_norm": cfg.batch_norm, "width": cfg.width,
              "input_size": cfg.input_size, "embedding_dim": cfg.embedding_dim,
              "dropout": cfg.dropout, "embedding_bn": cfg.embedding_bn, "padding": cfg.padding},
        ecloss={"num_templates": cfg.templates if cfg.templates == "full" else int(cfg.templates),
                "tau": cfg.tau, "radius": cfg.radius if cfg.radius is not None
                else _templates.default_radius_for(feature_size),
                "marginal": cfg.marginal, "alpha": cfg.alpha, "beta": cfg.beta,
                "beta_mode": cfg.beta_mode, "content_free": cfg.content_free},
        training={"data": cfg.data, "num_classes": num_classes, "epochs": cfg.epochs,
                  "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed,
                  "preset": cfg.preset, "translate": cfg.translate,
                  "orl_num_train": cfg.orl_num_train, "orl_num_val": cfg.orl_num_val,
                  "orl_split_seed": cfg.orl_split_seed, "orl_fold": cfg.orl_fold,
                  **({"hook": hook} if hook else {})},
        metrics=metrics or {})


def build_train_dataset(cfg: TrainConfig):
    """The training set a resolved TrainConfig names: ORL's training identities, a .rec file or
    an identity folder, with the training transform (flip, translate)."""
    from .data.transforms import face_transform
    transform = face_transform(cfg.input_size, train=cfg.flip, translate=cfg.translate)
    if cfg.data == "orl":
        from .data.orl import ORLFaces
        return ORLFaces("train", transform=transform, num_train=cfg.orl_num_train,
                        seed=cfg.orl_split_seed, num_val=cfg.orl_num_val, fold=cfg.orl_fold)
    path = Path(cfg.data)
    if path.suffix == ".rec":
        from .data.recordio import RecordIODataset
        return RecordIODataset(path, transform=transform)
    if path.is_dir():
        from .data.folders import IdentityFolder
        return IdentityFolder(path, transform=transform)
    raise FileNotFoundError(f"--data {cfg.data}: not 'orl', an identity folder or a .rec file")
