"""Run checkpoints and merged exports: written atomically, read back for --resume and test.py.

A run checkpoint is ``torch.save`` of a dict::

    {"format": "pcclora-run",
     "adapter": pcclora.adapter_state_dict(model),   # adapters, head, trained extras, peft config
     "optimizer": ..., "rng": {...},
     "config": resolved config, "epoch": last finished epoch,
     "history": [per-epoch rows],
     "pcclora_model": {backbone, sizes, num_classes, class_names, method, npoints, dataset}}

The entry of the trained tensors is the task's (:attr:`pcclora.engine.task.Task.checkpoint_entry`):
``adapter`` for fine-tuning, ``base_model`` (the whole network in the official layout) for
pre-training. A fine-tuning checkpoint never holds the frozen backbone: the model is rebuilt
from the config (and its backbone checkpoint or seed) and the adapter tensors are loaded on top.
The learning-rate schedule is a function of the config and the epoch, so it needs no state of
its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from backbones.checkpoint import MODEL_INFO_KEY, read_checkpoint
from backbones.errors import CheckpointError, ConfigError
from pcclora import __version__
from pcclora.config import config_from_dict, size_overrides
from pcclora.engine.files import atomic_write
from pcclora.engine.seeding import rng_state
from pcclora.peft import adapter_state_dict, export_merged_state_dict

RUN_CHECKPOINT_FORMAT = "pcclora-run"


def save_atomic(obj: Any, path: Path | str) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``.

    A crash or Ctrl-C while writing leaves the previous file intact
    (:func:`pcclora.engine.files.atomic_write`).
    """
    return atomic_write(path, lambda stream: torch.save(obj, stream))


