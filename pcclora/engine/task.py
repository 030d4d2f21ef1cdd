"""What kind of run a config asks for: the engine's one extension point.

The runner (:mod:`pcclora.engine.runner`) owns everything every run shares — the run folder and
its lock, seeding, the optimizer and the schedule, resuming, checkpoints, NaN guards, Ctrl-C,
DDP, progress, metrics.csv, curves and the summary. A :class:`Task` owns what differs between
classification fine-tuning, self-supervised pre-training and part segmentation: the data, the
model, one training epoch, the evaluation, the metric that picks the best epoch, the export and
the task's own figures. A config names its task with the top-level key ``task``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader

from backbones.errors import ConfigError, UnknownNameError, unknown_name_message
from pcclora.engine.data import RunData
from pcclora.engine.distributed import DistributedContext
from pcclora.engine.progress import Progress


@dataclass
class Evaluation:
    """One evaluation of a model.

    Attributes:
        metrics: figures for the epoch's history row, named as the task's ``eval_columns``.
        details: what the task's final plots and the test report need (e.g. a confusion matrix).
    """

    metrics: dict[str, float]
    details: Any = None


@dataclass(frozen=True)
class Metric:
    """An evaluation figure of the history.

    Attributes:
        key: its history / metrics.csv column (``test_oa``).
        name: its summary.json name (``best_<name>``, ``last_<name>``, ``vote_<name>``).
        label: how the log, the summary line and the plots call it (``OA``).
    """

    key: str
    name: str
    label: str


class Task(ABC):
    """One kind of run. Subclasses set the class attributes and implement the abstract methods.

    The history row of an epoch is ``{"epoch", "lr", **train figures, **evaluation metrics,
    "epoch_seconds"}``; the best epoch has the highest :attr:`primary` metric (the earliest
    among equals).
    """

    #: the name a config gives in ``task:``.
    name: ClassVar[str]
    #: the evaluation figures, the first one ranks the epochs.
    metrics: ClassVar[tuple[Metric, ...]]
    #: the training figures of an epoch (``train_loss`` first).
    train_columns: ClassVar[tuple[str, ...]]
    #: whether ``training.vote`` applies.
    supports_voting: ClassVar[bool] = False
    #: the tool that runs it (``python tools/<tool>.py``), for the messages that say how to resume.
    tool: ClassVar[str] = "finetune"

    @property
    def primary(self) -> Metric:
        """The metric whose highest value is the best epoch."""
        return self.metrics[0]

    # -- building --------------------------------------------------------------------------

    @abstractmethod
    def build_data(self, config: dict[str, Any], log: Callable[[str], None], with_train: bool = True) -> RunData:
        """The splits of the configured dataset (``with_train=False``: the test split only)."""

    @abstractmethod
    def build_model(self, config: dict[str, Any], data: RunData, log: Callable[[str], None]) -> nn.Module:
        """The model of the run on the CPU, with its trainable set marked."""

    def sample_input(self, data: RunData, config: dict[str, Any]) -> torch.Tensor:
        """One (1, N, 3) input for the start-of-run compute profile."""
        return data.test[0][0][None, : config["dataset"]["npoints"], :3]

    # -- one epoch ---------------------------------------------------------------------------

    @abstractmethod
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
        """Train one pass; returns the epoch's :attr:`train_columns` (means over batches and ranks)."""

    @abstractmethod
    def evaluate(
        self,
        model: nn.Module,
        loader: DataLoader,
        config: dict[str, Any],
        context: DistributedContext,
        progress: Progress | None = None,
    ) -> Evaluation:
        """Evaluate on the test loader; :class:`~backbones.errors.NonFiniteError` on non-finite outputs."""

    def vote(
        self,
        model: nn.Module,
        loader: DataLoader,
        config: dict[str, Any],
        votes: int,
        generator: torch.Generator,
        context: DistributedContext,
    ) -> Evaluation:
        """An N-vote evaluation (only tasks with :attr:`supports_voting`)."""
        raise ConfigError(f"training.vote is not available for task {self.name!r}; set it to 0")

    # -- reporting ---------------------------------------------------------------------------

    def epoch_line(self, row: Mapping[str, Any], best: Mapping[str, Any], max_epoch: int) -> str:
        """The log line of a finished epoch."""
        figures = "  ".join(f"{metric.label} {row[metric.key]:6.2f}" for metric in self.metrics)
        return (
            f"epoch {row['epoch']:3d}/{max_epoch}  lr {row['lr']:.2e}  loss {row['train_loss']:.4f}  {figures}  "
            f"(best {self.primary.label} {best[self.primary.key]:.2f} @ {best['epoch']})  {row['epoch_seconds']:.1f}s"
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
        """Write the task's own figures of the last evaluation into the run folder (default: none)."""
        return None

    def details_report(self, evaluation: Evaluation, data: RunData) -> dict[str, Any]:
        """Extra entries of ``test.py``'s result (e.g. per-class figures); default none."""
        return {}

    def export(self, model: nn.Module, path: Path, info: dict[str, Any]) -> Path:
        """Write the trained model for use elsewhere (the official layout); returns the path."""
        raise ConfigError(f"--export is not available for task {self.name!r}")


_TASKS: dict[str, Callable[[], Task]] = {}


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    """Class decorator: register a :class:`Task` under ``name`` (the config's ``task:`` value)."""

    def add(cls: type[Task]) -> type[Task]:
        if name in _TASKS:
            raise ValueError(f"a task named {name!r} is already registered")
        cls.name = name
        _TASKS[name] = cls
        return cls

    return add


def list_tasks() -> list[str]:
    """The registered task names."""
    return sorted(_TASKS)


def get_task(name: str) -> Task:
    """A new instance of the task ``name``.

    Raises:
        UnknownNameError: ``name`` is not registered.
    """
    if name not in _TASKS:
        raise UnknownNameError(unknown_name_message("task", name, list_tasks()))
    return _TASKS[name]()
