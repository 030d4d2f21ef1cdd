"""Wrapped linear layers: CLoRA (shared bases, own coefficients) and LoRA.

Weight convention.  PyTorch stores a Linear weight as (d_out, d_in) and computes
y = x Wᵀ + b; the paper writes y = x W + b with W (d_in × d_out), D_h (d_in × r) and
U_h (r × d_out).  The adapter branches below are written in the paper's row-vector form
(x @ D, then @ U), and :meth:`AdapterLinear.delta_weight` returns the update already transposed
to PyTorch's layout, ready to add to ``base_layer.weight``.

A fused ``qkv`` Linear (d → 3d) is ``num_splits = 3`` layers of the (d, d) family: its output rows
are q, then k, then v, each with its own coefficients; they all read the same x, so x·D is
computed once for the three.
"""

from __future__ import annotations

import abc

import torch
from torch import nn

from .bases import BaseSpaceFamily


class AdapterLinear(nn.Module, abc.ABC):
    """A frozen ``nn.Linear`` (``base_layer``) plus a low-rank branch that can be merged into it.

    Subclasses define :meth:`adapter_output` (the branch, scaled) and :meth:`delta_weight`
    (the same map as a dense (d_out, d_in) matrix, used only for merging and export).
    """

    def __init__(self, base_layer: nn.Linear, *, num_splits: int, dropout: float) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.in_features = base_layer.in_features
        self.out_features = base_layer.out_features
        self.num_splits = num_splits
        self.split_features = base_layer.out_features // num_splits
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(…, d_in) → (…, d_out); the branch is skipped once merged into the weight."""
        output = self.base_layer(x)
        if self.merged:
            return output
        return output + self.adapter_output(self.dropout(x)).to(output.dtype)

    @abc.abstractmethod
    def adapter_output(self, x: torch.Tensor) -> torch.Tensor:
        """The scaled adapter branch, (…, d_in) → (…, d_out)."""

    @abc.abstractmethod
    def delta_weight(self) -> torch.Tensor:
        """The scaled update in PyTorch layout, (d_out, d_in) (fused rows stacked q, k, v)."""

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into ``base_layer.weight``; the forward then runs the plain Linear."""
        if not self.merged:
            weight = self.base_layer.weight
            weight.add_(self.delta_weight().to(weight.dtype))
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract the folded update again (exact up to float rounding)."""
        if self.merged:
            weight = self.base_layer.weight
            weight.sub_(self.delta_weight().to(weight.dtype))
            self.merged = False

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"num_splits={self.num_splits}, merged={self.merged}"
        )


class CLoRALinear(AdapterLinear):
    """y = x Wᵀ + b + s · Σ_h ((x D_h) Q_h^j) U_h for each of the ``num_splits`` layers j.

    Args:
        base_layer: the frozen Linear, (d_out, d_in) weight with d_out = num_splits · family d_out.
        family: the shared bases of shape (d_in, d_out / num_splits); kept as a plain reference,
            its owner is ``model.clora_bases``.
        num_splits: 3 for a fused qkv, else 1.
        alpha: scaling s = alpha / rank.
        dropout: dropout probability on the branch input.
        shared_coefficients: CLoRA#: use ``family.shared_coefficients`` for every layer instead
            of own coefficients.

    Parameters: ``coefficients`` (num_splits, p, r, r), zero at initialisation, so the layer
    starts exactly equal to ``base_layer``.  None with ``shared_coefficients``.

    Forward cost per token: one (d_in → p·r) matmul shared by the splits, a batched r×r
    product per split and base (block-diagonal coefficients, never a dense matrix), one
    (p·r → d_out) matmul over all splits.
    """

    def __init__(
        self,
        base_layer: nn.Linear,
        family: BaseSpaceFamily,
        *,
        num_splits: int,
        alpha: float,
        dropout: float,
        shared_coefficients: bool = False,
    ) -> None:
        super().__init__(base_layer, num_splits=num_splits, dropout=dropout)
        # A plain attribute, not a submodule: the bank is the single owner of the bases.
        object.__setattr__(self, "family", family)
        self.rank = family.rank
        self.num_bases = family.num_bases
        self.scaling = alpha / family.rank
        if shared_coefficients:
            self.coefficients = None
        else:
            weight = base_layer.weight
            self.coefficients = nn.Parameter(
                torch.zeros(
                    num_splits,
                    family.num_bases,
                    family.rank,
                    family.rank,
                    device=weight.device,
                    dtype=weight.dtype,
                )
            )

    def layer_coefficients(self) -> torch.Tensor:
        """Q of every split, (num_splits, p, r, r): own, or the family's shared set broadcast."""
        if self.coefficients is not None:
            return self.coefficients
        shared = self.family.shared_coefficients
        return shared.unsqueeze(0).expand(self.num_splits, *shared.shape)

    def adapter_output(self, x: torch.Tensor) -> torch.Tensor:
        family = self.family
        leading = x.shape[:-1]
        hidden = (x @ family.down).reshape(*leading, self.num_bases, self.rank)  # (…, p, r)
        coefficients = self.layer_coefficients() * self.scaling  # (S, p, r, r)
        mixed = torch.einsum("...hi,shij->...shj", hidden, coefficients)  # (…, S, p, r)
        mixed = mixed.reshape(*leading, self.num_splits, self.num_bases * self.rank)
        return (mixed @ family.up).reshape(*leading, self.out_features)  # (…, S·d_out)

    def delta_weight(self) -> torch.Tensor:
        family = self.family
        delta = torch.einsum(
            "hir,shrk,hko->soi",
            family.down_bases(),
            self.layer_coefficients() * self.scaling,
            family.up_bases(),
        )  # (S, d_out, d_in): ΔW_jᵀ for each split j
        return delta.reshape(self.out_features, self.in_features)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, num_bases={self.num_bases}"


