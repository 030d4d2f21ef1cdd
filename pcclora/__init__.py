"""pcclora: CLoRA and other parameter-efficient fine-tuning of point-cloud transformers.

The public functions are imported lazily so that ``import pcclora`` stays light and a tool
that needs only one part does not load the others.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "apply_peft": "pcclora.peft",
    "sade_loss": "pcclora.peft",
    "regularization_loss": "pcclora.peft",
    "merge_adapters": "pcclora.peft",
    "unmerge_adapters": "pcclora.peft",
    "adapter_state_dict": "pcclora.peft",
    "load_adapter_state_dict": "pcclora.peft",
    "export_merged_state_dict": "pcclora.peft",
    "count_parameters": "pcclora.peft",
    "resolve_peft_config": "pcclora.peft",
    "PEFT_METHODS": "pcclora.peft",
    "profile": "pcclora.profiling",
    "load_config": "pcclora.config",
    "predict": "pcclora.prediction",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pcclora' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
