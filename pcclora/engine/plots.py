"""Training curves and the confusion matrix as PNG files (matplotlib, Agg backend), written atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never open a window (servers, tests, DDP workers)
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from pcclora.engine.files import atomic_write  # noqa: E402


def plot_curves(history: Sequence[dict[str, Any]], path: Path, metrics: Sequence[Any]) -> None:
    """Three panels against the epoch: train loss, the task's test metrics (and train acc), lr.

    Args:
        history: one row per epoch (``epoch``, ``lr``, ``train_loss`` and the metrics' keys).
        metrics: the task's :class:`~pcclora.engine.task.Metric` s; the first is drawn thick and
            solid underneath, the others thin and dashed on top, so all stay visible when they are
            equal (a balanced test set makes mAcc equal OA). Epochs not evaluated (``None``) are
            left out.
    """
    epochs = [row["epoch"] for row in history]
    figure, (ax_loss, ax_metric, ax_lr) = plt.subplots(1, 3, figsize=(15, 4))
    ax_loss.plot(epochs, [row["train_loss"] for row in history], label="train loss")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    if "train_acc" in history[0]:
        ax_metric.plot(epochs, [row["train_acc"] for row in history], label="train acc", color="tab:gray", alpha=0.8)
    colors = ("tab:blue", "tab:orange", "tab:green", "tab:red")
    for index, metric in enumerate(metrics):
        style = (
            {"linewidth": 3.0} if index == 0 else {"linewidth": 1.2, "linestyle": "--", "marker": "o", "markersize": 3}
        )
        points = [(row["epoch"], row[metric.key]) for row in history if row.get(metric.key) is not None]
        if not points:
            continue
        label = metric.label if metric.label.startswith(("test", "probe")) else f"test {metric.label}"
        ax_metric.plot(*zip(*points, strict=True), label=label, color=colors[index % len(colors)], **style)
    ax_metric.set_xlabel("epoch")
    ax_metric.set_ylabel("%")
    if ax_metric.get_legend_handles_labels()[0]:  # nothing evaluated yet: no legend
        ax_metric.legend()
    ax_lr.plot(epochs, [row["lr"] for row in history])
    ax_lr.set_xlabel("epoch")
    ax_lr.set_ylabel("learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_confusion(confusion: torch.Tensor, class_names: Sequence[str], path: Path, title: str) -> None:
    """Row-normalised confusion matrix (true class per row) with the class names on the axes."""
    counts = confusion.to(torch.float64)
    rates = counts / counts.sum(dim=1, keepdim=True).clamp_min(1.0)
    size = max(5.0, 0.3 * len(class_names) + 2.0)
    figure, axis = plt.subplots(figsize=(size + 1.0, size))
    image = axis.imshow(rates.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = range(len(class_names))
    axis.set_xticks(ticks, labels=class_names, rotation=90, fontsize=7)
    axis.set_yticks(ticks, labels=class_names, fontsize=7)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    _save(figure, path)


def _save(figure: Any, path: Path) -> None:
    try:
        atomic_write(path, lambda stream: figure.savefig(stream, format="png", dpi=100))
    finally:
        plt.close(figure)
