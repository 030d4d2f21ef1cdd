"""One training epoch: re-sampling, augmentation, CE + the method's regularisers, clipping; the finite-loss and
finite-state guards."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from backbones.errors import NonFiniteError
from backbones.errors import NonFiniteError as NonFiniteLossError  # noqa: F401  (the name this module used to define)
from datasets.transforms import fps_points_for, fps_resample, rotate_y, scale_and_translate
from pcclora.device import autocast
from pcclora.engine.distributed import DistributedContext, any_rank, mean_over_ranks
from pcclora.engine.losses import classification_loss
from pcclora.peft import regularization_terms
from pcclora.peft.state import trained_keys


@dataclass(frozen=True)
class EpochStats:
    """Means over the epoch's batches (and ranks): losses and training accuracy in percent.

    ``sade`` is SADE's value (0 for methods without it), ``reg`` the weighted sum of every
    regulariser the loss added (λ·SADE for CLoRA, PointLoRA's weighted entropy loss).
    """

    loss: float
    ce: float
    sade: float
    acc: float
    reg: float = 0.0


def augment_batch(
    points: torch.Tensor, npoints: int, augment: dict[str, Any], generator: torch.Generator
) -> torch.Tensor:
    """Training input of one batch: FPS re-sampling, optional y rotation, scale and translate.

    Args:
        points: (B, N, C) clouds as stored (C = 3 or 6).

    Returns:
        (B, npoints, 3).
    """
    points = fps_resample(points, npoints, fps_points_for(npoints), generator=generator)[..., :3].contiguous()
    if augment["rotate_y"]:
        points = rotate_y(points, generator=generator)
    return scale_and_translate(
        points, augment["scale_low"], augment["scale_high"], augment["translate"], generator=generator
    )


def with_regularizers(loss: torch.Tensor, core_model: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The task loss plus the method's weighted regularisers (after the forward: some are computed
    there). Returns (total loss, the regularisers' weighted sum detached, SADE's value or 0)."""
    terms = regularization_terms(core_model)
    total, reg = loss, torch.zeros((), device=loss.device)
    for weight, value in terms.values():
        total = total + weight * value
        reg = reg + weight * value.detach()
    sade = terms["sade"][1].detach() if "sade" in terms else torch.zeros((), device=loss.device)
    return total, reg, sade


def optimizer_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    trainable: list[nn.Parameter],
    grad_clip: float,
    context: DistributedContext,
    epoch: int,
    index: int,
) -> None:
    """One guarded update: stop on a non-finite loss (on any rank), then backward, clip the
    gradient norm to ``grad_clip`` (0 = off) and step.

    Raises:
        NonFiniteError: the loss is NaN or infinite on some rank.
    """
    if any_rank(not bool(torch.isfinite(loss)), context):
        raise NonFiniteError(f"the training loss is {loss.item()} at epoch {epoch}, batch {index}: training stopped")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(trainable, grad_clip)
    optimizer.step()


def train_one_epoch(
    model: nn.Module,
    core_model: nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    config: dict[str, Any],
    generator: torch.Generator,
    context: DistributedContext,
    epoch: int,
    progress: Any = None,
) -> EpochStats:
    """Train ``model`` for one pass over ``loader``.

    Args:
        model: what the forward runs through (the DDP wrapper under torchrun).
        core_model: the unwrapped model (the regularisers read it; clipping its parameters).
        generator: CPU generator for re-sampling and augmentation of this epoch.
        progress: optional callable ``(batch_index, num_batches, loss)`` for a progress bar.

    Raises:
        NonFiniteError: the loss of a batch is NaN or infinite (on any rank).
    """
    training = config["training"]
    npoints = config["dataset"]["npoints"]
    trainable = [param for param in core_model.parameters() if param.requires_grad]
    model.train()
    totals = torch.zeros(6, dtype=torch.float64)  # loss, ce, sade, correct, samples, regularisers
    num_batches = len(loader)
    for index, (points, labels) in enumerate(loader):
        points = augment_batch(
            points.to(context.device, non_blocking=True), npoints, config["dataset"]["augment"], generator
        )
        labels = labels.to(context.device, non_blocking=True)
        with autocast(context.device, training["amp"]):
            logits = model(points)
        ce = classification_loss(logits.float(), labels, training["label_smoothing"])
        loss, reg, sade = with_regularizers(ce, core_model)  # after the forward: some are computed there
        optimizer_step(loss, optimizer, trainable, training["grad_clip"], context, epoch, index)
        batch = labels.shape[0]
        correct = (logits.argmax(-1) == labels).sum()
        # one device-to-host copy for the four figures instead of one each
        loss_value, ce_value, sade_value, correct_value, reg_value = torch.stack(
            [loss.detach(), ce.detach(), sade.detach().to(loss.dtype), correct.to(loss.dtype), reg.to(loss.dtype)]
        ).tolist()
        totals += torch.tensor(
            [loss_value * batch, ce_value * batch, sade_value * batch, correct_value, batch, reg_value * batch],
            dtype=torch.float64,
        )
        if progress is not None:
            progress(index, num_batches, loss_value)
    loss_sum, ce_sum, sade_sum, correct, samples, reg_sum = mean_over_ranks(totals.tolist(), context)
    samples = max(samples, 1.0)
    return EpochStats(
        loss=loss_sum / samples,
        ce=ce_sum / samples,
        sade=sade_sum / samples,
        acc=100.0 * correct / samples,
        reg=reg_sum / samples,
    )


def nonfinite_state(
    model: nn.Module, optimizer: torch.optim.Optimizer | None = None, keys: list[str] | None = None
) -> list[str]:
    """Names of the trained tensors (what a run checkpoint saves) and optimizer state that hold NaN/Inf.

    ``keys``: the state-dict keys to check; None = the adapted model's trained keys.
    """
    state = model.state_dict()
    keys = trained_keys(model) if keys is None else keys
    bad = [key for key in keys if state[key].is_floating_point() and not bool(state[key].isfinite().all())]
    for index, group in enumerate(optimizer.param_groups if optimizer is not None else []):
        for number, param in enumerate(group["params"]):
            for name, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(value.isfinite().all()):
                    bad.append(f"optimizer state {name} of parameter {number} in group {index}")
    return bad


def check_finite_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    context: DistributedContext,
    keys: list[str] | None = None,
) -> None:
    """Raise when a trained tensor or the optimizer state holds NaN/Inf after ``epoch`` (on any rank).

    A NaN can reach the weights in the last step of an epoch without the loss showing it (a
    non-finite gradient, an overflowing update): then the epoch must not be saved.

    Raises:
        NonFiniteError: names the epoch and up to five of the tensors.
    """
    bad = nonfinite_state(model, optimizer, keys)
    if any_rank(bool(bad), context):
        shown = (
            ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "") if bad else "on another process"
        )
        raise NonFiniteError(f"the trained tensors hold NaN or Inf after epoch {epoch} ({shown}): training stopped")
