"""Profile one model: parameters, multiply-adds in the published and fvcore conventions, FLOPs.

>>> import backbones, torch, pcclora
>>> model = backbones.create_backbone("point_mae", num_classes=15)     # doctest: +SKIP
>>> stats = pcclora.profile(model, torch.rand(1, 2048, 3))              # doctest: +SKIP
>>> round(stats["macs_conv_linear"] / 1e9, 3)                           # doctest: +SKIP
4.761

Conventions (all views of one ``FlopCounterMode`` pass, :mod:`pcclora.profiling.counting`):

- ``macs_conv_linear``: multiply-adds of Conv/Linear layers (adapters included) — the "GFLOPs"
  of the published point-cloud PEFT tables (:mod:`pcclora.profiling.published`,
  docs/published.md);
- ``macs_with_attention``: plus the attention products q·kᵀ and attn·v and fvcore's
  normalisation-layer figures — what ``fvcore.nn.FlopCountAnalysis`` reports;
- ``flops``: 2 per multiply-add of all of the above;
- ``tokenizer_flops_estimate``: FPS + kNN, which no counter sees, estimated analytically
  (:mod:`pcclora.profiling.tokenizer_cost`) and kept out of the three figures above.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pcclora.peft import count_parameters

from .counting import count_compute, is_tokenizer
from .tokenizer_cost import tokenizer_flops_estimate

__all__ = ["compute_figures", "profile"]


def _tokenizer_estimate(model: nn.Module, points: torch.Tensor) -> int:
    tokenizers = [module for module in model.modules() if is_tokenizer(module)]
    return sum(
        tokenizer_flops_estimate(points.shape[1], module.num_group, module.group_size, points.shape[0])
        for module in tokenizers
    )


def compute_figures(model: nn.Module, points: torch.Tensor) -> dict[str, Any]:
    """The compute keys of :func:`profile` (no parameter counts).

    Args:
        model: a point-cloud model, ``model(points)`` runs its forward.
        points: (B, N, 3) input; figures are for this batch size (the tables use B = 1).
    """
    count = count_compute(model, points)
    return {
        "macs_conv_linear": count.macs_conv_linear,
        "macs_with_attention": count.macs_with_attention,
        "flops": count.flops,
        "macs_attention": count.attention,
        "macs_norm": count.norm,
        "tokenizer_flops_estimate": _tokenizer_estimate(model, points),
        "per_module": count.per_module,
    }


def profile(model: nn.Module, points: torch.Tensor) -> dict[str, Any]:
    """Parameters and compute of ``model`` for the input ``points`` (eval mode, no gradient).

    Args:
        model: a backbone, adapted (``pcclora.apply_peft``) or not, merged or not.
        points: (B, N, 3) float tensor on the model's device.

    Returns:
        ``params_total``, ``params_trainable``, ``breakdown`` (the parameter groups of
        :func:`pcclora.count_parameters`), ``batch_size``, ``npoints`` and the compute keys of
        :func:`compute_figures` (raw counts, not billions).
    """
    params = count_parameters(model)
    return {
        "params_total": params["total"],
        "params_trainable": params["trainable"],
        "breakdown": dict(params["groups"]),
        "batch_size": points.shape[0],
        "npoints": points.shape[1],
        **compute_figures(model, points),
    }
