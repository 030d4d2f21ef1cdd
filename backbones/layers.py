"""Plain pre-norm transformer blocks shared by Point-MAE, Point-BERT, ACT and ReCon; the official head.

Module and attribute names follow the official models (docs/formats.md) so that their state
dicts load strictly: ``Attention.qkv`` / ``Attention.proj``, ``Mlp.fc1`` / ``Mlp.fc2``,
``Block.norm1`` / ``attn`` / ``norm2`` / ``mlp``, ``TransformerEncoder.blocks``.
The official models use no dropout inside the transformer (rates 0), so there is none here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class DropPath(nn.Module):
    """Stochastic depth: zero a whole residual branch per sample with probability ``drop_prob``.

    Surviving samples are scaled by ``1 / (1 - drop_prob)`` so the expected output is unchanged;
    in eval mode (or with ``drop_prob == 0``) the module is the identity.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ...) → (B, ...)."""
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep_prob = 1.0 - self.drop_prob
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep_prob)
        return x * keep / keep_prob

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


class Attention(nn.Module):
    """Multi-head self-attention with a bias-free fused ``qkv`` projection.

    Args:
        dim: token width C (divisible by ``num_heads``).
        num_heads: number of heads; head width C / num_heads.
        fused: use ``F.scaled_dot_product_attention``; ``False`` computes
            softmax(q kᵀ · scale) v explicitly (same logits up to float rounding; handy for
            profiling hooks or inspecting attention maps).
    """

    def __init__(self, dim: int, num_heads: int, fused: bool = True) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.fused = fused
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) → (B, T, C)."""
        batch, tokens, width = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, T, head_dim)
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            attn = (q @ k.transpose(-2, -1)) * self.scale
            out = attn.softmax(dim=-1) @ v
        out = out.transpose(1, 2).reshape(batch, tokens, width)
        return self.proj(out)

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, fused={self.fused}"


class Mlp(nn.Module):
    """Two-layer feed-forward network ``fc2(GELU(fc1(x)))``: (…, C) → (…, C)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0, fused_attention: bool = True
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, fused=fused_attention)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) → (B, T, C): :meth:`mlp_residual` of :meth:`attention_residual`."""
        return self.mlp_residual(self.attention_residual(x))

    # The two halves of the block, an extension point for adapters that add a branch between
    # them (e.g. a branch parallel to the MLP sub-layer that reads the attention residual):
    # ``forward`` is exactly their composition.

    def attention_residual(self, x: torch.Tensor) -> torch.Tensor:
        """The first half, ``x + drop_path(attn(norm1(x)))``: (B, T, C) → (B, T, C)."""
        return x + self.drop_path(self.attn(self.norm1(x)))

    def mlp_residual(self, x: torch.Tensor) -> torch.Tensor:
        """The second half, ``x + drop_path(mlp(norm2(x)))``: (B, T, C) → (B, T, C)."""
        return x + self.drop_path(self.mlp(self.norm2(x)))


class TransformerEncoder(nn.Module):
    """A stack of :class:`Block` in ``blocks``; the positional embedding is added before every block.

    Args:
        drop_path_rates: one stochastic-depth rate per block (its length is the depth).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        drop_path_rates: Sequence[float],
        mlp_ratio: float = 4.0,
        fused_attention: bool = True,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio, rate, fused_attention) for rate in drop_path_rates)

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor | None,
        runner: Callable[[nn.ModuleList], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """x, pos: (B, T, C) → (B, T, C).

        ``runner(self.blocks)``, when given, runs the blocks instead (the backbone's loop with
        token hooks), inside this module's call so that module-level accounting (profilers,
        forward hooks on ``blocks``) sees it as before.
        """
        if runner is not None:
            return runner(self.blocks)
        for block in self.blocks:
            x = block(x + pos)
        return x


def linear_drop_path_rates(drop_path_rate: float, depth: int) -> list[float]:
    """Stochastic-depth rates rising linearly from 0 to ``drop_path_rate`` over ``depth`` blocks."""
    # float32 linspace as in the official code; on the CPU even when built under a device context.
    return [float(r) for r in torch.linspace(0, drop_path_rate, depth, device="cpu")]


def mlp3_head(in_features: int, num_classes: int) -> nn.Sequential:
    """The official three-layer classification head (Point-MAE, ACT, ReCon, PointGPT):
    Linear(in, 256) BN ReLU Dropout(0.5) Linear(256, 256) BN ReLU Dropout(0.5) Linear(256, C),
    its linear / BatchNorm layers at indices 0, 1, 4, 5, 8 as in the official state dicts."""
    return nn.Sequential(
        nn.Linear(in_features, 256),
        nn.BatchNorm1d(256),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(256, 256),
        nn.BatchNorm1d(256),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(256, num_classes),
    )


def init_all_but_head(model: nn.Module, head_names: Sequence[str] | None = None) -> None:
    """The official from-scratch initialisation: truncated normal (std 0.02) for every Linear /
    Conv1d weight (zero bias) and unit LayerNorms, outside the head modules (``head_names``,
    module paths; default ``model.head_module_names``), which keep PyTorch's defaults."""
    names = getattr(model, "head_module_names", ()) if head_names is None else head_names
    head = {id(m) for name in names for m in model.get_submodule(name).modules()}
    for module in model.modules():
        if id(module) in head:
            continue
        if isinstance(module, (nn.Linear, nn.Conv1d)):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
