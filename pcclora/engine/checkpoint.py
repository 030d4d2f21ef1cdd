"""Run checkpoints: only trained tensors plus the state needed to resume, written atomically.

A run checkpoint is ``torch.save`` of a dict::

    {"format": "pcclora-run", "version": 1,
     "adapter": pcclora.adapter_state_dict(model),   # adapters, head, trained extras, peft config
     "optimizer": ..., "scheduler": {...}, "rng": {...},
     "config": resolved config, "epoch": last finished epoch,
     "metrics": {...}, "history": [per-epoch rows]}

It never holds the frozen backbone: the model is rebuilt from the config (and its backbone
checkpoint or seed) and the adapter tensors are loaded on top.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backbones.checkpoint import read_checkpoint
from backbones.errors import CheckpointError

RUN_CHECKPOINT_FORMAT = "pcclora-run"


def save_atomic(obj: Any, path: Path | str) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``.

    A crash or Ctrl-C while writing leaves the previous file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(obj, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def rng_state() -> dict[str, Any]:
    """The state of every random generator a run uses (python, numpy, torch CPU and CUDA)."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Undo :func:`rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_checkpoint_file(path: Path | str) -> dict[str, Any]:
    """Read a checkpoint on the CPU (:func:`backbones.checkpoint.read_checkpoint`).

    Raises:
        CheckpointError: the file is missing, unreadable, or not a dict.
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


def read_run_checkpoint(path: Path | str) -> dict[str, Any]:
    """Read a checkpoint the fine-tuning engine wrote.

    Raises:
        CheckpointError: missing or unreadable file, or a file that is not a run checkpoint.
    """
    checkpoint = read_checkpoint_file(path)
    if not is_run_checkpoint(checkpoint):
        raise CheckpointError(
            f"{path} is not a pcclora run checkpoint (no 'format': '{RUN_CHECKPOINT_FORMAT}' entry); "
            "pass a file from <run folder>/checkpoints/"
        )
    return checkpoint
