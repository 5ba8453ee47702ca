"""Non-finite losses and weights during training (docs/training.md, "NaN or inf in the loss").

Every step checks its terms before it updates anything: a NaN / inf CE, MI, content-free term or
total stops the run with NonFiniteLossError before the weights change, so the last checkpoint
(the previous epoch's) stays the last good one. Under AMP with a GradScaler the step is skipped
instead, as GradScaler skips a step whose gradients are inf, up to NONFINITE_SKIP_LIMIT steps in
a row. The weights and BN statistics are checked again before each checkpoint. All ranks of a
DDP run take the same decision.

``NonFiniteGuard`` holds what the checks need (the scaler, where the last checkpoint lies, how to
log, whether ranks must agree) and the count of steps skipped in a row; zoo.engine keeps one per
run and tells it the step and epoch of each check.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist

__all__ = ["NONFINITE_SKIP_LIMIT", "NonFiniteLossError", "NonFiniteGuard", "skip_step"]

# Under AMP a step with a non-finite loss is skipped (GradScaler); this many in a row stop the run.
NONFINITE_SKIP_LIMIT = 25


class NonFiniteLossError(RuntimeError):
    """The loss (CE, MI or content-free term) or the weights became NaN / inf: the run stopped
    before the weights were updated, and the last checkpoint (the previous epoch's) is kept."""


class NonFiniteGuard:
    """The non-finite checks of one training run (rank): ``check_step`` before each update,
    ``check_weights`` before each checkpoint. ``step`` and ``epoch`` are those done so far."""

    def __init__(self, scaler: torch.amp.GradScaler, ckpt_path: Path,
                 log: Callable[[str], None], distributed: bool):
        self.scaler, self.ckpt_path, self.log = scaler, Path(ckpt_path), log
        self.distributed = distributed
        self.streak = 0               # steps in a row skipped under AMP for a non-finite loss

    def checkpoint_note(self, epoch: int) -> str:
        if self.ckpt_path.exists():
            return (f"the last good checkpoint {self.ckpt_path} (epoch {epoch}) is kept: fix the "
                    "cause (a lower --lr or --beta, the data) and --resume from it")
        return "no checkpoint had been written yet"

    def check_step(self, ce: torch.Tensor, mi_value: torch.Tensor, cf_value: float,
                   loss: torch.Tensor, step: int, epoch: int) -> bool:
        """True when the step must be skipped. A NaN / inf term stops the run with
        NonFiniteLossError before the weights change (the checkpoint of the last epoch stays the
        last good one); under AMP with a GradScaler the step is skipped instead, as GradScaler
        skips steps with inf gradients, up to NONFINITE_SKIP_LIMIT steps in a row. Ranks decide
        alike."""
        names = ("CE", "MI", "content-free term", "total loss")
        values = torch.stack([ce.detach().float(), mi_value.detach().float().to(ce.device),
                              torch.tensor(float(cf_value), device=ce.device),
                              loss.detach().float()])
        bad = (~torch.isfinite(values)).float()
        if self.distributed:
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        if not bad.any():
            self.streak = 0
            return False
        vals = values.tolist()
        which = " and ".join([names[k] for k in range(3) if bad[k]] or [names[3]])
        what = ", ".join(f"{n} = {v:g}" for n, v in zip(names, vals))
        where = f"step {step + 1} (epoch {epoch + 1})"
        if self.scaler.is_enabled():
            self.streak += 1
            if self.streak <= NONFINITE_SKIP_LIMIT:
                self.log(f"{where}: non-finite {which} ({what}); GradScaler skips the step")
                return True
            raise NonFiniteLossError(f"{where}: non-finite {which} ({what}) in {self.streak} "
                                     f"steps in a row under AMP; stopped; "
                                     f"{self.checkpoint_note(epoch)}")
        raise NonFiniteLossError(f"{where}: non-finite {which} ({what}); stopped before "
                                 f"updating the weights; {self.checkpoint_note(epoch)}")

    def check_weights(self, net: torch.nn.Module, device: torch.device, step: int,
                      epoch: int) -> None:
        """NonFiniteLossError unless the weights and BN statistics are finite on every rank
        (checked before each checkpoint: a finite loss can still give inf gradients)."""
        bad = [k for k, v in net.state_dict().items()
               if v.is_floating_point() and not torch.isfinite(v).all()]
        flag = torch.tensor([float(bool(bad))], device=device)
        if self.distributed:  # BN statistics are per rank on CPUs: decide together
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item():
            raise NonFiniteLossError(f"epoch {epoch + 1}: non-finite weights or statistics "
                                     f"after step {step} "
                                     f"({', '.join(bad[:4]) or 'on another rank'}); "
                                     f"{self.checkpoint_note(epoch)}")


def skip_step(scaler: torch.amp.GradScaler) -> None:
    """A skipped step: what GradScaler does with inf gradients, no update and a smaller scale (a
    NaN loss need not give NaN gradients: a NaN map is cut off from the graph)."""
    scaler.update(scaler.get_scale() * scaler.get_backoff_factor())
