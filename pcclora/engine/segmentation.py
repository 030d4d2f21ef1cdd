"""The part-segmentation task (``task: segmentation``): ShapeNetPart with the Point-MAE segmentation model.

Training as the official ``segmentation/main.py``: each batch's clouds are scaled by one factor
U(scale_low, scale_high) per cloud (isotropic; official 0.8-1.25) and shifted by U(-translate,
translate) per axis (official 0.1), then cross-entropy over every point (+ the method's
regularisers), gradients clipped to ``training.grad_clip``. Evaluation every epoch: predictions
restricted to the shape's category, instance mIoU (ranks the epochs), class mIoU, point
accuracy (:mod:`pcclora.engine.seg_metrics`). The official script has no voting test, so neither
does this task. Figures: a few test shapes coloured by predicted and true part. Export: the
merged model as ``{'model_state_dict': ...}``, the layout the official script saves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from backbones.checkpoint import MODEL_INFO_KEY
from backbones.errors import ConfigError, NonFiniteError
from datasets import build_dataset, get_dataset_spec
from pcclora.device import autocast
from pcclora.engine.checkpoint import export_merged_state_dict, save_atomic
from pcclora.engine.data import RunData, ensure_synthetic
from pcclora.engine.distributed import DistributedContext, all_gather_objects, mean_over_ranks
from pcclora.engine.model import build_model, unwrap
from pcclora.engine.progress import Progress
from pcclora.engine.seg_metrics import PartSegScores, part_seg_scores, restricted_predictions, shape_iou
from pcclora.engine.seg_plots import plot_part_predictions
from pcclora.engine.task import Evaluation, Metric, Task, register_task
from pcclora.engine.trainer import optimizer_step, with_regularizers

#: Test shapes kept for the figure of the last evaluation (one per category, at most this many).
FIGURE_SHAPES = 4


@dataclass
class SegmentationDetails:
    """What the figures and the test report need from an evaluation."""

    scores: PartSegScores
    samples: list[dict[str, torch.Tensor]]  # {"points" (N, 3), "prediction" (N,), "target" (N,), "category"}


def augment_parts(points: torch.Tensor, augment: Mapping[str, Any], generator: torch.Generator) -> torch.Tensor:
    """The official segmentation augmentation: one scale per cloud, then one shift per cloud.

    Args:
        points: (B, N, 3).
        augment: ``scale_low``, ``scale_high`` (isotropic factor), ``translate`` (shift range per axis).

    Returns:
        (B, N, 3).
    """
    batch = points.shape[0]
    low, high, shift = augment["scale_low"], augment["scale_high"], augment["translate"]
    scale = torch.empty(batch, 1, 1).uniform_(low, high, generator=generator).to(points)
    offset = torch.empty(batch, 1, 3).uniform_(-shift, shift, generator=generator).to(points)
    return points * scale + offset


def build_part_data(config: dict[str, Any], log: Callable[[str], None], with_train: bool = True) -> RunData:
    """The ShapeNetPart splits of ``config['dataset']`` (synthetic data written first when asked).

    Raises:
        ConfigError: no root configured, or a dataset that has no part labels.
        DataError: from the loader (missing or malformed files).
    """
    dataset_cfg = config["dataset"]
    name = dataset_cfg["name"]
    spec = get_dataset_spec(name)
    if name != "shapenetpart":
        raise ConfigError(f"task segmentation reads part labels: set dataset.name to shapenetpart, not {name!r}")
    if dataset_cfg["root"] is None:
        raise ConfigError(
            f"no data folder for {name}: pass --data-root DIR (or set dataset.root); it should hold the {spec.source}"
        )
    root = Path(str(dataset_cfg["root"])).expanduser()
    ensure_synthetic(dataset_cfg, root, log)
    options = {"npoints": dataset_cfg["npoints"], "use_normals": dataset_cfg["use_normals"]}
    train = build_dataset(name, root, "train", **options) if with_train else None
    test = build_dataset(name, root, "test", **options)
    return RunData(train=train, test=test, num_classes=test.num_classes, class_names=list(test.class_names))


@register_task("segmentation")
class SegmentationTask(Task):
    """Part segmentation: instance mIoU ranks the epochs; class mIoU and point accuracy beside it."""

    metrics = (
        Metric("test_ins_miou", "ins_miou", "Ins mIoU"),
        Metric("test_cls_miou", "cls_miou", "Cls mIoU"),
        Metric("test_acc", "acc", "Acc"),
    )
    train_columns = ("train_loss", "train_ce", "train_sade", "train_reg", "train_acc")

    def build_data(self, config: dict[str, Any], log: Callable[[str], None], with_train: bool = True) -> RunData:
        return build_part_data(config, log, with_train)

    def build_model(self, config: dict[str, Any], data: RunData, log: Callable[[str], None]) -> nn.Module:
        model = build_model(config, data.num_classes, log)
        if not hasattr(unwrap(model), "num_shape_classes"):
            raise ConfigError(
                f"task segmentation needs a segmentation backbone (point_mae_seg), not {config['backbone']['name']!r}"
            )
        return model

    def sample_input(self, data: RunData, config: dict[str, Any]) -> torch.Tensor:
        return data.test[0][0][None, :, :3]

    def train_epoch(
        self,
        model: nn.Module,
        core: nn.Module,
        loader: DataLoader,
        optimizer: torch.optim.Optimizer,
        config: dict[str, Any],
        generator: torch.Generator,
        context: DistributedContext,
        epoch: int,
        progress: Callable[[int, int, float], None],
    ) -> dict[str, float]:
        training = config["training"]
        trainable = [param for param in core.parameters() if param.requires_grad]
        model.train()
        totals = torch.zeros(6, dtype=torch.float64)  # loss, ce, sade, reg, correct points, points
        num_batches = len(loader)
        for index, (points, categories, parts) in enumerate(loader):
            points = augment_parts(points[..., :3].float(), config["dataset"]["augment"], generator)
            points, categories, parts = (t.to(context.device, non_blocking=True) for t in (points, categories, parts))
            with autocast(context.device, training["amp"]):
                logits = model(points, categories)  # (B, N, P)
            ce = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), parts.reshape(-1))
            loss, reg, sade = with_regularizers(ce, core)
            optimizer_step(loss, optimizer, trainable, training["grad_clip"], context, epoch, index)
            batch = parts.shape[0]
            correct = (logits.detach().argmax(-1) == parts).sum()
            values = torch.stack([loss.detach(), ce.detach(), sade.to(loss.dtype), reg, correct.to(loss.dtype)])
            loss_value, ce_value, sade_value, reg_value, correct_value = values.tolist()
            totals += torch.tensor(
                [
                    loss_value * batch,
                    ce_value * batch,
                    sade_value * batch,
                    reg_value * batch,
                    correct_value,
                    parts.numel(),
                ],
                dtype=torch.float64,
            )
            if progress is not None:
                progress(index, num_batches, loss_value)
        loss_sum, ce_sum, sade_sum, reg_sum, correct, points_seen = mean_over_ranks(totals.tolist(), context)
        samples = max(points_seen / max(config["dataset"]["npoints"], 1), 1.0)
        return {
            "train_loss": loss_sum / samples,
            "train_ce": ce_sum / samples,
            "train_sade": sade_sum / samples,
            "train_reg": reg_sum / samples,
            "train_acc": 100.0 * correct / max(points_seen, 1.0),
        }

    @torch.no_grad()
    def evaluate(
        self,
        model: nn.Module,
        loader: DataLoader,
        config: dict[str, Any],
        context: DistributedContext,
        progress: Progress | None = None,
    ) -> Evaluation:
        dataset = loader.dataset
        inner = getattr(dataset, "dataset", dataset)  # a Subset under DDP
        part_ranges, category_names = inner.part_ranges, inner.categories
        model.eval()
        ious: list[float] = []
        shape_categories: list[int] = []
        correct = total = nonfinite = 0
        samples: list[dict[str, torch.Tensor]] = []
        for index, (points, categories, parts) in enumerate(loader):
            points = points[..., :3].float().to(context.device)
            categories = categories.to(context.device)
            with autocast(context.device, config["training"]["amp"]):
                logits = model(points, categories)
            nonfinite += int((~torch.isfinite(logits)).any(dim=-1).any(dim=-1).sum())
            predictions = restricted_predictions(logits, categories, part_ranges).cpu()
            for row, category in enumerate(categories.tolist()):
                ious.append(shape_iou(predictions[row], parts[row], part_ranges[category]))
                shape_categories.append(category)
                if len(samples) < FIGURE_SHAPES and all(s["category"] != category for s in samples):
                    samples.append(
                        {
                            "points": points[row].cpu(),
                            "prediction": predictions[row],
                            "target": parts[row],
                            "category": category,
                        }
                    )
            correct += int((predictions == parts).sum())
            total += parts.numel()
            if progress is not None:
                progress.update(index + 1)
        shards = all_gather_objects((ious, shape_categories, correct, total, nonfinite, samples), context)
        if sum(shard[4] for shard in shards):
            raise NonFiniteError(
                f"the model gives non-finite logits (NaN or Inf) on {sum(shard[4] for shard in shards)} test shapes, "
                "so this evaluation has no mIoU; its weights have diverged"
            )
        scores = part_seg_scores(
            [iou for shard in shards for iou in shard[0]],
            [category for shard in shards for category in shard[1]],
            sum(shard[2] for shard in shards),
            sum(shard[3] for shard in shards),
            category_names,
        )
        metrics = {
            "test_ins_miou": scores.instance_miou,
            "test_cls_miou": scores.class_miou,
            "test_acc": scores.accuracy,
        }
        return Evaluation(
            metrics=metrics, details=SegmentationDetails(scores, [s for shard in shards for s in shard[5]])
        )

    def describe_data(self, data: RunData) -> str:
        categories = len(getattr(data.test, "categories", []))
        return (
            f"data: {len(data.train)} train / {len(data.test)} test shapes, {categories} categories, "
            f"{data.num_classes} part classes"
        )

    def epoch_line(self, row: Mapping[str, Any], best: Mapping[str, Any] | None, max_epoch: int) -> str:
        best_text = f"(best Ins mIoU {best['test_ins_miou']:.2f} @ {best['epoch']})  " if best else ""
        return (
            f"epoch {row['epoch']:3d}/{max_epoch}  lr {row['lr']:.2e}  loss {row['train_loss']:.4f}  "
            f"train acc {row['train_acc']:6.2f}  test Ins mIoU {row['test_ins_miou']:6.2f}  "
            f"Cls mIoU {row['test_cls_miou']:6.2f}  Acc {row['test_acc']:6.2f}  "
            f"{best_text}{row['epoch_seconds']:.1f}s"
        )

    def final_figures(
        self,
        folder: Path,
        evaluation: Evaluation,
        data: RunData,
        num_classes: int,
        epoch: int,
        model: nn.Module | None = None,
    ) -> None:
        categories = getattr(data.test, "categories", None) or []
        plot_part_predictions(evaluation.details.samples, categories, folder / "parts.png", f"test, epoch {epoch}")

    def details_report(self, evaluation: Evaluation, data: RunData) -> dict[str, Any]:
        return {"per_category_iou": evaluation.details.scores.per_category}

    def export(self, model: nn.Module, path: Path, info: dict[str, Any]) -> Path:
        """``{'model_state_dict': merged state dict, MODEL_INFO_KEY: info}`` (the official segmentation layout)."""
        return save_atomic({"model_state_dict": export_merged_state_dict(model), MODEL_INFO_KEY: info}, path)
