"""Evaluation on the test split: plain (FPS to npoints) and N-vote averaging.

Voting, as in the reference's ``validate_vote``: for each test batch, FPS to the training pool
size (``fps_points_for(npoints)``), then ``num_votes`` times a random subset of ``npoints`` of
that pool plus a random scale-and-translate; the logits of the votes are **averaged** and the
argmax is the prediction. It is one run with one seed; the reference's ``--test`` repeats it
299 times and keeps the maximum, which this toolkit never does.

An evaluation whose logits are not all finite has no accuracy: both functions raise
:class:`~backbones.errors.NonFiniteError` instead (on every rank alike under DDP), because the
argmax of NaN logits is a meaningless class index that would still be counted.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from backbones.errors import NonFiniteError
from backbones.tokenizer import gather_points
from datasets.transforms import fps_points_for, fps_subsample, scale_and_translate
from pcclora.device import autocast
from pcclora.engine.distributed import DistributedContext, all_gather_objects
from pcclora.engine.metrics import Accuracy
from pcclora.engine.progress import Progress


def _nonfinite_samples(logits: torch.Tensor) -> torch.Tensor:
    """How many samples (rows) of ``logits`` hold a NaN or an Inf (a 0-d tensor on their device: no sync)."""
    return (~torch.isfinite(logits)).any(dim=-1).sum()


def _gather_accuracy(
    predictions: list[torch.Tensor],
    labels: list[torch.Tensor],
    num_classes: int,
    context: DistributedContext,
    nonfinite: torch.Tensor | int = 0,
) -> Accuracy:
    local = (torch.cat(predictions).cpu(), torch.cat(labels).cpu(), int(nonfinite))
    shards = all_gather_objects(local, context)
    all_predictions = torch.cat([shard[0] for shard in shards])
    all_labels = torch.cat([shard[1] for shard in shards])
    bad = sum(shard[2] for shard in shards)
    if bad:
        raise NonFiniteError(
            f"the model gives non-finite logits (NaN or Inf) on {bad} of {len(all_labels)} test samples, "
            "so this evaluation has no accuracy; its weights have diverged"
        )
    return Accuracy.from_predictions(all_predictions, all_labels, num_classes)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    npoints: int,
    num_classes: int,
    context: DistributedContext,
    amp: bool = False,
    progress: Progress | None = None,
) -> Accuracy:
    """OA / mAcc / confusion of ``model`` on the loader's samples, each FPS-sampled to ``npoints``.

    ``progress`` (optional) is told after each batch.

    Raises:
        NonFiniteError: a logit of any sample is NaN or infinite.
    """
    model.eval()
    predictions, labels, nonfinite = [], [], torch.zeros((), dtype=torch.long, device=context.device)
    for index, (points, target) in enumerate(loader):
        points = fps_subsample(points.to(context.device, non_blocking=True)[..., :3].contiguous(), npoints)
        with autocast(context.device, amp):
            logits = model(points)
        nonfinite += _nonfinite_samples(logits)
        predictions.append(logits.argmax(dim=-1))
        labels.append(target)
        if progress is not None:
            progress.update(index + 1)
    return _gather_accuracy(predictions, labels, num_classes, context, nonfinite)


@torch.no_grad()
def evaluate_votes(
    model: nn.Module,
    loader: DataLoader,
    npoints: int,
    num_classes: int,
    num_votes: int,
    augment: dict[str, Any],
    generator: torch.Generator,
    context: DistributedContext,
    amp: bool = False,
    progress: Progress | None = None,
) -> Accuracy:
    """Accuracy of the logits averaged over ``num_votes`` random subsets + scale/translate.

    Args:
        augment: the ``dataset.augment`` section (scale_low, scale_high, translate).
        generator: CPU generator for the subsets and the scales (the run's seed decides them).

    Raises:
        NonFiniteError: a logit of any vote of any sample is NaN or infinite.
    """
    model.eval()
    predictions, labels, nonfinite = [], [], torch.zeros((), dtype=torch.long, device=context.device)
    for index, (points, target) in enumerate(loader):
        points = points.to(context.device, non_blocking=True)[..., :3].contiguous()
        pool_size = min(fps_points_for(npoints), points.shape[1])
        pool = fps_subsample(points, pool_size)
        logit_sum = None
        for _ in range(num_votes):
            order = torch.rand(points.shape[0], pool_size, generator=generator).argsort(dim=1)[:, :npoints]
            vote_points = gather_points(pool, order.to(context.device))
            vote_points = scale_and_translate(
                vote_points, augment["scale_low"], augment["scale_high"], augment["translate"], generator=generator
            )
            with autocast(context.device, amp):
                logits = model(vote_points).float()
            logit_sum = logits if logit_sum is None else logit_sum + logits
        nonfinite += _nonfinite_samples(logit_sum)  # a NaN or Inf of any vote stays in the sum
        predictions.append((logit_sum / num_votes).argmax(dim=-1))
        labels.append(target)
        if progress is not None:
            progress.update(index + 1)
    return _gather_accuracy(predictions, labels, num_classes, context, nonfinite)
