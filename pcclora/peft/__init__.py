"""Parameter-efficient fine-tuning: CLoRA, CLoRA# (``clora_shared``), LoRA, full, linear probe.

Typical use::

    model = pcclora.apply_peft(backbone, {"method": "clora", "rank": 8, "num_bases": 4})
    loss = criterion(model(points), labels) + 0.1 * pcclora.sade_loss(model)

The modules, one job each: :mod:`.config` (the ``peft:`` block), :mod:`.bases` (owner of the
shared base spaces), :mod:`.layers` (wrapped linear layers), :mod:`.inject` (``apply_peft``),
:mod:`.sade` (the SADE regulariser), :mod:`.merge`, :mod:`.state` (adapter checkpoints and the
merged export), :mod:`.params` (parameter counts).
"""

from __future__ import annotations

from backbones.errors import ConfigError as PeftConfigError  # the name this package used to raise
from backbones.errors import StateError as PeftStateError

from .config import PEFT_METHODS, resolve_peft_config
from .inject import apply_peft
from .merge import merge_adapters, unmerge_adapters
from .params import count_parameters
from .sade import sade_loss
from .state import adapter_state_dict, export_merged_state_dict, load_adapter_state_dict

__all__ = [
    "PEFT_METHODS",
    "PeftConfigError",
    "PeftStateError",
    "adapter_state_dict",
    "apply_peft",
    "count_parameters",
    "export_merged_state_dict",
    "load_adapter_state_dict",
    "merge_adapters",
    "resolve_peft_config",
    "sade_loss",
    "unmerge_adapters",
]
