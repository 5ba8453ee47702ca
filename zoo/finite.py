"""Non-finite losses and weights during training (docs/training.md, "NaN or inf in the loss").

Every step checks its terms before it updates anything: a NaN / inf CE, MI, content-free term or
total stops the run with NonFiniteLossError before the weights change, so the last checkpoint
(the previous epoch's) stays the last good one. Under AMP with a GradScaler the step is skipped
instead, as GradScaler skips a step whose gradients are inf, up to NONFINITE_SKIP_LIMIT steps in
a row. The weights and BN statistics are checked again before each checkpoint. All ranks of a
DDP run take the same decision.

The functions take zoo.engine's run and use its ``distributed``, ``scaler``, ``log``, ``step``,
``epoch``, ``nonfinite_streak``, ``net``, ``device`` and ``ckpt_path``; zoo.engine re-exports
the public names.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

# Under AMP a step with a non-finite loss is skipped (GradScaler); this many in a row stop the run.
NONFINITE_SKIP_LIMIT = 25


class NonFiniteLossError(RuntimeError):
    """The loss (CE, MI or content-free term) or the weights became NaN / inf: the run stopped
    before the weights were updated, and the last checkpoint (the previous epoch's) is kept."""


def checkpoint_note(run) -> str:
    if run.ckpt_path.exists():
        return (f"the last good checkpoint {run.ckpt_path} (epoch {run.epoch}) is kept: fix the "
                "cause (a lower --lr or --beta, the data) and --resume from it")
    return "no checkpoint had been written yet"


def check_finite(run, ce: torch.Tensor, mi_value: torch.Tensor, cf_value: float,
                 loss: torch.Tensor) -> bool:
    """True when the step must be skipped. A NaN / inf term stops the run with
    NonFiniteLossError before the weights change (the checkpoint of the last epoch stays the
    last good one); under AMP with a GradScaler the step is skipped instead, as GradScaler skips
    steps with inf gradients, up to NONFINITE_SKIP_LIMIT steps in a row. Ranks decide alike."""
    names = ("CE", "MI", "content-free term", "total loss")
    values = torch.stack([ce.detach().float(), mi_value.detach().float().to(ce.device),
                          torch.tensor(float(cf_value), device=ce.device),
                          loss.detach().float()])
    bad = (~torch.isfinite(values)).float()
    if run.distributed:
        dist.all_reduce(bad, op=dist.ReduceOp.MAX)
    if not bad.any():
        run.nonfinite_streak = 0
        return False
    vals = values.tolist()
    which = [names[k] for k in range(3) if bad[k]] or [names[3]]
    what = ", ".join(f"{n} = {v:g}" for n, v in zip(names, vals))
    where = f"step {run.step + 1} (epoch {run.epoch + 1})"
    if run.scaler.is_enabled():
        run.nonfinite_streak += 1
        if run.nonfinite_streak <= NONFINITE_SKIP_LIMIT:
            run.log(f"{where}: non-finite {' and '.join(which)} ({what}); GradScaler skips the "
                    "step")
            return True
        raise NonFiniteLossError(f"{where}: non-finite {' and '.join(which)} ({what}) in "
                                 f"{run.nonfinite_streak} steps in a row under AMP; stopped; "
                                 f"{checkpoint_note(run)}")
    raise NonFiniteLossError(f"{where}: non-finite {' and '.join(which)} ({what}); stopped "
                             f"before updating the weights; {checkpoint_note(run)}")


def skip_step(scaler: torch.amp.GradScaler) -> None:
    """A skipped step: what GradScaler does with inf gradients, no update and a smaller scale (a
    NaN loss need not give NaN gradients: a NaN map is cut off from the graph)."""
    scaler.update(scaler.get_scale() * scaler.get_backoff_factor())


def check_finite_weights(run) -> None:
    """NonFiniteLossError unless the weights and BN statistics are finite on every rank (checked
    before each checkpoint: a finite loss can still give inf gradients)."""
    bad = [k for k, v in run.net.state_dict().items()
           if v.is_floating_point() and not torch.isfinite(v).all()]
    flag = torch.tensor([float(bool(bad))], device=run.device)
    if run.distributed:  # BN statistics are per rank on CPUs: decide together
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if flag.item():
        raise NonFiniteLossError(f"epoch {run.epoch + 1}: non-finite weights or statistics after "
                                 f"step {run.step} ({', '.join(bad[:4]) or 'on another rank'}); "
                                 f"{checkpoint_note(run)}")
