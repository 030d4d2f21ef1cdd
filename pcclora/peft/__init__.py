"""Parameter-efficient fine-tuning: CLoRA, CLoRA# (``clora_shared``), LoRA, full, linear probe,
and the point-cloud peers IDPT, DAPT, PPT, PointGST, PointLoRA, with VeRA.

Typical use::

    model = pcclora.apply_peft(backbone, {"method": "clora", "rank": 8, "num_bases": 4})
    loss = criterion(model(points), labels) + pcclora.regularization_loss(model)  # 0.1 · SADE here

The modules, one job each: :mod:`.config` (the ``peft:`` block), :mod:`.options` (method option
blocks), :mod:`.methods` (the registry of methods), :mod:`.bases` (owner of the shared base
spaces), :mod:`.layers` (wrapped layers), :mod:`.hooks` (what forward-changing methods need from
a backbone), :mod:`.inject` (``apply_peft``), one module per peer (:mod:`.idpt`, :mod:`.dapt`,
:mod:`.ppt`, :mod:`.pointgst`, :mod:`.pointlora`, :mod:`.vera`), :mod:`.sade` (the SADE
regulariser), :mod:`.regularization` (CE + the method's regularisers), :mod:`.merge`,
:mod:`.state` (adapter checkpoints and the merged export), :mod:`.params` (parameter counts).
"""

from __future__ import annotations

from backbones.errors import ConfigError as PeftConfigError  # the name this package used to raise
from backbones.errors import StateError as PeftStateError

from .config import PEFT_METHODS, resolve_peft_config
from .inject import apply_peft
from .merge import merge_adapters, unmerge_adapters
from .methods import METHODS, method_spec
from .params import count_parameters
from .regularization import regularization_loss, regularization_terms
from .sade import sade_loss
from .state import adapter_state_dict, export_merged_state_dict, load_adapter_state_dict

__all__ = [
    "METHODS",
    "PEFT_METHODS",
    "PeftConfigError",
    "PeftStateError",
    "adapter_state_dict",
    "apply_peft",
    "count_parameters",
    "export_merged_state_dict",
    "load_adapter_state_dict",
    "merge_adapters",
    "method_spec",
    "regularization_loss",
    "regularization_terms",
    "resolve_peft_config",
    "sade_loss",
    "unmerge_adapters",
]
