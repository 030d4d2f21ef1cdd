"""Wrapped linear layers: CLoRA (shared bases, own coefficients), LoRA, VeRA, PointLoRA's LoRA.

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


class MergeableAdapter(nn.Module):
    """A wrapper around a frozen layer whose update can be folded into that layer's weights.

    Everything :func:`pcclora.merge_adapters` merges is one of these: ``merge()`` folds the
    update in, ``unmerge()`` takes it out again, ``merged`` says which, and
    :meth:`merged_away_parameters` names the parameters the merged forward no longer uses (the
    profiler counts the merged model without them).
    """

    merged: bool

    def merge(self) -> None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def unmerge(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def merged_away_parameters(self) -> list[nn.Parameter]:
        """Parameters the forward stops using once merged (shared ones included)."""
        return []

    def shared_modules(self) -> list[nn.Module]:
        """Modules this wrapper uses but does not own (their owner is elsewhere in the model)."""
        return []


class AdapterLinear(MergeableAdapter, abc.ABC):
    """A frozen ``nn.Linear`` (``base_layer``) plus a low-rank branch that can be merged into it.

    Subclasses define :meth:`adapter_output` (the branch, scaled) and :meth:`delta_weight`
    (the same map as a dense (d_out, d_in) matrix, used only for merging and export). A subclass
    may also define :meth:`residual_output`, a branch that cannot be merged and runs whether
    merged or not (PointLoRA's shared non-linear branch).
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
        if not self.merged:
            output = output + self.adapter_output(self.dropout(x)).to(output.dtype)
        residual = self.residual_output(x)
        return output if residual is None else output + residual.to(output.dtype)

    @abc.abstractmethod
    def adapter_output(self, x: torch.Tensor) -> torch.Tensor:
        """The scaled adapter branch, (…, d_in) → (…, d_out)."""

    def residual_output(self, x: torch.Tensor) -> torch.Tensor | None:
        """A branch that is never merged, (…, d_in) → (…, d_out); ``None`` (the default): none."""
        return None

    def merged_away_parameters(self) -> list[nn.Parameter]:
        """The wrapper's own parameters outside ``base_layer``, and those of its shared modules."""
        own = [p for name, p in self.named_parameters() if not name.startswith("base_layer.")]
        return own + [p for module in self.shared_modules() for p in module.parameters()]

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

    parameter_group = "coefficients"

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

    def shared_modules(self) -> list[nn.Module]:
        """The family of shared bases (owned by ``model.clora_bases``)."""
        return [self.family]

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

    parameter_group = "lora"

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


class VeRALinear(AdapterLinear):
    """y = x Wᵀ + b + Λ_b B Λ_d A x (VeRA: frozen shared random A, B; trained vectors d, b).

    A (r × d_in_max) and B (d_out_max × r) belong to ``model.vera_bases`` (frozen buffers, the
    same pair for every adapted layer); a layer uses the slices ``A[:, :d_in]`` and
    ``B[:d_out, :]``, as Hugging Face PEFT does. Parameters: ``vera_lambda_d`` (r), filled with
    ``d_initial``, and ``vera_lambda_b`` (d_out), zero, so the layer starts equal to
    ``base_layer``. A fused qkv is one layer (one Linear), as in Hugging Face PEFT.
    """

    parameter_group = "vera"

    def __init__(self, base_layer: nn.Linear, bases: nn.Module, *, d_initial: float, dropout: float) -> None:
        super().__init__(base_layer, num_splits=1, dropout=dropout)
        object.__setattr__(self, "bases", bases)  # owned by the model's bank
        self.rank = bases.rank
        weight = base_layer.weight
        factory = {"device": weight.device, "dtype": weight.dtype}
        self.vera_lambda_d = nn.Parameter(torch.full((self.rank,), float(d_initial), **factory))
        self.vera_lambda_b = nn.Parameter(torch.zeros(self.out_features, **factory))

    def shared_modules(self) -> list[nn.Module]:
        return [self.bases]

    def _slices(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.bases.vera_A[:, : self.in_features], self.bases.vera_B[: self.out_features, :]

    def adapter_output(self, x: torch.Tensor) -> torch.Tensor:
        down, up = self._slices()
        hidden = (x @ down.to(x.dtype).T) * self.vera_lambda_d  # (…, r)
        return (hidden @ up.to(x.dtype).T) * self.vera_lambda_b  # (…, d_out)

    def delta_weight(self) -> torch.Tensor:
        down, up = self._slices()
        return (self.vera_lambda_b[:, None] * up) @ (self.vera_lambda_d[:, None] * down)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}"


class SharedBranchLoRALinear(LoRALinear):
    """PointLoRA's wrapped qkv / proj: y = x Wᵀ + b + (x A) B + mlp(x).

    ``mlp`` is one small non-linear branch (Linear, GELU, Linear) shared by the same kind of
    layer in every block (owned by the model's PointLoRA hook). The LoRA part (A uniform in
    ±1/sqrt(d_in), B zero; one pair for the whole fused qkv, as the official code) merges into
    the weight; the shared branch cannot be merged and keeps running (:meth:`residual_output`).
    No alpha/r scaling: the official forward applies none. The official per-layer scalar that
    multiplies the branch is frozen at 1.0 and left out here.
    """

    def __init__(self, base_layer: nn.Linear, shared: nn.Module, *, rank: int) -> None:
        super().__init__(base_layer, num_splits=1, rank=rank, alpha=float(rank), dropout=0.0)
        object.__setattr__(self, "shared", shared)

    def shared_modules(self) -> list[nn.Module]:
        return [self.shared]

    def residual_output(self, x: torch.Tensor) -> torch.Tensor:
        return self.shared(x)

    def merged_away_parameters(self) -> list[nn.Parameter]:
        return [self.lora_down, self.lora_up]  # the shared branch stays


class ScaleShiftLinear(MergeableAdapter):
    """SSF after a frozen Linear: y = (x Wᵀ + b) ⊙ γ + β, γ and β of size d_out.

    DAPT's ``tfts`` initialisation: γ ~ N(1, 0.02), β ~ N(0, 0.02) (not an identity at
    initialisation). Merging folds γ into the weight and bias; β joins the bias when the
    layer has one, else it stays an addition (``merged_away_parameters`` says which).
    """

    parameter_group = "ssf"

    def __init__(self, base_layer: nn.Linear) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.in_features, self.out_features = base_layer.in_features, base_layer.out_features
        factory = {"device": base_layer.weight.device, "dtype": base_layer.weight.dtype}
        self.ssf_scale = nn.Parameter(torch.empty(self.out_features, **factory).normal_(1.0, 0.02))
        self.ssf_shift = nn.Parameter(torch.empty(self.out_features, **factory).normal_(0.0, 0.02))
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = self.base_layer(x)
        if not self.merged:
            return output * self.ssf_scale + self.ssf_shift
        return output if self.base_layer.bias is not None else output + self.ssf_shift

    @torch.no_grad()
    def merge(self) -> None:
        if self.merged:
            return
        self.base_layer.weight.mul_(self.ssf_scale[:, None])
        if self.base_layer.bias is not None:
            self.base_layer.bias.mul_(self.ssf_scale).add_(self.ssf_shift)
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if not self.merged:
            return
        if self.base_layer.bias is not None:
            self.base_layer.bias.sub_(self.ssf_shift).div_(self.ssf_scale)
        self.base_layer.weight.div_(self.ssf_scale[:, None])
        self.merged = False

    def merged_away_parameters(self) -> list[nn.Parameter]:
        return [self.ssf_scale, self.ssf_shift] if self.base_layer.bias is not None else [self.ssf_scale]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, merged={self.merged}"


class ScaleShiftLayerNorm(MergeableAdapter):
    """SSF after a frozen LayerNorm: y = LN(x) ⊙ γ + β; merges into the LayerNorm's affine."""

    parameter_group = "ssf"

    def __init__(self, base_layer: nn.LayerNorm) -> None:
        super().__init__()
        if not base_layer.elementwise_affine or base_layer.bias is None:
            raise ValueError("ScaleShiftLayerNorm needs a LayerNorm with weight and bias")
        self.base_layer = base_layer
        width = base_layer.weight.shape[-1]
        factory = {"device": base_layer.weight.device, "dtype": base_layer.weight.dtype}
        self.ssf_scale = nn.Parameter(torch.empty(width, **factory).normal_(1.0, 0.02))
        self.ssf_shift = nn.Parameter(torch.empty(width, **factory).normal_(0.0, 0.02))
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = self.base_layer(x)
        return output if self.merged else output * self.ssf_scale + self.ssf_shift

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.base_layer.weight.mul_(self.ssf_scale)
            self.base_layer.bias.mul_(self.ssf_scale).add_(self.ssf_shift)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base_layer.bias.sub_(self.ssf_shift).div_(self.ssf_scale)
            self.base_layer.weight.div_(self.ssf_scale)
            self.merged = False

    def merged_away_parameters(self) -> list[nn.Parameter]:
        return [self.ssf_scale, self.ssf_shift]