def read_checkpoint_file(path: Path | str) -> dict[str, Any]:
    """Read a checkpoint on the CPU (:func:`backbones.checkpoint.read_checkpoint`).

    Raises:
        CheckpointError: the file is missing, unreadable, damaged, or not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} not found; fine-tuning writes <run folder>/checkpoints/last.pth and "
            "best.pth (python tools/finetune.py --cfg ... --output DIR)"
        )
    return read_checkpoint(path)


def is_run_checkpoint(checkpoint: dict[str, Any]) -> bool:
    """True for a dict written by the fine-tuning engine (as opposed to an official model file)."""
    return checkpoint.get("format") == RUN_CHECKPOINT_FORMAT


#: The entries of every run checkpoint and their types (besides the task's trained tensors).
RUN_CHECKPOINT_ENTRIES = {
    "optimizer": dict,
    "rng": dict,
    "config": dict,
    "epoch": int,
    "history": list,
}


def trained_entry(checkpoint: dict[str, Any], path: Path | str) -> str:
    """The entry that holds a run checkpoint's trained tensors: its task's ``checkpoint_entry``.

    Raises:
        CheckpointError: the saved config names a task that does not exist.
    """
    from pcclora.engine.task import get_task  # the tasks import this module

    config = checkpoint.get("config")
    name = config.get("task", "classification") if isinstance(config, dict) else "classification"
    try:
        return get_task(str(name)).checkpoint_entry
    except ConfigError as error:
        raise CheckpointError(f"{path}: its config names {error}; it was written by another pcclora") from None


def check_run_checkpoint(checkpoint: dict[str, Any], path: Path | str) -> dict[str, Any]:
    """Return ``checkpoint`` when it holds every entry of a run checkpoint with the right type.

    Raises:
        CheckpointError: an entry is missing or of another type (the file is damaged or was
            written by something else).
    """
    entries = {trained_entry(checkpoint, path): dict, **RUN_CHECKPOINT_ENTRIES}
    wrong = [
        f"{key!r} ({'missing' if key not in checkpoint else type(checkpoint[key]).__name__}, expected {kind.__name__})"
        for key, kind in entries.items()
        if not isinstance(checkpoint.get(key), kind)
    ]
    if not wrong and not all(
        isinstance(row, dict) and isinstance(row.get("epoch"), int) for row in checkpoint["history"]
    ):
        wrong = ["'history' (rows without an 'epoch')"]
    if wrong:
        raise CheckpointError(
            f"{path} is marked as a pcclora run checkpoint but its entries are wrong: {', '.join(wrong)}; "
            "the file is damaged or was not written by pcclora; use another checkpoint of the run"
        )
    return checkpoint


def read_run_checkpoint(path: Path | str) -> dict[str, Any]:
    """Read a checkpoint the fine-tuning engine wrote.

    Raises:
        CheckpointError: missing, unreadable or damaged file, a file that is not a run checkpoint,
            or one whose entries are missing or of the wrong type.
    """
    checkpoint = read_checkpoint_file(path)
    if not is_run_checkpoint(checkpoint):
        raise CheckpointError(
            f"{path} is not a pcclora run checkpoint (no 'format': '{RUN_CHECKPOINT_FORMAT}' entry); "
            "pass a file from <run folder>/checkpoints/"
        )
    return check_run_checkpoint(checkpoint, path)


def model_info(config: dict[str, Any], num_classes: int, class_names: list[str] | None) -> dict[str, Any]:
    """What rebuilding the trained model needs, stored under ``backbones.checkpoint.MODEL_INFO_KEY``.

    ``backbone`` and ``sizes`` (official config names) rebuild the network, ``num_classes`` and
    ``class_names`` name its outputs, ``npoints`` and ``dataset`` say how its input was prepared.
    """
    return {
        "backbone": config["backbone"]["name"],
        "sizes": size_overrides(config["backbone"]),
        "num_classes": int(num_classes),
        "class_names": list(class_names) if class_names else None,
        "method": config["peft"]["method"],
        "npoints": config["dataset"]["npoints"],
        "dataset": config["dataset"]["name"],
        "pcclora_version": __version__,
    }


def run_checkpoint_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: dict[str, Any],
    epoch: int,
    history: list[dict[str, Any]],
    info: dict[str, Any] | None = None,
    trained: tuple[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The dict :func:`save_atomic` writes as ``last.pth`` / ``best.pth`` after ``epoch``.

    ``info`` (:func:`model_info`) lets inference tools name the classes without the data.
    ``trained``: ``(entry, tensors)`` of the run's task; None = ``("adapter",
    adapter_state_dict(model))``, what fine-tuning saves.
    """
    entry, tensors = trained if trained is not None else ("adapter", adapter_state_dict(model))
    return {
        MODEL_INFO_KEY: info,
        "format": RUN_CHECKPOINT_FORMAT,
        entry: tensors,
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(),
        "config": config,
        "epoch": epoch,
        "history": [dict(row) for row in history],
    }


def load_run_for_resume(run_folder: Path | str, overrides: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The saved config of a run (with ``overrides`` applied) and its ``last.pth``.

    Nothing is written: whether the overrides fit the run's checkpoint (e.g. ``peft.rank``) is
    checked by :func:`pcclora.engine.finetune` before it writes anything.

    Raises:
        CheckpointError: the folder has no ``checkpoints/last.pth``, or it is unreadable or damaged.
        ConfigError: an override is unknown or of the wrong type.
    """
    path = Path(run_folder) / "checkpoints" / "last.pth"
    if not path.is_file():
        raise CheckpointError(
            f"cannot resume: {path} not found; --resume continues the run in --output DIR, which must be "
            "the folder of an earlier run that finished at least one epoch (to start a run there again, "
            "give --cfg ... --overwrite instead)"
        )
    checkpoint = read_run_checkpoint(path)
    saved = checkpoint["config"]
    config = config_from_dict(saved, overrides, name=saved.get("name", "config"))
    return config, checkpoint


def export_merged(model: nn.Module, path: Path | str, info: dict[str, Any] | None = None) -> Path:
    """Write ``{'base_model': merged state dict, MODEL_INFO_KEY: info}`` atomically.

    ``base_model`` is the official fine-tuned layout (the official code reads only that entry);
    ``info`` (:func:`model_info`) lets ``backbones.create_backbone(name, checkpoint=PATH)`` rebuild
    any size and ``pcclora.predict`` name the classes.
    """
    state = {"base_model": export_merged_state_dict(model)}
    if info is not None:
        state[MODEL_INFO_KEY] = info
    return save_atomic(state, path)
