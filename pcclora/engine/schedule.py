"""Per-epoch cosine learning-rate schedule with linear warm-up (timm ``CosineLRScheduler``).

The reference recipe builds ``CosineLRScheduler(t_initial=epochs, lr_min=1e-6,
warmup_lr_init=1e-6, warmup_t=10, cycle_limit=1, t_in_epochs=True)`` and calls
``scheduler.step(epoch)`` *after* training epoch ``epoch``. Hence:

- ``lr_at(t)`` is timm's value for step ``t`` (one cycle, ``warmup_prefix=False``, so the
  cosine is evaluated at ``t`` itself, not ``t - warmup_t``; from ``t_initial`` on it is ``lr_min``);
- the optimizer trains epoch ``e`` with ``lr_at(e - 1)``, and epoch 0 with the warm-up start
  ``warmup_lr_init`` (which equals ``lr_at(0)``), as timm sets it when constructed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from backbones.errors import ConfigError


@dataclass(frozen=True)
class CosineWarmupSchedule:
    """The learning rate of every epoch, a pure function of the epoch index."""

    base_lr: float
    t_initial: int
    lr_min: float = 1e-6
    warmup_epochs: int = 10
    warmup_lr_init: float = 1e-6

    def lr_at(self, t: int) -> float:
        """timm ``CosineLRScheduler._get_lr(t)`` for one cycle (``cycle_mul = cycle_decay = k_decay = 1``)."""
        if t < self.warmup_epochs:
            return self.warmup_lr_init + t * (self.base_lr - self.warmup_lr_init) / self.warmup_epochs
        if t >= self.t_initial:
            return self.lr_min
        return self.lr_min + 0.5 * (self.base_lr - self.lr_min) * (1.0 + math.cos(math.pi * t / self.t_initial))

    def lr_for_epoch(self, epoch: int) -> float:
        """The lr used while training ``epoch`` (the reference steps the scheduler after each epoch)."""
        return self.lr_at(max(epoch - 1, 0))

    def apply(self, optimizer: torch.optim.Optimizer, epoch: int) -> float:
        """Set every parameter group's lr for ``epoch``; returns the base lr.

        A group with an ``lr_scale`` follows the same schedule from ``lr_scale`` times the base
        lr (timm schedules each group from its own initial lr, with the same floor and warm-up
        start).
        """
        lr = self.lr_for_epoch(epoch)
        for group in optimizer.param_groups:
            scale = group.get("lr_scale", 1.0)
            group["lr"] = lr if scale == 1.0 else replace(self, base_lr=self.base_lr * scale).lr_for_epoch(epoch)
        return lr

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)


def build_schedule(scheduler_cfg: dict[str, Any], base_lr: float) -> CosineWarmupSchedule:
    """The schedule of a config's ``scheduler`` section (only ``name: cosine`` exists)."""

    if scheduler_cfg["name"] != "cosine":
        raise ConfigError(f"unknown scheduler.name {scheduler_cfg['name']!r}; the only scheduler is 'cosine'")
    if scheduler_cfg["epochs"] < 1 or scheduler_cfg["warmup_epochs"] < 0:
        raise ConfigError(
            f"scheduler.epochs must be >= 1 and scheduler.warmup_epochs >= 0, got "
            f"{scheduler_cfg['epochs']} and {scheduler_cfg['warmup_epochs']}"
        )
    return CosineWarmupSchedule(
        base_lr=float(base_lr),
        t_initial=int(scheduler_cfg["epochs"]),
        lr_min=float(scheduler_cfg["lr_min"]),
        warmup_epochs=int(scheduler_cfg["warmup_epochs"]),
        warmup_lr_init=float(scheduler_cfg["warmup_lr_init"]),
    )


def describe_schedule(schedule: CosineWarmupSchedule, max_epoch: int) -> list[str]:
    """A log line for the schedule, and a loud note when it does not fit the run's length."""
    lines = [
        f"schedule: cosine over {schedule.t_initial} epochs, {schedule.warmup_epochs} warm-up, lr "
        f"{schedule.lr_for_epoch(0):.2e} (epoch 0) -> {schedule.base_lr:.2e} (peak) -> "
        f"{schedule.lr_for_epoch(max_epoch):.2e} (epoch {max_epoch})"
    ]
    if schedule.warmup_epochs > max_epoch or schedule.t_initial > 2 * max(max_epoch, 1):
        lines.append(
            f"NOTE: the run has epochs 0..{max_epoch} but scheduler.epochs is {schedule.t_initial} and "
            f"scheduler.warmup_epochs {schedule.warmup_epochs}: the lr never leaves the start of the schedule; "
            "leave both null to follow the run length"
        )
    return lines
