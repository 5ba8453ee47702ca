"""Training engine: one CPU, one GPU, or many GPUs/processes through torchrun (DDP).

``train(TrainConfig(...))`` is the library entry point; ``python -m zoo.train`` is a thin CLI over
it. One code path serves every case: a DistributedSampler (with one replica when there is no
process group) fixes the global batch composition by (seed, epoch) alone, so a 1-process run and
a W-process run with the same global batch see the same images per step, and a resumed run sees
the same images as an uninterrupted one.

Checkpoints (zoo.checkpoint), written atomically after every epoch, hold everything the next
epoch depends on (model, head, optimizer, scheduler, beta policy, AMP scaler, RNG state).
As in timm's train.py, ``train`` is three steps: ``_setup`` (the checks of zoo.run_checks,
process group, data, the network built from its validated registry config, optimizer, resume),
``_train_one_epoch`` (one ``_train_step`` per batch) and ``_finish`` (validation, curves,
registration). TrainConfig lives in zoo.train_config, the run folder in zoo.runs, the non-finite
loss rules in zoo.finite, the content-free images of a step in zoo.data.content_free.

Experiments plug in through one object, ``train(cfg, hook=...)``: a zoo.training_hook.TrainingHook
whose methods the engine calls at fixed points (the training set, the content-free images, the
templates and maps of ECLoss, an extra loss term) and whose description the run records.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from . import builder, hub, runs
from .checkpoint import rng_state, save_checkpoint, set_rng_state
from .data.content_free import content_free_count, step_content_free_batch, step_generator
from .ecloss import (
    BetaPolicy,
    ECLoss,
    content_free_penalty,
    content_free_term,
    mutual_information_across_ranks,
    total_loss,
)
from .finite import NonFiniteGuard, skip_step
from .heads import create_head
from .models.vgg import VGGFace
from .run_checks import check_inputs, read_resume, stretch_schedule
from .templates import DEFAULT_BETA
from .train_config import (
    TrainConfig,
    build_train_dataset,
    model_config,
    resolve_config,
    settings_line,
)
from .training_hook import TrainingHook
from .validation import validate

__all__ = ["train"]

LOG_FIELDS = ["epoch", "step", "loss", "ce", "mi", "beta", "acc", "lr", "images_per_s",
              "content_free"]


# --------------------------------------------------------------------------------------------
# setup
# --------------------------------------------------------------------------------------------

class _Net(nn.Module):
    """The embedding network and the classification head as one module, so that DDP syncs them
    together."""

    def __init__(self, model: VGGFace, head: nn.Module):
        super().__init__()
        self.model, self.head = model, head

    def forward(self, x, y):
        # x may hold content-free images after the len(y) faces: no labels, no CE for them
        emb, fmap = self.model.forward_with_features(x)
        return self.head(emb[:len(y)], y), fmap


@dataclass
class _Run:
    """Everything one training run is made of: built by _setup, advanced by _train_one_epoch."""
    cfg: TrainConfig
    world: int
    rank: int
    device: torch.device
    log: Callable[..., None]            # print on rank 0, nothing on the others
    dataset: object
    zoo_config: dict                    # the registry config the network was built from
    model: VGGFace
    net: _Net
    ddp: nn.Module                      # net, or DistributedDataParallel(net)
    ecloss: Optional[ECLoss]
    hook: TrainingHook
    beta_policy: BetaPolicy
    sampler: torch.utils.data.DistributedSampler
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    guard: NonFiniteGuard               # the non-finite loss and weight checks (zoo.finite)
    local_batch: int
    n_content_free: int                 # content-free images per rank and step
    total_steps: int
    run_dir: Path
    epoch: int = 0
    step: int = 0
    bar: object = None                  # tqdm progress bar (rank 0 with progress)
    epoch_rows: List[dict] = field(default_factory=list)

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / runs.CHECKPOINT_FILE

    csv_path = property(lambda self: self.run_dir / runs.LOG_FILE)


def _init_process(cfg: TrainConfig):
    """(resolved cfg, world, rank, local_rank, device): presets filled, process group joined
    (torchrun's environment says the world size and this process's ranks)."""
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and cfg.device != "cpu"
    if cfg.device and cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda requested but no CUDA device is available")
    cfg = resolve_config(cfg, use_cuda)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    return cfg, world, rank, local_rank, device


def _build_losses(cfg: TrainConfig, feature_size: int):
    """(ECLoss or None, beta policy) of a resolved config."""
    ecloss = None
    if cfg.loss == "ecloss":
        m = "full" if cfg.templates == "full" else int(cfg.templates)
        ecloss = ECLoss(feature_size, num_templates=m, tau=cfg.tau, radius=cfg.radius,
                        marginal=cfg.marginal, impl=cfg.ecloss_impl)
    beta_min = min(cfg.beta, DEFAULT_BETA) if cfg.beta > 0 else DEFAULT_BETA
    beta_policy = BetaPolicy(beta=cfg.beta, mode=cfg.beta_mode, ratio=cfg.beta_ratio,
                             rate=cfg.beta_rate, beta_min=beta_min)
    return ecloss, beta_policy


def _build_optimizer(cfg: TrainConfig, net: nn.Module) -> torch.optim.Optimizer:
    params_decay = [p for n, p in net.named_parameters() if p.ndim > 1]
    params_no_decay = [p for n, p in net.named_parameters() if p.ndim <= 1]
    return torch.optim.SGD([{"params": params_decay, "weight_decay": cfg.weight_decay},
                            {"params": params_no_decay, "weight_decay": 0.0}],
                           lr=cfg.lr, momentum=cfg.momentum)


def _setup(cfg: TrainConfig, hook: TrainingHook) -> _Run:
    """Everything before the first step, in an order that fixes the RNG stream: seed, data, the
    network (from its validated registry config), head, losses, DDP, optimizer, schedule."""
    cfg, world, rank, local_rank, device = _init_process(cfg)
    use_cuda = device.type == "cuda"
    log = functools.partial(print, flush=True) if rank == 0 else (lambda *args: None)
    if cfg.batch_size % world:
        raise ValueError(f"global batch {cfg.batch_size} is not divisible by {world} ranks")
    local_batch = cfg.batch_size // world
    where = f"{world} x {'GPU' if use_cuda else 'CPU'} processes" if world > 1 else \
        ("GPU" if use_cuda else "no GPU")
    log(f"{where}: {settings_line(cfg, hook.describe())}")
    check_inputs(cfg, log)  # inputs, outputs, the registered name: before anything is built
    run_dir = runs.run_dir(cfg.name, cfg.out)
    resumed = read_resume(cfg, run_dir / runs.CHECKPOINT_FILE, hook.describe(), log)

    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    dataset = hook.wrap_dataset(build_train_dataset(cfg), cfg)
    zoo_config = model_config(cfg, dataset.num_classes, hook=hook.describe())  # checked now
    model = builder.build(zoo_config).to(device)
    head = create_head(cfg.head, cfg.embedding_dim, dataset.num_classes).to(device)
    ecloss, beta_policy = _build_losses(cfg, model.feature_size)
    net = _Net(model, head)
    if world > 1 and use_cuda and cfg.batch_norm:
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)  # BN over the global batch (GPU only)
    ddp = nn.parallel.DistributedDataParallel(net, device_ids=[local_rank] if use_cuda else None) \
        if world > 1 else net
    optimizer = _build_optimizer(cfg, net)
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=world, rank=rank,
                                                  shuffle=True, seed=cfg.seed, drop_last=True)
    n_content_free = content_free_count(local_batch, cfg.content_free)
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
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and use_cuda)
    guard = NonFiniteGuard(scaler, run_dir / runs.CHECKPOINT_FILE, log, world > 1)
    run = _Run(cfg=cfg, world=world, rank=rank, device=device, log=log, dataset=dataset,
               zoo_config=zoo_config, model=model, net=net, ddp=ddp, ecloss=ecloss, hook=hook,
               beta_policy=beta_policy, sampler=sampler, optimizer=optimizer,
               scheduler=scheduler, scaler=scaler, guard=guard, local_batch=local_batch,
               n_content_free=n_content_free, total_steps=total_steps, run_dir=run_dir)
    if rank == 0:
        run.run_dir.mkdir(parents=True, exist_ok=True)
    if resumed is not None:
        _resume(run, resumed)
    _open_logs(run)
    return run


def _resume(run: _Run, state: dict) -> None:
    """Continue from the checkpoint state zoo.run_checks.read_resume compared with the options;
    more --epochs stretch the one-cycle schedule (stretch_schedule)."""
    run.net.load_state_dict(state["net"])
    run.optimizer.load_state_dict(state["optimizer"])
    fresh = run.scheduler.state_dict()  # built for this run's --epochs
    run.scheduler.load_state_dict(state["scheduler"])
    stretch_schedule(run.scheduler, fresh)
    run.scaler.load_state_dict(state["scaler"])
    run.beta_policy.load_state_dict(state["beta_policy"])
    set_rng_state(state["rng"])
    run.epoch, run.step = state["epoch"], state["step"]
    run.log(f"resumed {run.ckpt_path} at epoch {run.epoch}, step {run.step}")


def _open_logs(run: _Run) -> None:
    """log.csv (continued after a resume), train_config.json and the progress bar (rank 0)."""
    cfg = run.cfg
    if run.rank != 0:
        return
    if not (cfg.resume and run.csv_path.exists() and run.epoch > 0):
        with open(run.csv_path, "w", newline="") as f:
            csv.writer(f).writerow(LOG_FIELDS)
    hook = run.hook.describe()
    with open(run.run_dir / runs.TRAIN_CONFIG_FILE, "w") as f:
        json.dump({**dataclasses.asdict(cfg), **({"hook": hook} if hook else {})}, f, indent=2)
    if cfg.progress:
        from tqdm import tqdm
        run.bar = tqdm(total=run.total_steps, initial=run.step, desc=f"train {cfg.name}",
                       unit="step", dynamic_ncols=True, file=sys.stdout)


# --------------------------------------------------------------------------------------------
# one epoch
# --------------------------------------------------------------------------------------------

def _loss(run: _Run, ce: torch.Tensor, fmap: torch.Tensor, n_faces: int, beta: float,
          extras: Tuple[torch.Tensor, ...] = ()):
    """(loss to differentiate, MI value, content-free term value) of one step; ``extras``: the
    batch's extra item fields, for the hook's extra term."""
    cfg, ecloss, hook = run.cfg, run.ecloss, run.hook
    if ecloss is None:
        return cfg.alpha * ce, torch.zeros((), device=run.device), 0.0
    templates = hook.templates(ecloss, ecloss.templates_for(run.device, torch.float32))
    mi_term, mi_value = mutual_information_across_ranks(
        hook.ecloss_maps(ecloss.prepare(fmap[:n_faces])), templates, cfg.marginal,
        cfg.ecloss_impl)
    loss = total_loss(ce, mi_term, cfg.alpha, beta)
    cf_value = 0.0
    if run.n_content_free:
        cf_term = content_free_term(hook.ecloss_maps(ecloss.prepare(fmap[n_faces:])), templates)
        loss = loss + content_free_penalty(cf_term, cfg.content_free)
        cf_value = float(cf_term.detach())
    extra = hook.extra_loss(fmap[:n_faces], extras)
    if extra is not None:
        loss = loss + extra
    return loss, mi_value, cf_value


def _train_step(run: _Run, images: torch.Tensor, labels: torch.Tensor, *extras) -> dict:
    """One optimisation step; returns the step's numbers (global over the ranks). ``extras``:
    the batch's further item fields (a hook's dataset, zoo.training_hook)."""
    cfg, device = run.cfg, run.device
    t0 = time.time()
    n_faces = len(labels)
    if run.n_content_free:
        free = step_content_free_batch(cfg.seed, run.step, run.n_content_free, run.world,
                                       run.rank, cfg.input_size)
        free = run.hook.content_free_images(images, free,
                                            step_generator(cfg.seed, run.step, run.rank))
        images = torch.cat([images, free])
    images = images.to(device, non_blocking=True)
    labels = labels.to(device, non_blocking=True)
    extras = tuple(x.to(device, non_blocking=True) for x in extras)
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    with torch.autocast(device.type, dtype=amp_dtype, enabled=cfg.amp):
        logits, fmap = run.ddp(images, labels)
    ce = F.cross_entropy(logits.float(), labels)
    beta = run.beta_policy.beta
    loss, mi_value, cf_value = _loss(run, ce, fmap, n_faces, beta, extras)
    skipped = run.guard.check_step(ce, mi_value, cf_value, loss, run.step, run.epoch)
    run.optimizer.zero_grad(set_to_none=True)
    if skipped:
        skip_step(run.scaler)
    else:
        run.scaler.scale(loss).backward()
        run.scaler.step(run.optimizer)
        run.scaler.update()
    run.scheduler.step()
    stats = torch.tensor([ce.item(), float((logits.argmax(1) == labels).sum()),
                          float(len(labels))], dtype=torch.float64)
    if run.distributed:
        stats = stats.to(device)
        dist.all_reduce(stats)
        stats = stats.cpu()
        stats[0] /= run.world
    ce_v, mi_v = float(stats[0]), float(mi_value)
    if run.ecloss is not None and not skipped:  # a skipped step does not move beta
        run.beta_policy.update(ce_v, mi_v, cfg.alpha)
    run.step += 1
    return {"loss": cfg.alpha * ce_v - beta * mi_v, "ce": ce_v, "mi": mi_v, "beta": beta,
            "correct": float(stats[1]), "seen": float(stats[2]),
            "images_per_s": float(stats[2]) / max(time.time() - t0, 1e-9),
            "content_free": cf_value, "skipped": skipped}


def _log_step(run: _Run, out: dict) -> None:
    """A log.csv row and the progress bar (rank 0)."""
    if run.rank != 0:
        return
    row = [run.epoch, run.step, out["loss"], out["ce"], out["mi"], out["beta"],
           out["correct"] / out["seen"], run.scheduler.get_last_lr()[0], out["images_per_s"],
           out["content_free"]]
    with open(run.csv_path, "a", newline="") as f:
        csv.writer(f).writerow(row)
    if run.bar is not None:
        run.bar.update(1)
        if run.step % run.cfg.log_every == 0:
            run.bar.set_postfix(ce=f"{out['ce']:.3f}", mi=f"{out['mi']:.3g}",
                                beta=f"{out['beta']:.2g}")


def _train_one_epoch(run: _Run) -> bool:
    """Train epoch ``run.epoch``; False when max_steps stopped it inside the epoch (then no
    checkpoint claims it done), True when it completed and was checkpointed."""
    cfg = run.cfg
    run.sampler.set_epoch(run.epoch)
    # The loader's own RNG (augmentation in workers) is a function of (seed, epoch) only.
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + run.epoch)
    loader = torch.utils.data.DataLoader(run.dataset, batch_size=run.local_batch,
                                         sampler=run.sampler, num_workers=cfg.workers,
                                         drop_last=True, generator=gen,
                                         pin_memory=run.device.type == "cuda",
                                         persistent_workers=False)
    run.ddp.train()
    sums = {"loss": 0.0, "ce": 0.0, "mi": 0.0, "correct": 0, "seen": 0}
    t_epoch = time.time()
    # In-process randomness (flips with workers=0, dropout) is also a function of (seed, epoch).
    torch.manual_seed(cfg.seed * 7_919 + run.epoch)
    for batch in loader:
        if run.step >= run.total_steps:
            return False
        out = _train_step(run, *batch)    # (images, labels, *a hook's extras)
        _log_step(run, out)
        if out["skipped"]:  # logged (NaN), not averaged into the epoch
            continue
        for key in ("loss", "ce", "mi"):
            sums[key] += out[key]
        sums["correct"] += int(out["correct"])
        sums["seen"] += int(out["seen"])
    _end_epoch(run, sums, time.time() - t_epoch)
    return True


def _end_epoch(run: _Run, sums: dict, seconds: float) -> None:
    """Epoch summary and checkpoint (rank 0), then wait for every rank."""
    cfg = run.cfg
    # a finite loss can still give inf gradients: never checkpoint them
    run.guard.check_weights(run.net, run.device, run.step, run.epoch)
    n_batches = max(1, sums["seen"] // cfg.batch_size)
    run.epoch += 1
    if run.rank == 0:
        summary = {"epoch": run.epoch, "loss": sums["loss"] / n_batches,
                   "ce": sums["ce"] / n_batches, "mi": sums["mi"] / n_batches,
                   "acc": sums["correct"] / max(1, sums["seen"]), "beta": run.beta_policy.beta,
                   "images_per_s": sums["seen"] / max(seconds, 1e-9)}
        run.epoch_rows.append(summary)
        msg = (f"epoch {run.epoch}/{cfg.epochs}: loss {summary['loss']:.4f} "
               f"ce {summary['ce']:.4f} mi {summary['mi']:.4g} acc {summary['acc']:.3f} "
               f"beta {summary['beta']:.3g} {summary['images_per_s']:.0f} img/s")
        (run.bar.write(msg) if run.bar is not None else run.log(msg))
        save_checkpoint(run.ckpt_path, {
            "net": run.net.state_dict(), "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(),
            "beta_policy": run.beta_policy.state_dict(), "rng": rng_state(),
            "epoch": run.epoch, "step": run.step,
            "config": json.dumps({**dataclasses.asdict(cfg), "hook": run.hook.describe()})})
    if run.distributed:
        dist.barrier()


# --------------------------------------------------------------------------------------------
# finish and the entry point
# --------------------------------------------------------------------------------------------

def _finish(run: _Run, seconds: float) -> dict:
    """Validation, curves, registration and summary.json (rank 0); the run's summary dict."""
    cfg, log, hook = run.cfg, run.log, run.hook.describe()
    result = {"name": cfg.name, "run_dir": str(run.run_dir), "steps": run.step,
              "epochs": run.epoch, "seconds": seconds, "metrics": {},
              **({"hook": hook} if hook else {})}
    if run.rank == 0:
        if cfg.evaluate and cfg.val:
            result["metrics"] = validate(
                run.model, cfg.val, cfg.input_size, run.device, orl_num_train=cfg.orl_num_train,
                orl_split_seed=cfg.orl_split_seed, orl_num_val=cfg.orl_num_val,
                orl_fold=cfg.orl_fold)
            for val_name, rep in result["metrics"].items():
                log(f"held-out verification [{val_name}]: accuracy {rep['accuracy']:.4f} "
                    f"+- {rep['std']:.4f}, AUC {rep['auc']:.4f} ({rep['num_pairs']} pairs)")
        from .figures import training_curves_figure
        training_curves_figure(run.csv_path, run.run_dir / runs.CURVES_FILE)
        if cfg.register:
            config = {**run.zoo_config, "metrics": result["metrics"]}
            result["registered"] = str(hub.save(run.model, config, name=cfg.name))
            log(f"registered {cfg.name} at {result['registered']}")
        with open(run.run_dir / runs.SUMMARY_FILE, "w") as f:
            json.dump({**result, "epochs_log": run.epoch_rows}, f, indent=2)
    if run.distributed:
        dist.barrier()
    return result


def train(cfg: TrainConfig, hook: Optional[TrainingHook] = None) -> dict:
    """Train one model; returns a summary dict (run dir, metrics, registered path). ``hook``: an
    experiment's zoo.training_hook.TrainingHook (None: the method alone)."""
    run = _setup(cfg, hook if hook is not None else TrainingHook())
    t_start = time.time()
    while run.epoch < run.cfg.epochs and run.step < run.total_steps:
        if not _train_one_epoch(run):
            break
    if run.bar is not None:
        run.bar.close()
    return _finish(run, time.time() - t_start)
