"""The fine-tuning engine: one module per job.

- :mod:`~pcclora.engine.schedule` per-epoch cosine lr with warm-up (timm semantics)
- :mod:`~pcclora.engine.optim` AdamW with the reference's weight-decay groups
- :mod:`~pcclora.engine.data` datasets, loaders, per-epoch seeding
- :mod:`~pcclora.engine.model` backbone + peft method, rebuilt reproducibly
- :mod:`~pcclora.engine.trainer` one training epoch
- :mod:`~pcclora.engine.evaluate` test accuracy, N-vote averaging
- :mod:`~pcclora.engine.metrics` OA, mean class accuracy, confusion
- :mod:`~pcclora.engine.checkpoint` atomic run checkpoints of trained tensors
- :mod:`~pcclora.engine.run_folder`, :mod:`~pcclora.engine.plots` the run's files
- :mod:`~pcclora.engine.distributed` DDP under torchrun
- :mod:`~pcclora.engine.runner` :func:`finetune` and :func:`evaluate_checkpoint`

The runner's functions are imported on first use, so that a building block (``import
pcclora.engine.optim``) can be used without loading the runner and all it needs (plots, data,
progress bars).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "evaluate_checkpoint": "pcclora.engine.runner",
    "export_merged": "pcclora.engine.runner",
    "finetune": "pcclora.engine.runner",
    "load_run_for_resume": "pcclora.engine.runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pcclora.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
