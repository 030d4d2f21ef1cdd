"""The classification task: fine-tune a backbone + peft method on ScanObjectNN / ModelNet40 / few-shot.

Training: FPS re-sampling, augmentation, cross-entropy (+ λ·SADE) per batch
(:mod:`pcclora.engine.trainer`). Evaluation: test OA and mean class accuracy every epoch, N-vote
averaging on request (:mod:`pcclora.engine.evaluate`). Figures: the confusion matrix of the last
evaluation. Export: the merged model in the official fine-tuned layout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from backbones.errors import ConfigError
from datasets import DATASETS, get_dataset_spec
from pcclora.engine.checkpoint import export_merged
from pcclora.engine.data import RunData, build_run_data
from pcclora.engine.distributed import DistributedContext
from pcclora.engine.evaluate import evaluate, evaluate_votes
from pcclora.engine.metrics import Accuracy
from pcclora.engine.model import build_model
from pcclora.engine.plots import plot_confusion
from pcclora.engine.progress import Progress
from pcclora.engine.task import Evaluation, Metric, Task, register_task
from pcclora.engine.trainer import train_one_epoch


def accuracy_evaluation(accuracy: Accuracy) -> Evaluation:
    """An :class:`Accuracy` as the history's ``test_oa`` / ``test_macc``, the accuracy kept as details."""
    return Evaluation(metrics={"test_oa": accuracy.overall, "test_macc": accuracy.mean_class}, details=accuracy)


@register_task("classification")
class ClassificationTask(Task):
    """Shape classification: OA ranks the epochs, mAcc is reported beside it."""

    metrics = (Metric("test_oa", "oa", "OA"), Metric("test_macc", "macc", "mAcc"))
    train_columns = ("train_loss", "train_ce", "train_sade", "train_reg", "train_acc")
    supports_voting = True

    def build_data(self, config: dict[str, Any], log: Callable[[str], None], with_train: bool = True) -> RunData:
        name = config["dataset"]["name"]
        if not get_dataset_spec(name).labelled:
            raise ConfigError(
                f"dataset {name!r} is a pre-training set without classes to fine-tune on; fine-tune on "
                f"{', '.join(n for n, spec in DATASETS.items() if spec.labelled)}, or pre-train on it "
                "(task: pretraining, python tools/pretrain.py)"
            )
        return build_run_data(config["dataset"], log, with_train=with_train)

    def build_model(self, config: dict[str, Any], data: RunData, log: Callable[[str], None]) -> nn.Module:
        return build_model(config, data.num_classes, log)

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
        stats = train_one_epoch(model, core, loader, optimizer, config, generator, context, epoch, progress)
        return {
            "train_loss": stats.loss,
            "train_ce": stats.ce,
            "train_sade": stats.sade,
            "train_reg": stats.reg,
            "train_acc": stats.acc,
        }

    def evaluate(
        self,
        model: nn.Module,
        loader: DataLoader,
        config: dict[str, Any],
        context: DistributedContext,
        progress: Progress | None = None,
    ) -> Evaluation:
        num_classes = _num_classes(model)
        npoints, amp = config["dataset"]["npoints"], config["training"]["amp"]
        return accuracy_evaluation(evaluate(model, loader, npoints, num_classes, context, amp, progress))

    def vote(
        self,
        model: nn.Module,
        loader: DataLoader,
        config: dict[str, Any],
        votes: int,
        generator: torch.Generator,
        context: DistributedContext,
    ) -> Evaluation:
        accuracy = evaluate_votes(
            model,
            loader,
            config["dataset"]["npoints"],
            _num_classes(model),
            votes,
            config["dataset"]["augment"],
            generator,
            context,
            config["training"]["amp"],
        )
        return accuracy_evaluation(accuracy)

    def epoch_line(self, row: Mapping[str, Any], best: Mapping[str, Any], max_epoch: int) -> str:
        return (
            f"epoch {row['epoch']:3d}/{max_epoch}  lr {row['lr']:.2e}  loss {row['train_loss']:.4f}  "
            f"train acc {row['train_acc']:6.2f}  test OA {row['test_oa']:6.2f}  mAcc {row['test_macc']:6.2f}  "
            f"(best OA {best['test_oa']:.2f} @ {best['epoch']})  {row['epoch_seconds']:.1f}s"
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
        names = list(data.class_names) + [f"class {index}" for index in range(len(data.class_names), num_classes)]
        confusion = evaluation.details.confusion
        plot_confusion(confusion, names[:num_classes], folder / "confusion.png", f"test, epoch {epoch}")

    def details_report(self, evaluation: Evaluation, data: RunData) -> dict[str, Any]:
        return {"per_class": evaluation.details.per_class(list(data.class_names))}

    def export(self, model: nn.Module, path: Path, info: dict[str, Any]) -> Path:
        return export_merged(model, path, info)


def _num_classes(model: nn.Module) -> int:
    inner = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    return inner.num_classes
