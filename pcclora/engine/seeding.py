"""Seeds and random generators of a run.

A run's randomness is a function of ``training.seed`` alone: every epoch re-seeds the global
generators from ``(seed, epoch, rank)``, and each independent use (initial weights,
augmentation, voting) draws from its own stream, so that adding one never shifts another and a
resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

#: Stream of the initial weights (a backbone built without a checkpoint is the same on rebuild).
MODEL_INIT_STREAM = 1_000_003
#: Stream of the per-batch augmentation of an epoch.
AUGMENT_STREAM = 2
#: Stream of the voting evaluation.
VOTE_STREAM = 3


def derive_seed(*parts: int) -> int:
    """A well-mixed 31-bit seed from integers (seed, epoch, rank, stream, ...)."""
    return int(np.random.SeedSequence([int(part) for part in parts]).generate_state(1)[0] >> 1)


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


def use_deterministic_algorithms(device: torch.device) -> None:
    """Turn on deterministic kernels (slower); on CUDA also the cuBLAS workspace they need."""
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True)
