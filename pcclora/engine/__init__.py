"""The fine-tuning engine: one module per job.

- :mod:`~pcclora.engine.runner` :func:`finetune` and :func:`evaluate_checkpoint`, the two jobs of the tools
- :mod:`~pcclora.engine.trainer` one training epoch
- :mod:`~pcclora.engine.evaluate` test accuracy, N-vote averaging
- :mod:`~pcclora.engine.metrics` OA, mean class accuracy, confusion
- :mod:`~pcclora.engine.data` datasets and loaders of a run (per-epoch order)
- :mod:`~pcclora.engine.model` backbone + peft method, rebuilt reproducibly
- :mod:`~pcclora.engine.optim` AdamW with the official recipe's weight-decay groups
- :mod:`~pcclora.engine.schedule` per-epoch cosine lr with warm-up (timm semantics)
- :mod:`~pcclora.engine.losses` cross-entropy with the official label smoothing
- :mod:`~pcclora.engine.seeding` seeds, random streams, RNG state, deterministic kernels
- :mod:`~pcclora.engine.checkpoint` run checkpoints (write, read, resume) and the merged export
- :mod:`~pcclora.engine.run_folder` the run's files, the checks of the paths it writes, the folder's rules and lock
- :mod:`~pcclora.engine.files` atomic writes, temporaries of interrupted writes
- :mod:`~pcclora.engine.summary` best / last epoch summary
- :mod:`~pcclora.engine.plots` curves and confusion matrix
- :mod:`~pcclora.engine.distributed` DDP under torchrun

Devices and bf16 autocast are shared with the profiler and the benchmark: :mod:`pcclora.device`.
The runner's functions are imported on first use, so that a building block (``import
pcclora.engine.optim``) can be used without loading the runner and all it needs (plots, data,
progress bars).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "evaluate_checkpoint": "pcclora.engine.runner",
    "export_merged": "pcclora.engine.checkpoint",
    "finetune": "pcclora.engine.runner",
    "load_run_for_resume": "pcclora.engine.checkpoint",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pcclora.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
