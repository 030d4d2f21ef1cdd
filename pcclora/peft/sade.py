"""SADE (sample-agnostic diversity enhancement) through r×r Gram matrices.

For layer j and bases h ≠ k, with B_h = D_h Q_h^j U_h (d_in × d_out, docs/method.md):

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

:func:`sade_loss_dense` (:func:`branch_similarity_dense` per family) is the slow reference for
tests and benchmarks: the definition itself, every B_h formed densely, at O(m·p²·d_in·d_out²)
(:func:`sade_loss_dense_macs` counts its multiply-adds).
"""

from __future__ import annotations

from typing import NamedTuple

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
        values = branch_similarity(family.down_bases(), family.up_bases(), coefficients, normalized=normalized, eps=eps)
        totals.append(values.sum() * weight)
        num_layers += layer_count
    return torch.stack(totals).sum() / num_layers


# --------------------------------------------------------------------------------------------
# the dense reference (slow; for tests and benchmarks)
# --------------------------------------------------------------------------------------------


class FamilyFactors(NamedTuple):
    """D, U and the coefficients of every layer of one base-space family.

    Attributes:
        down: D, (p, d_in, r).
        up: U, (p, r, d_out).
        coefficients: (m, p, r, r), Q_h^j = ``coefficients[j, h]`` for the m layers that use the
            family (a fused qkv gives three j; CLoRA# repeats the shared set for every layer).
    """

    down: torch.Tensor
    up: torch.Tensor
    coefficients: torch.Tensor


def clora_families(model: nn.Module) -> list[FamilyFactors]:
    """The :class:`FamilyFactors` of every base-space family of ``model`` (empty without CLoRA)."""
    families: dict[int, tuple[nn.Module, list[torch.Tensor]]] = {}
    for module in model.modules():
        if isinstance(module, CLoRALinear):
            families.setdefault(id(module.family), (module.family, []))[1].append(module.layer_coefficients())
    return [
        FamilyFactors(family.down_bases(), family.up_bases(), torch.cat(coefficients))
        for family, coefficients in families.values()
    ]


def _normalized(model: nn.Module, normalized: bool | None) -> bool:
    if normalized is not None:
        return normalized
    return bool((getattr(model, "peft_config", None) or {}).get("sade_normalized", True))


def branch_similarity_dense(
    down: torch.Tensor,
    up: torch.Tensor,
    coefficients: torch.Tensor,
    *,
    normalized: bool = True,
    eps: float = SADE_EPS,
) -> torch.Tensor:
    """:func:`branch_similarity` from the definition: every B_h = D_h Q_h^j U_h formed densely.

    Args:
        down: D, (p, d_in, r).
        up: U, (p, r, d_out).
        coefficients: Q of L layers, (L, p, r, r).

    Returns:
        (L,) tensor: per layer the mean over pairs h < k of
        ‖B_hᵀB_k‖²_F / (‖B_hᵀB_h‖_F · ‖B_kᵀB_k‖_F + eps) (of ‖B_hᵀB_k‖²_F when not
        normalised); zeros when p < 2.  Costs O(L·p²·d_in·d_out²).
    """
    num_bases = down.shape[0]
    if num_bases < 2:
        return coefficients.new_zeros(coefficients.shape[0])
    per_layer = []
    for layer_coefficients in coefficients:
        branches = [down[h] @ layer_coefficients[h] @ up[h] for h in range(num_bases)]  # (d_in, d_out) each
        if normalized:
            self_norms = [torch.linalg.matrix_norm(branch.T @ branch) for branch in branches]
        pairs = []
        for h in range(num_bases):
            for k in range(h + 1, num_bases):
                value = torch.linalg.matrix_norm(branches[h].T @ branches[k]).square()
                if normalized:
                    value = value / (self_norms[h] * self_norms[k] + eps)
                pairs.append(value)
        per_layer.append(torch.stack(pairs).mean())
    return torch.stack(per_layer)


def sade_loss_dense(model: nn.Module, *, normalized: bool | None = None, eps: float = SADE_EPS) -> torch.Tensor:
    """:func:`sade_loss` from the definition (slow): the reference for tests and benchmarks.

    Args:
        model: an adapted model (any model: 0 without shared bases).
        normalized: the variant; ``None`` reads ``sade_normalized`` of the model's peft config,
            as :func:`sade_loss` does.
        eps: ε of the normalised ratio.

    Returns:
        A scalar tensor: the mean over every CLoRA layer (each split of a fused qkv is one) of
        :func:`branch_similarity_dense`.
    """
    normalized = _normalized(model, normalized)
    per_layer = [
        branch_similarity_dense(family.down, family.up, family.coefficients, normalized=normalized, eps=eps)
        for family in clora_families(model)
    ]
    if not per_layer:
        reference = next(model.parameters(), None)
        return torch.zeros((), device=reference.device if reference is not None else None)
    return torch.cat(per_layer).mean()


def sade_loss_dense_macs(model: nn.Module, *, normalized: bool | None = None) -> int:
    """Multiply-adds of :func:`sade_loss_dense`, counted analytically (matrix products only).

    Per layer of a family with p ≥ 2 bases, D_h (d_in × r) and U_h (r × d_out): building the p
    branches, p·(d_in·r² + d_in·r·d_out), then one d_in·d_out² product B_hᵀB_k per pair h < k,
    plus the p self products B_hᵀB_h when normalised.
    """
    normalized = _normalized(model, normalized)
    total = 0
    for family in clora_families(model):
        num_bases, d_in, rank = family.down.shape
        if num_bases < 2:
            continue
        d_out = family.up.shape[-1]
        build = num_bases * (d_in * rank * rank + d_in * rank * d_out)
        products = num_bases * (num_bases - 1) // 2 + (num_bases if normalized else 0)
        total += family.coefficients.shape[0] * (build + products * d_in * d_out * d_out)
    return total