class LoRALinear(AdapterLinear):
    """y = x Wᵀ + b + s · (x A_j) B_j for each of the ``num_splits`` layers j (LoRA).

    A fused qkv is three layers, each with its own A_j (d_in × r) and B_j (r × d_out), to match
    CLoRA's layer count.  Parameters: ``lora_down`` = [A_1 … A_S] (d_in, S·r), Kaiming-uniform
    as LoRA's A (±1/sqrt(d_in)); ``lora_up`` (S, r, d_out), zero.  Scaling s = alpha / rank.
    """

    def __init__(
        self,
        base_layer: nn.Linear,
        *,
        num_splits: int,
        rank: int,
        alpha: float,
        dropout: float,
    ) -> None:
        super().__init__(base_layer, num_splits=num_splits, dropout=dropout)
        self.rank = rank
        self.scaling = alpha / rank
        weight = base_layer.weight
        factory = {"device": weight.device, "dtype": weight.dtype}
        bound = 1.0 / self.in_features**0.5
        self.lora_down = nn.Parameter(
            torch.empty(self.in_features, num_splits * rank, **factory).uniform_(-bound, bound)
        )
        self.lora_up = nn.Parameter(torch.zeros(num_splits, rank, self.split_features, **factory))

    def adapter_output(self, x: torch.Tensor) -> torch.Tensor:
        leading = x.shape[:-1]
        hidden = (x @ self.lora_down).reshape(*leading, self.num_splits, self.rank)  # (…, S, r)
        output = torch.einsum("...si,sio->...so", hidden, self.lora_up * self.scaling)
        return output.reshape(*leading, self.out_features)

    def delta_weight(self) -> torch.Tensor:
        down = self.lora_down.reshape(self.in_features, self.num_splits, self.rank)
        delta = torch.einsum("isr,sro->soi", down, self.lora_up * self.scaling)
        return delta.reshape(self.out_features, self.in_features)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}"
