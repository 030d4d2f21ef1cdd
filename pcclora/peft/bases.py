"""The owner of CLoRA's shared base spaces: one :class:`BaseSpaceFamily` per layer shape.

Every adapted layer of shape (d_in, d_out) draws on the same p pairs of bases (docs/method.md).
They live in exactly one place, ``model.clora_bases`` (a :class:`CLoRABaseBank`), so that they
appear once in ``state_dict`` and once in the optimizer; the wrapped layers only hold a plain
(unregistered) reference to their family.

Convention (row vectors, as the paper): y = x W + b with D_h (d_in × r), U_h (r × d_out).  The p
bases are stored concatenated, ``down`` = [D_1 … D_p] (d_in × p·r) and ``up`` = [U_1; …; U_p]
(p·r × d_out), so x·D for all bases is one matmul and Σ_h z_h U_h is one matmul too.
"""

from __future__ import annotations

import math

import torch
from torch import nn

#: Attribute name of the bank on an adapted model (and prefix of its state-dict keys).
BANK_ATTRIBUTE = "clora_bases"


def family_key(in_features: int, out_features: int) -> str:
    """Name of the family of layers mapping ``in_features`` to ``out_features`` (``"384x1536"``)."""
    return f"{in_features}x{out_features}"


class BaseSpaceFamily(nn.Module):
    """The p shared base pairs of one shape family, and (CLoRA#) its shared coefficients.

    Args:
        in_features: d_in of the family.
        out_features: d_out of the family (of one q/k/v part for a fused qkv layer).
        rank: r.
        num_bases: p.
        shared_coefficients: CLoRA#: hold one coefficient set (p, r, r) used by every layer.

    Initialisation: each D_h and U_h is Kaiming-uniform as LoRA's A
    (``kaiming_uniform_(a=sqrt(5))`` with fan-in = the input dim of that map: d_in for D_h, r for
    U_h), i.e. uniform in ±1/sqrt(fan_in).  Shared coefficients start at zero.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        num_bases: int,
        *,
        shared_coefficients: bool = False,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.rank = rank
        self.num_bases = num_bases
        self.down = nn.Parameter(torch.empty(in_features, num_bases * rank))
        self.up = nn.Parameter(torch.empty(num_bases * rank, out_features))
        self.shared_coefficients = nn.Parameter(torch.zeros(num_bases, rank, rank)) if shared_coefficients else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw D and U afresh (uniform ±1/sqrt(fan_in) per base) and zero shared coefficients."""
        with torch.no_grad():
            down_bound = 1.0 / math.sqrt(self.in_features)
            up_bound = 1.0 / math.sqrt(self.rank)
            self.down.uniform_(-down_bound, down_bound)
            self.up.uniform_(-up_bound, up_bound)
            if self.shared_coefficients is not None:
                self.shared_coefficients.zero_()

    def down_bases(self) -> torch.Tensor:
        """D as (p, d_in, r): D_h = ``down_bases()[h]``."""
        return self.down.reshape(self.in_features, self.num_bases, self.rank).permute(1, 0, 2)

    def up_bases(self) -> torch.Tensor:
        """U as (p, r, d_out): U_h = ``up_bases()[h]``."""
        return self.up.reshape(self.num_bases, self.rank, self.out_features)

    def extra_repr(self) -> str:
        shared = ", shared_coefficients=True" if self.shared_coefficients is not None else ""
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"rank={self.rank}, num_bases={self.num_bases}{shared}"
        )


class CLoRABaseBank(nn.Module):
    """All base-space families of a model, keyed by :func:`family_key` (``"384x1536"``).

    State-dict keys: ``clora_bases.families.<d_in>x<d_out>.{down,up[,shared_coefficients]}``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.families = nn.ModuleDict()

    def get_or_create(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        num_bases: int,
        *,
        shared_coefficients: bool,
    ) -> BaseSpaceFamily:
        """Return the family of shape (in_features, out_features), creating it on first use."""
        key = family_key(in_features, out_features)
        if key not in self.families:
            self.families[key] = BaseSpaceFamily(
                in_features,
                out_features,
                rank,
                num_bases,
                shared_coefficients=shared_coefficients,
            )
        return self.families[key]
