"""The learning rate within a stage (train.schedule).

constant: every step at the stage's rate (the paper: SGD 0.01 throughout). cosine: each parameter group's rate
(the tuned blocks' group keeps its fraction) annealed from its start to zero over the stage's steps,
``0.5 * (1 + cos(pi * t))`` at the fraction t of the stage done (Loshchilov & Hutter's SGDR without restarts). With
a constant rate the weights SGD ends on still carry the last batches' noise; annealing lets the last epochs settle
into the minimum the first found, which the per-epoch model selection then sees. The rate is a function of (epoch,
step in the epoch) only, so a stage resumed from a checkpoint continues on the same curve.
"""

from __future__ import annotations

import math

import torch


def lr_factor(schedule: str, progress: float) -> float:
    """The stage's rate multiplier after ``progress`` (0..1) of its steps."""
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    raise ValueError(f"train.schedule={schedule!r}: expected constant or cosine")


class StageSchedule:
    def __init__(self, optimizer: torch.optim.Optimizer, schedule: str, epochs: int, steps_per_epoch: int):
        """Built on a fresh optimizer (before a checkpoint's state replaces its rates): each group's rate now is
        its start."""
        self.optimizer, self.schedule = optimizer, schedule
        self.total = max(1, epochs * max(1, steps_per_epoch))
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.base = [group["lr"] for group in optimizer.param_groups]

    def set(self, epoch: int, step_in_epoch: int) -> float:
        """Set every group's rate for this step; returns the multiplier."""
        factor = lr_factor(self.schedule, (epoch * self.steps_per_epoch + step_in_epoch) / self.total)
        for group, base in zip(self.optimizer.param_groups, self.base, strict=True):
            group["lr"] = base * factor
        return factor
