"""The training loss's extra terms: CE + the method's regularisers.

Each term is ``name → (weight, value)``; the engine adds ``weight · value`` for every term to the
task loss and logs their weighted sum as ``train_reg`` (and SADE's value as ``train_sade``):

- ``sade``: CLoRA's and CLoRA#'s SADE (:func:`pcclora.sade_loss`) with ``peft.sade_weight``,
  when that is above 0;
- the terms of every module of the model that has a ``regularization_terms()`` method, computed
  during the model's last forward (PointLoRA: the entropy loss of its mask predictor, weight
  ``peft.pointlora.mask_loss_weight``).

Call it after the forward whose loss it joins.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import BASE_SPACE_METHODS
from .sade import sade_loss


def regularization_terms(model: nn.Module) -> dict[str, tuple[float, torch.Tensor]]:
    """``{name: (weight, value)}`` of the adapted ``model`` (empty when it has none)."""
    config = getattr(model, "peft_config", None) or {}
    terms: dict[str, tuple[float, torch.Tensor]] = {}
    sade_weight = float(config.get("sade_weight") or 0.0)
    if config.get("method") in BASE_SPACE_METHODS and sade_weight > 0:
        terms["sade"] = (sade_weight, sade_loss(model))
    for module in model.modules():
        method = getattr(module, "regularization_terms", None)
        if method is not None and module is not model:
            terms.update(method())
    return terms


def regularization_loss(model: nn.Module) -> torch.Tensor:
    """Σ weight · value over :func:`regularization_terms`: a scalar (0 when there is none)."""
    total = None
    for weight, value in regularization_terms(model).values():
        total = weight * value if total is None else total + weight * value
    if total is None:
        reference = next(model.parameters(), None)
        return torch.zeros((), device=reference.device if reference is not None else None)
    return total
