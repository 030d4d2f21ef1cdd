"""SADE (sample-agnostic diversity enhancement) through r×r Gram matrices.

For layer j and bases h ≠ k, with B_h = D_h Q_h^j U_h (d_in × d_out, DESIGN.md):

    sim(h, k) = ‖B_hᵀ B_k‖²_F / (‖B_hᵀ B_h‖_F · ‖B_kᵀ B_k‖_F + ε)

and L_SADE = mean over layers of the mean over pairs h < k.  Nothing of size d×d is formed:
with M_hk = Q_hᵀ (D_hᵀ D_k) Q_k (r × r) we have B_hᵀ B_k = U_hᵀ M_hk U_k, hence

    ‖B_hᵀ B_k‖²_F = tr(U_kᵀ M_hkᵀ U_h U_hᵀ M_hk U_k)
                  = tr(M_hkᵀ (U_h U_hᵀ) M_hk (U_k U_kᵀ))      (cyclic trace).

So a family needs the Grams D_hᵀ D_k (all pairs, one (p·r)² matmul over d_in) and U_h U_hᵀ
(diagonal blocks only), shared by all its layers: cost O(p²·d·r² + m·p²·r³).  The diagonal
h = k of the same formula gives ‖B_hᵀ B_h‖²_F.  The scaling s cancels in the normalised value
and is left out of B_h (as in the definition).  ε = 1e-8 keeps the ratio defined at
initialisation (every Q zero gives 0, with zero gradient).

``sade_normalized: false`` gives the unnormalised variant: the same means of ‖B_hᵀ B_k‖²_F.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import CLoRALinear

SADE_EPS = 1e-8


def branch_similarity(
    down: torch.Tensor,
    up: torch.Tensor,
    coefficients: torch.Tensor,
    *,
    normalized: bool = True,
    eps: float = SADE_EPS,
) -> torch.Tensor:
    """Per-layer mean over pairs h < k of sim(h, k) (or of ‖B_hᵀB_k‖²_F when not normalised).

    Args:
        down: D of the family, (p, d_in, r).
        up: U of the family, (p, r, d_out).
        coefficients: Q of L layers, (L, p, r, r).

    Returns:
        (L,) tensor; zeros when p < 2 (no pairs).
    """
    num_bases = down.shape[0]
    if num_bases < 2:
        return coefficients.new_zeros(coefficients.shape[0])
    gram_down = torch.einsum("hir,kis->hkrs", down, down)  # D_hᵀ D_k, (p, p, r, r)
    gram_up = torch.einsum("hro,hso->hrs", up, up)  # U_h U_hᵀ, (p, r, r)
    cross = torch.einsum("lhab,hkac,lkcd->lhkbd", coefficients, gram_down, coefficients)
    sandwiched = torch.einsum("hab,lhkbc,kcd->lhkad", gram_up, cross, gram_up)
    squared = (cross * sandwiched).sum(dim=(-2, -1))  # ‖B_hᵀ B_k‖²_F, (L, p, p)
    first, second = torch.triu_indices(num_bases, num_bases, offset=1, device=down.device)
    pairs = squared[:, first, second]  # (L, p(p-1)/2)
    if normalized:
        # clamp: sqrt has an infinite slope at 0 (all-zero Q at initialisation)
        self_norms = squared.diagonal(dim1=1, dim2=2).clamp_min(torch.finfo(squared.dtype).tiny)
        self_norms = self_norms.sqrt()  # ‖B_hᵀ B_h‖_F, (L, p)
        pairs = pairs / (self_norms[:, first] * self_norms[:, second] + eps)
    return pairs.mean(dim=-1)


def sade_loss(model: nn.Module, *, eps: float = SADE_EPS) -> torch.Tensor:
    """L_SADE of an adapted model: mean over all CLoRA layers (a fused qkv counts three).

    Returns a scalar tensor; 0 for models without shared bases (lora, full, linear, plain).
    The engine adds ``sade_weight * sade_loss(model)`` to the task loss.
    """
    config = getattr(model, "peft_config", None) or {}
    normalized = config.get("sade_normalized", True)
    layers_by_family: dict[int, list[CLoRALinear]] = {}
    for module in model.modules():
        if isinstance(module, CLoRALinear):
            layers_by_family.setdefault(id(module.family), []).append(module)
    if not layers_by_family:
        reference = next(model.parameters(), None)
        return torch.zeros((), device=reference.device if reference is not None else None)
    totals = []
    num_layers = 0
    for layers in layers_by_family.values():
        family = layers[0].family
        layer_count = sum(layer.num_splits for layer in layers)
        if family.shared_coefficients is not None:
            # CLoRA#: every layer of the family has the same branches; weight by their count
            coefficients = family.shared_coefficients.unsqueeze(0)
            weight = layer_count
        else:
            coefficients = torch.cat([layer.coefficients for layer in layers])
            weight = 1
        values = branch_similarity(
            family.down_bases(), family.up_bases(), coefficients, normalized=normalized, eps=eps
        )
        totals.append(values.sum() * weight)
        num_layers += layer_count
    return torch.stack(totals).sum() / num_layers
