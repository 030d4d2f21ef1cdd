"""Fold adapter updates into the frozen weights (and back).

After :func:`merge_adapters` every wrapped layer runs only its ``base_layer`` (whose weight now
holds W + s·ΣD_hQ_hU_h, fused q/k/v rows included): the forward has no adapter compute left and
costs what the plain backbone costs.  :func:`unmerge_adapters` subtracts the same update again.
"""

from __future__ import annotations

from torch import nn

from .layers import AdapterLinear


def adapter_layers(model: nn.Module) -> list[tuple[str, AdapterLinear]]:
    """(name, layer) of every wrapped layer of ``model``."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, AdapterLinear)]


def merge_adapters(model: nn.Module) -> nn.Module:
    """Merge every not-yet-merged adapter into its weight; returns ``model``.

    Models without wrapped layers (``full``, ``linear``) are returned unchanged.
    """
    for _, layer in adapter_layers(model):
        layer.merge()
    return model


def unmerge_adapters(model: nn.Module) -> nn.Module:
    """Undo :func:`merge_adapters` (weights restored up to float rounding); returns ``model``."""
    for _, layer in adapter_layers(model):
        layer.unmerge()
    return model


def is_merged(model: nn.Module) -> bool:
    """True when some wrapped layer of ``model`` is merged."""
    return any(layer.merged for _, layer in adapter_layers(model))
