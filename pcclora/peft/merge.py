"""Fold adapter updates into the frozen weights (and back).

After :func:`merge_adapters` every wrapped layer runs only its ``base_layer`` (whose weight now
holds W + s·ΣD_hQ_hU_h, fused q/k/v rows included): the forward has no adapter compute left and
costs what the plain backbone costs.  :func:`unmerge_adapters` subtracts the same update again.

Methods differ in how much merges (``pcclora.peft.methods``): CLoRA, CLoRA#, LoRA and VeRA merge
completely; DAPT's scale-and-shift factors and PointLoRA's LoRA factors merge, their other parts
(adapters, prompts, shared non-linear branches, extra tokens) keep running; IDPT, PPT and
PointGST have nothing to merge.
"""

from __future__ import annotations

from torch import nn

from .layers import AdapterLinear, MergeableAdapter


def adapter_layers(model: nn.Module) -> list[tuple[str, AdapterLinear]]:
    """(name, layer) of every wrapped linear layer of ``model``."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, AdapterLinear)]


def mergeable_modules(model: nn.Module) -> list[tuple[str, MergeableAdapter]]:
    """(name, module) of everything :func:`merge_adapters` folds into weights."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, MergeableAdapter)]


def merge_adapters(model: nn.Module) -> nn.Module:
    """Merge every not-yet-merged adapter into its weight; returns ``model``.

    Models without mergeable parts (``full``, ``linear``, ``idpt``, ``ppt``, ``pointgst``) are
    returned unchanged.
    """
    for _, module in mergeable_modules(model):
        module.merge()
    return model


def unmerge_adapters(model: nn.Module) -> nn.Module:
    """Undo :func:`merge_adapters` (weights restored up to float rounding); returns ``model``."""
    for _, module in mergeable_modules(model):
        module.unmerge()
    return model


def is_merged(model: nn.Module) -> bool:
    """True when some mergeable part of ``model`` is merged."""
    return any(module.merged for _, module in mergeable_modules(model))


def merged_parameter_count(model: nn.Module) -> int:
    """Parameters the model's forward uses once merged (each shared tensor once).

    All parameters minus those that only the merged-away updates used (CLoRA's bases and
    coefficients, LoRA factors, VeRA's vectors, DAPT's foldable scale/shift factors, ...).
    """
    gone = {id(p) for _, module in mergeable_modules(model) for p in module.merged_away_parameters()}
    return sum(p.numel() for p in model.parameters() if id(p) not in gone)
