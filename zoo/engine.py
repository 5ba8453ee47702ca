"""Training engine: one CPU, one GPU, or many GPUs/processes through torchrun (DDP).

``train(TrainConfig(...))`` is the library entry point; ``python -m zoo.train`` is a thin CLI over
it. One code path serves every case: a DistributedSampler (with one replica when there is no
process group) fixes the global batch composition by (seed, epoch) alone, so a 1-process run and
a W-process run with the same global batch see the same images per step, and a resumed run sees
the same images as an uninterrupted one.

Checkpoints are written atomically (temp file, fsync, rename) at the end of every epoch and hold
everything the next epoch depends on: model, head, optimizer, scheduler, beta policy, AMP scaler
and RNG state.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from . import templates as _templates
from ._io import atomic_write_bytes, sweep_stale_tmp
from .ecloss import (BetaPolicy, ECLoss, content_free_term, mutual_information_across_ranks,
                     total_loss)
from .heads import create_head
from .models import VGGFace

__all__ = ["TrainConfig", "PRESETS", "train", "resolve_config", "save_checkpoint",
           "load_checkpoint", "atomic_write_bytes"]

# Presets fill the options the user did not give; a run with no --preset gets "cpu" without a
# GPU and "gpu" with one. Both train ECLoss with EXPLAINABLE_ECLOSS, the setting chosen on
# validation identities (docs/results.md): tau = 1 and a fixed beta = 1 (the paper's tau = 1e-3
# with beta from 1e-5 leaves the MI term inert at this scale), plus the content-free term (our
# extension), without which a third to a half of the channels fire at a fixed cell whatever the
# input. "cpu" was chosen by measurement on the 2-core development machine (docs/training.md):
# VGG+BN at width 1/4 and 112 px (7x7 target maps), 30 epochs of the ORL training images.
# "gpu" is the paper's network and schedule (224 px, full width) with that ECLoss setting.
# "paper" is the paper's setting, literally.
EXPLAINABLE_ECLOSS = dict(tau=1.0, beta=1.0, beta_mode="fixed", padding="zeros",
                          template_peaks="all", content_free=1.0, translate=0.0)
PAPER_GEOMETRY = dict(width=1.0, input_size=224, batch_norm=False, epochs=30, batch_size=64,
                      lr=0.03)
PRESETS: Dict[str, Dict[str, object]] = {
    "cpu": dict(width=0.25, input_size=112, batch_norm=True, epochs=30, batch_size=16, lr=0.05,
                **EXPLAINABLE_ECLOSS),
    "gpu": dict(**PAPER_GEOMETRY, **EXPLAINABLE_ECLOSS),
    "paper": dict(**PAPER_GEOMETRY, tau=_templates.DEFAULT_TAU, beta=1e-5, beta_mode="auto",
                  padding="zeros", template_peaks="all", content_free=0.0, translate=0.0),
}


@dataclass
class TrainConfig:
    arch: str = "vgg19"                 # vgg13 | vgg16 | vgg19
    loss: str = "ecloss"                # softmax | ecloss
    head: str = "softmax"               # softmax | cosface | arcface
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
    map_norm: str = "none"              # "max": our extension (docs/paper-notes.md)
    template_peaks: Optional[str] = None  # all | interior (our extension)
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
    out: str = "runs"
    resume: bool = False
    register: bool = True
    evaluate: bool = True
    device: Optional[str] = None
    log_every: int = 10
    progress: bool = True
    orl_num_train: int = 30
    orl_num_val: int = 0                # ORL validation identities (taken after the training ones)
    orl_split_seed: int = 0

    @property
    def depth(self) -> int:
        arch = self.arch.lower().split("-")[0]
        if not arch.startswith("vgg") or not arch[3:].isdigit() or int(arch[3:]) not in (13, 16, 19):
            raise ValueError(f"unknown architecture {self.arch!r}: use vgg13, vgg16 or vgg19")
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
    if cfg.loss not in ("softmax", "ecloss"):
        raise ValueError(f"--loss must be softmax or ecloss, got {cfg.loss!r}")
    if cfg.name is None:
        cfg.name = f"vgg{cfg.depth}-{cfg.loss}"
    if cfg.epochs < 1 or cfg.batch_size < 1 or not cfg.lr > 0:
        raise ValueError("epochs and batch size must be >= 1 and lr > 0")
    if not cfg.content_free >= 0 or not 0 <= cfg.translate < 1:
        raise ValueError("content_free must be >= 0 and translate in [0, 1)")
    if cfg.loss != "ecloss":
        cfg.content_free = 0.0  # a softmax run takes no ECLoss term from its preset
    return cfg


# Content-free images added to each batch when content_free > 0: a quarter of the batch.
CONTENT_FREE_SHARE = 0.25


# --------------------------------------------------------------------------------------------
# atomic checkpoints
# --------------------------------------------------------------------------------------------

def save_checkpoint(path: Path, state: dict) -> None:
    """torch.save ``state`` to ``path`` atomically (zoo._io.atomic_write_bytes), after deleting
    the temp files of writers that were killed mid-write (e.g. a run killed and resumed)."""
    import io
    buf = io.BytesIO()
    torch.save(state, buf)
    sweep_stale_tmp(Path(path).parent)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or foreign file: say which
        raise RuntimeError(f"{path}: cannot load checkpoint ({type(e).__name__}: {e})") from e


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------

def build_train_dataset(cfg: TrainConfig):
    from .data.transforms import face_transform
    transform = face_transform(cfg.input_size, train=cfg.flip, translate=cfg.translate)
    if cfg.data == "orl":
        from .data.orl import ORLFaces
        return ORLFaces("train", transform=transform, num_train=cfg.orl_num_train,
                        seed=cfg.orl_split_seed, num_val=cfg.orl_num_val)
    path = Path(cfg.data)
    if path.suffix == ".rec":
        from .data.recordio import RecordIODataset
        return RecordIODataset(path, transform=transform)
    if path.is_dir():
        from .data.folders import IdentityFolder
        return IdentityFolder(path, transform=transform)
    raise FileNotFoundError(f"--data {cfg.data}: not 'orl', an identity folder or a .rec file")


def evaluate_verification(model: nn.Module, cfg: TrainConfig, device) -> Dict[str, dict]:
    """Verification on each --val set: 'orl' (held-out identities) or insightface .bin files."""
    from .evaluate import verification_on
    return {("orl" if val == "orl" else Path(val).stem):
            verification_on(model, val, cfg.input_size, device, orl_num_train=cfg.orl_num_train,
                            orl_split_seed=cfg.orl_split_seed, orl_num_val=cfg.orl_num_val)
            for val in cfg.val}


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------

def _distributed_env():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local_rank


class _Printer:
    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __call__(self, *args):
        if self.enabled:
            print(*args, flush=True)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
            "python_pos": random.getstate()[2]}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(int(v) for v in state["python"]), state["python_pos"]))


def train(cfg: TrainConfig) -> dict:
    """Train one model; returns a summary dict (run dir, metrics, registered path)."""
    world, rank, local_rank = _distributed_env()
    use_cuda = torch.cuda.is_available() and cfg.device != "cpu"
    if cfg.device and cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but no CUDA device is available")
    cfg = resolve_config(cfg, use_cuda)
    distributed = world > 1
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    log = _Printer(rank == 0)
    if cfg.batch_size % world:
        raise ValueError(f"global batch {cfg.batch_size} is not divisible by {world} ranks")
    local_batch = cfg.batch_size // world
    if rank == 0:
        where = f"{world} x {'GPU' if use_cuda else 'CPU'} processes" if distributed else \
            ("GPU" if use_cuda else "no GPU")
        ecl = (f", tau {cfg.tau}, beta {cfg.beta} {cfg.beta_mode}, {cfg.templates} templates "
               f"({cfg.template_peaks} peaks), {cfg.marginal} marginal, content-free weight "
               f"{cfg.content_free}" if cfg.loss == "ecloss" else "")
        log(f"{where}: using the {cfg.preset} preset (vgg{cfg.depth}, width {cfg.width}, "
            f"{cfg.input_size} px, bn={cfg.batch_norm}, {cfg.padding} padding, translate "
            f"{cfg.translate}, {cfg.epochs} epochs, batch {cfg.batch_size}, "
            f"lr {cfg.lr}, loss {cfg.loss}, head {cfg.head}{ecl})")

    _seed_everything(cfg.seed)
    dataset = build_train_dataset(cfg)
    num_classes = dataset.num_classes
    model = VGGFace(cfg.depth, batch_norm=cfg.batch_norm, width=cfg.width,
                    input_size=cfg.input_size, embedding_dim=cfg.embedding_dim,
                    dropout=cfg.dropout, embedding_bn=cfg.embedding_bn,
                    padding=cfg.padding).to(device)
    head = create_head(cfg.head, cfg.embedding_dim, num_classes).to(device)
    ecloss = None
    if cfg.loss == "ecloss":
        m = "full" if cfg.templates == "full" else int(cfg.templates)
        ecloss = ECLoss(model.feature_size, num_templates=m, tau=cfg.tau, radius=cfg.radius,
                        marginal=cfg.marginal, impl=cfg.ecloss_impl, map_norm=cfg.map_norm,
                        template_peaks=cfg.template_peaks)
    beta_policy = BetaPolicy(beta=cfg.beta, mode=cfg.beta_mode, ratio=cfg.beta_ratio,
                             rate=cfg.beta_rate, beta_min=min(cfg.beta, 1e-5) if cfg.beta > 0 else 1e-5)

    class _Net(nn.Module):  # one module so DDP syncs model and head together
        def __init__(self):
            super().__init__()
            self.model, self.head = model, head

        def forward(self, x, y):
            # x may hold content-free images after the len(y) faces: no labels, no CE for them
            emb, fmap = self.model.forward_with_features(x)
            return self.head(emb[:len(y)], y), fmap

    net = _Net()
    if distributed and use_cuda and cfg.batch_norm:
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)  # BN over the global batch (GPU only)
    ddp = nn.parallel.DistributedDataParallel(net, device_ids=[local_rank] if use_cuda else None) \
        if distributed else net
    params_decay = [p for n, p in net.named_parameters() if p.ndim > 1]
    params_no_decay = [p for n, p in net.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD([{"params": params_decay, "weight_decay": cfg.weight_decay},
                                 {"params": params_no_decay, "weight_decay": 0.0}],
                                lr=cfg.lr, momentum=cfg.momentum)
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=world, rank=rank,
                                                  shuffle=True, seed=cfg.seed, drop_last=True)
    n_content_free = int(round(CONTENT_FREE_SHARE * local_batch)) if cfg.content_free > 0 else 0
    if n_content_free:
        from .data.content_free import random_content_free_batch
    steps_per_epoch = len(sampler) // local_batch
    if steps_per_epoch < 1:
        raise ValueError(f"{len(dataset)} training images give no full batch of {cfg.batch_size}")
    # max_steps stops the run early (smoke runs, tests) without changing the lr schedule, so a
    # run stopped at an epoch boundary and resumed equals an uninterrupted one.
    schedule_steps = steps_per_epoch * cfg.epochs
    total_steps = schedule_steps if cfg.max_steps is None else min(schedule_steps, cfg.max_steps)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr,
                                                    total_steps=max(schedule_steps, 2),
                                                    pct_start=0.15, anneal_strategy="cos")
    amp_dtype = torch.float16 if use_cuda else torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and use_cuda)

    run_dir = Path(cfg.out) / cfg.name
    ckpt_path = run_dir / "checkpoint.pt"
    start_epoch, step = 0, 0
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
        net.load_state_dict(state["net"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        beta_policy.load_state_dict(state["beta_policy"])
        _set_rng_state(state["rng"])
        start_epoch, step = state["epoch"], state["step"]
        log(f"resumed {ckpt_path} at epoch {start_epoch}, step {step}")
    elif cfg.resume:
        log(f"--resume: no checkpoint at {ckpt_path}, starting from scratch")

    csv_path = run_dir / "log.csv"
    fields = ["epoch", "step", "loss", "ce", "mi", "beta", "acc", "lr", "images_per_s",
              "content_free"]
    if rank == 0 and not (cfg.resume and csv_path.exists() and start_epoch > 0):
        with open(csv_path, "w", newline="") as f:
            csv.writer(f).writerow(fields)
    if rank == 0:
        with open(run_dir / "train_config.json", "w") as f:
            json.dump(dataclasses.asdict(cfg), f, indent=2)

    bar = None
    if rank == 0 and cfg.progress:
        from tqdm import tqdm
        bar = tqdm(total=total_steps, initial=step, desc=f"train {cfg.name}", unit="step",
                   dynamic_ncols=True, file=sys.stdout)
    epoch = start_epoch
    epoch_rows = []
    t_start = time.time()
    while epoch < cfg.epochs and step < total_steps:
        sampler.set_epoch(epoch)
        # The loader's own RNG (augmentation in workers) is a function of (seed, epoch) only.
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
        loader = torch.utils.data.DataLoader(dataset, batch_size=local_batch, sampler=sampler,
                                             num_workers=cfg.workers, drop_last=True,
                                             generator=gen, pin_memory=use_cuda,
                                             persistent_workers=False)
        ddp.train()
        sums = {"loss": 0.0, "ce": 0.0, "mi": 0.0, "correct": 0, "seen": 0}
        t_epoch = time.time()
        # In-process randomness (flips with workers=0, dropout) is also a function of (seed, epoch).
        torch.manual_seed(cfg.seed * 7_919 + epoch)
        completed = True
        for images, labels in loader:
            if step >= total_steps:
                completed = False  # stopped inside the epoch: no checkpoint claims it done
                break
            t0 = time.time()
            n_faces = len(labels)
            if n_content_free:
                # a function of (seed, rank, step) only: resumed runs draw the same images
                g = torch.Generator().manual_seed(cfg.seed * 1_000_033 + rank * 7_777_777 + step)
                images = torch.cat([images, random_content_free_batch(
                    n_content_free, cfg.input_size, g)])
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=cfg.amp):
                logits, fmap = ddp(images, labels)
            ce = F.cross_entropy(logits.float(), labels)
            beta = beta_policy.beta
            cf_value = 0.0
            if ecloss is not None:
                templates = ecloss.templates_for(device, torch.float32)
                mi_term, mi_value = mutual_information_across_ranks(
                    ecloss.prepare(fmap[:n_faces]), templates, cfg.marginal, cfg.ecloss_impl)
                loss = total_loss(ce, mi_term, cfg.alpha, beta)
                if n_content_free:
                    cf_term = content_free_term(ecloss.prepare(fmap[n_faces:]), templates)
                    loss = loss - cfg.content_free * cf_term
                    cf_value = float(cf_term.detach())
            else:
                mi_value = torch.zeros((), device=device)
                loss = cfg.alpha * ce
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            stats = torch.tensor([ce.item(), float((logits.argmax(1) == labels).sum()),
                                  float(len(labels))], dtype=torch.float64)
            if distributed:
                stats = stats.to(device)
                dist.all_reduce(stats)
                stats = stats.cpu()
                stats[0] /= world
            ce_v, mi_v = float(stats[0]), float(mi_value)
            if ecloss is not None:
                beta_policy.update(ce_v, mi_v, cfg.alpha)
            step += 1
            loss_v = cfg.alpha * ce_v - beta * mi_v
            ips = float(stats[2]) / max(time.time() - t0, 1e-9)
            sums["loss"] += loss_v
            sums["ce"] += ce_v
            sums["mi"] += mi_v
            sums["correct"] += int(stats[1])
            sums["seen"] += int(stats[2])
            if rank == 0:
                row = [epoch, step, loss_v, ce_v, mi_v, beta, float(stats[1]) / float(stats[2]),
                       scheduler.get_last_lr()[0], ips, cf_value]
                with open(csv_path, "a", newline="") as f:
                    csv.writer(f).writerow(row)
                if bar is not None:
                    bar.update(1)
                    if step % cfg.log_every == 0:
                        bar.set_postfix(ce=f"{ce_v:.3f}", mi=f"{mi_v:.3g}", beta=f"{beta:.2g}")
        if not completed:
            break
        n_batches = max(1, sums["seen"] // cfg.batch_size)
        epoch += 1
        if rank == 0:
            summary = {"epoch": epoch, "loss": sums["loss"] / n_batches,
                       "ce": sums["ce"] / n_batches, "mi": sums["mi"] / n_batches,
                       "acc": sums["correct"] / max(1, sums["seen"]), "beta": beta_policy.beta,
                       "images_per_s": sums["seen"] / max(time.time() - t_epoch, 1e-9)}
            epoch_rows.append(summary)
            msg = (f"epoch {epoch}/{cfg.epochs}: loss {summary['loss']:.4f} ce {summary['ce']:.4f} "
                   f"mi {summary['mi']:.4g} acc {summary['acc']:.3f} beta {summary['beta']:.3g} "
                   f"{summary['images_per_s']:.0f} img/s")
            (bar.write(msg) if bar is not None else log(msg))
            save_checkpoint(ckpt_path, {
                "net": net.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "beta_policy": beta_policy.state_dict(), "rng": _rng_state(),
                "epoch": epoch, "step": step, "config": json.dumps(dataclasses.asdict(cfg))})
        if distributed:
            dist.barrier()
    if bar is not None:
        bar.close()
    elapsed = time.time() - t_start
    result = {"name": cfg.name, "run_dir": str(run_dir), "steps": step, "epochs": epoch,
              "seconds": elapsed, "metrics": {}}
    if rank == 0:
        if cfg.evaluate and cfg.val:
            result["metrics"] = evaluate_verification(model, cfg, device)
            for val_name, rep in result["metrics"].items():
                log(f"held-out verification [{val_name}]: accuracy {rep['accuracy']:.4f} "
                    f"+- {rep['std']:.4f}, AUC {rep['auc']:.4f} ({rep['num_pairs']} pairs)")
        _plot_curves(csv_path, run_dir / "curves.png")
        if cfg.register:
            result["registered"] = str(_register(model, cfg, dataset, result["metrics"]))
            log(f"registered {cfg.name} at {result['registered']}")
        with open(run_dir / "summary.json", "w") as f:
            json.dump({**result, "epochs_log": epoch_rows}, f, indent=2)
    if distributed:
        dist.barrier()
    return result


def model_config(cfg: TrainConfig, model: VGGFace, num_classes: int, metrics: dict) -> dict:
    """The registry config of a trained model (zoo.registry fills the derived fields)."""
    from . import registry
    return registry.default_config(
        f"vgg{cfg.depth}", name=cfg.name, loss=cfg.loss, head=cfg.head,
        arch={"depth": cfg.depth, "batch_norm": cfg.batch_norm, "width": cfg.width,
              "input_size": cfg.input_size, "embedding_dim": cfg.embedding_dim,
              "dropout": cfg.dropout, "embedding_bn": cfg.embedding_bn, "padding": cfg.padding},
        ecloss={"num_templates": cfg.templates if cfg.templates == "full" else int(cfg.templates),
                "tau": cfg.tau, "radius": cfg.radius if cfg.radius is not None
                else _templates.default_radius_for(model.feature_size),
                "marginal": cfg.marginal, "alpha": cfg.alpha, "beta": cfg.beta,
                "beta_mode": cfg.beta_mode, "map_norm": cfg.map_norm,
                "template_peaks": cfg.template_peaks, "content_free": cfg.content_free},
        training={"data": cfg.data, "num_classes": num_classes, "epochs": cfg.epochs,
                  "batch_size": cfg.batch_size, "lr": cfg.lr, "seed": cfg.seed,
                  "preset": cfg.preset, "translate": cfg.translate,
                  "orl_num_train": cfg.orl_num_train, "orl_num_val": cfg.orl_num_val,
                  "orl_split_seed": cfg.orl_split_seed},
        metrics=metrics)


def _register(model: VGGFace, cfg: TrainConfig, dataset, metrics: dict) -> Path:
    from . import registry
    return registry.save(model, model_config(cfg, model, dataset.num_classes, metrics),
                         name=cfg.name)


def _plot_curves(csv_path: Path, png_path: Path) -> None:
    """Loss parts, beta and accuracy against steps, from the run's log.csv."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    steps = [int(r["step"]) for r in rows]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
    for ax, key, title in zip(axes, ["ce", "mi", "beta", "acc"],
                              ["cross-entropy", "mutual information (Eq. 5)", "beta", "train acc"]):
        ax.plot(steps, [float(r[key]) for r in rows], lw=1)
        ax.set_title(title)
        ax.set_xlabel("step")
        if key == "beta":
            ax.set_yscale("log")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
