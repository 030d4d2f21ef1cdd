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
from pcclora.engine.checkpoint import model_info
from pcclora.engine.data import RunData, test_loader
from pcclora.engine.distributed import DistributedContext
from pcclora.engine.model import load_official_model, unwrap
from pcclora.engine.progress import Progress
from pcclora.peft import adapter_state_dict, load_adapter_state_dict
from pcclora.peft.state import trained_keys


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
    among equals). An epoch that :meth:`evaluates_after` says is not evaluated has ``None`` for
    every metric and is never the best.

    The hooks below the abstract methods have the defaults of fine-tuning a classifier with an
    adapter method (the run checkpoint holds ``pcclora.adapter_state_dict``); a task that trains
    something else overrides them.
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
    #: the run checkpoint's entry that holds :meth:`trained_state`.
    checkpoint_entry: ClassVar[str] = "adapter"
    #: whether the summary line flags a run without ``backbone.checkpoint`` as starting from
    #: random weights (pointless for pre-training, which usually starts there).
    warn_random_backbone: ClassVar[bool] = True
    #: the file name of ``--export`` in the run folder, and what the log calls the export.
    export_name: ClassVar[str] = "model_merged.pth"
    export_description: ClassVar[str] = "the merged model (official fine-tuned layout)"

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

    def describe_data(self, data: RunData) -> str:
        """The log line that says what the run reads."""
        return f"data: {len(data.train)} train / {len(data.test)} test samples, {data.num_classes} classes"

    def output_classes(self, model: nn.Module, data: RunData) -> int:
        """The number of classes the summary reports (the model's head)."""
        return unwrap(model).num_classes

    # -- what a run checkpoint holds -----------------------------------------------------------

    def trained_state(self, model: nn.Module) -> dict[str, Any]:
        """What training changed, saved under :attr:`checkpoint_entry` (default: the adapter state dict)."""
        return adapter_state_dict(model)

    def load_trained_state(self, model: nn.Module, state: dict[str, Any]) -> None:
        """Put :meth:`trained_state` back into a freshly built model.

        Raises:
            CheckpointError: the state does not fit the model.
        """
        load_adapter_state_dict(model, state)

    def trained_keys(self, model: nn.Module) -> list[str]:
        """The state-dict keys training changes (checked to be finite after every epoch)."""
        return trained_keys(model)

    def model_info(self, config: dict[str, Any], model: nn.Module, data: RunData) -> dict[str, Any]:
        """What rebuilding the trained model needs (stored in checkpoints and exports)."""
        return model_info(config, self.output_classes(model, data), data.class_names)

    def load_model_file(self, path: Path, config: dict[str, Any], data: RunData) -> nn.Module:
        """A model from a file that is not a run checkpoint (``test.py --ckpt official.pth --cfg ...``)."""
        return load_official_model(path, config, data.num_classes)

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

    def eval_loader(self, data: RunData, config: dict[str, Any], context: DistributedContext) -> Any:
        """What :meth:`evaluate` and :meth:`vote` receive: the test loader of this rank's share."""
        training = config["training"]
        return test_loader(data.test, training["test_batch_size"], context, training["num_workers"])

    def evaluates_after(self, epoch: int, config: dict[str, Any]) -> bool:
        """Whether epoch ``epoch`` is evaluated (default: every epoch)."""
        return True

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

    def epoch_line(self, row: Mapping[str, Any], best: Mapping[str, Any] | None, max_epoch: int) -> str:
        """The log line of a finished epoch (``best``: the best evaluated row so far, or None)."""
        figures = "  ".join(
            f"{metric.label} {row[metric.key]:6.2f}" for metric in self.metrics if row[metric.key] is not None
        )
        best_text = f"(best {self.primary.label} {best[self.primary.key]:.2f} @ {best['epoch']})  " if best else ""
        return (
            f"epoch {row['epoch']:3d}/{max_epoch}  lr {row['lr']:.2e}  loss {row['train_loss']:.4f}  "
            f"{figures + '  ' if figures else ''}{best_text}{row['epoch_seconds']:.1f}s"
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
#: Modules of the built-in tasks; they register themselves when imported.
BUILTIN_TASK_MODULES = ("pcclora.engine.classification", "pcclora.engine.pretraining")


def _import_builtin_tasks() -> None:
    import importlib

    for module in BUILTIN_TASK_MODULES:
        importlib.import_module(module)


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
    """The registered task names (the built-in ones are imported first)."""
    _import_builtin_tasks()
    return sorted(_TASKS)


def get_task(name: str) -> Task:
    """A new instance of the task ``name``.

    Raises:
        UnknownNameError: ``name`` is not registered.
    """
    if name not in _TASKS:
        _import_builtin_tasks()
    if name not in _TASKS:
        raise UnknownNameError(unknown_name_message("task", name, list_tasks()))
    return _TASKS[name]()
