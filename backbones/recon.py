"""ReCon fine-tuning model (Qi et al., "Contrast with Reconstruct", ICML 2023), official names.

The classification model of github.com/qizekun/ReCon (``models/transformer.py``,
``PointTransformer``) is Point-MAE's pipeline with two changes:

- **Three global queries.** Besides ``cls_token`` / ``cls_pos`` it learns ``img_token`` /
  ``img_pos`` and ``text_token`` / ``text_pos`` (the queries that pre-training aligned with an
  image and a text teacher). The sequence is ``[cls, img, text, patch_1 … patch_G]``.
- **ReCon blocks.** Every block runs two branches side by side. The G patch tokens go through
  self-attention among themselves only (``norm1``, ``attn``, ``norm2``, ``mlp``); the three
  global queries cross-attend to the normalised patch tokens (``norm1_contrast``,
  ``attn_contrast`` with its ``q`` and ``kv`` projections, ``norm2_contrast``, ``mlp_contrast``).
  Each branch adds its residual to its *normalised* input, as the official block does::

      g, p = norm1_contrast(g), norm1(p)
      g, p = g + attn_contrast(g, p), p + attn(p)
      g, p = norm2_contrast(g), norm2(p)
      g, p = g + mlp_contrast(g), p + mlp(p)

  so the patch tokens never see the global queries, and the queries see the patches.

The feature is concat[cls, img, text, max over patches] (B, 4·trans_dim) and the head the
official three-layer one. Default sizes are the official fine-tuning configs' (ViT-S, 12 × 384,
6 heads, drop path 0.2, 128 groups × 32): 43,571,215 parameters for C = 15.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ModelConfigError
from .layers import Attention, DropPath, Mlp, mlp3_head
from .point_transformer import PointPatchTransformer

#: The global queries in front of the patch tokens, in order.
GLOBAL_QUERIES = ("cls", "img", "text")


class CrossAttention(nn.Module):
    """Multi-head attention of queries ``x`` over ``y``: bias-free ``q`` (C → C) and ``kv``
    (C → 2C), then ``proj`` (official ``CrossAttention``)."""

    def __init__(self, dim: int, num_heads: int, fused: bool = True) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.fused = fused
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, dim * 2, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x (B, Tq, C) attends to y (B, Tk, C) → (B, Tq, C)."""
        batch, queries, width = x.shape
        keys = y.shape[1]
        k, v = self.kv(y).reshape(batch, keys, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q = self.q(x).reshape(batch, queries, self.num_heads, self.head_dim).transpose(1, 2)
        if self.fused:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            out = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(batch, queries, width))

    def extra_repr(self) -> str:
        return f"num_heads={self.num_heads}, fused={self.fused}"


class ReConBlock(nn.Module):
    """One ReCon block: patch self-attention and global-query cross-attention (module docstring)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        fused_attention: bool = True,
        num_global: int = len(GLOBAL_QUERIES),
    ) -> None:
        super().__init__()
        self.num_global = num_global
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, fused=fused_attention)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, hidden)
        self.norm1_contrast = nn.LayerNorm(dim)
        self.norm2_contrast = nn.LayerNorm(dim)
        self.mlp_contrast = Mlp(dim, hidden)
        self.attn_contrast = CrossAttention(dim, num_heads, fused=fused_attention)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, num_global + G, C) → (B, num_global + G, C)."""
        queries, patches = x[:, : self.num_global], x[:, self.num_global :]
        queries = self.norm1_contrast(queries)
        patches = self.norm1(patches)
        queries = queries + self.drop_path(self.attn_contrast(queries, patches))
        patches = patches + self.drop_path(self.attn(patches))
        queries = self.norm2_contrast(queries)
        patches = self.norm2(patches)
        queries = queries + self.drop_path(self.mlp_contrast(queries))
        patches = patches + self.drop_path(self.mlp(patches))
        return torch.cat([queries, patches], dim=1)


class ReConTransformerEncoder(nn.Module):
    """A stack of :class:`ReConBlock` in ``blocks``; the position is added before every block."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        drop_path_rates: Sequence[float],
        mlp_ratio: float = 4.0,
        fused_attention: bool = True,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            ReConBlock(dim, num_heads, mlp_ratio, rate, fused_attention) for rate in drop_path_rates
        )

    def forward(
        self,
        x: torch.Tensor,
        pos: torch.Tensor,
        runner: Callable[[nn.ModuleList], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """x, pos: (B, 3 + G, C) → (B, 3 + G, C); ``runner`` as in :class:`backbones.layers.TransformerEncoder`
        (the backbone's loop with token hooks)."""
        if runner is not None:
            return runner(self.blocks)
        for block in self.blocks:
            x = block(x + pos)
        return x


class ReCon(PointPatchTransformer):
    """ReCon classifier (module docstring). Args: see
    :class:`backbones.point_transformer.PointPatchTransformer`.

    Its blocks' own ``attn`` / ``mlp`` (patch branch) are the default adapter targets; the
    global-query branch adds ``attn_contrast.q``, ``attn_contrast.kv``, ``attn_contrast.proj``,
    ``mlp_contrast.fc1`` and ``mlp_contrast.fc2``.
    """

    num_prefix_tokens: ClassVar[int] = len(GLOBAL_QUERIES)
    #: Checkpoint layouts tried first (backbones.checkpoint).
    checkpoint_layouts: ClassVar[tuple[str, ...]] = ("recon_pretrain",)
    default_config: ClassVar[dict[str, Any]] = {
        "trans_dim": 384,
        "depth": 12,
        "num_heads": 6,
        "num_group": 128,
        "group_size": 32,
        "encoder_dims": 384,
        "drop_path_rate": 0.2,
        "mlp_ratio": 4.0,
    }

    def __init__(self, num_classes: int, **overrides: Any) -> None:
        super().__init__(num_classes, **{**self.default_config, **overrides})
        if self.encoder_dims != self.trans_dim:
            raise ModelConfigError(
                f"ReCon needs encoder_dims == trans_dim (it has no reduce_dim), got "
                f"encoder_dims={self.encoder_dims}, trans_dim={self.trans_dim}"
            )
        width = self.trans_dim
        self.img_token = nn.Parameter(torch.zeros(1, 1, width))
        self.text_token = nn.Parameter(torch.zeros(1, 1, width))
        self.img_pos = nn.Parameter(torch.zeros(1, 1, width))
        self.text_pos = nn.Parameter(torch.zeros(1, 1, width))
        self.cls_head_finetune = mlp3_head(width * 4, self.num_classes)
        self._init_backbone_weights()
        for token in (self.img_token, self.text_token, self.img_pos, self.text_pos):
            nn.init.trunc_normal_(token, std=0.02)

    def build_blocks(self, drop_path_rates: list[float], mlp_ratio: float, fused_attention: bool) -> nn.Module:
        """A :class:`ReConTransformerEncoder` instead of the plain one."""
        return ReConTransformerEncoder(self.trans_dim, self.num_heads, drop_path_rates, mlp_ratio, fused_attention)

    def prefix_tokens(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """[cls, img, text] and [cls_pos, img_pos, text_pos], each (B, 3, trans_dim)."""
        tokens = torch.cat([self.cls_token, self.img_token, self.text_token], dim=1)
        pos = torch.cat([self.cls_pos, self.img_pos, self.text_pos], dim=1)
        return tokens.expand(batch, -1, -1), pos.expand(batch, -1, -1)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """concat[cls, img, text, max over the patch tokens] (B, 4·trans_dim)."""
        return torch.cat([x[:, 0], x[:, 1], x[:, 2], x[:, self.num_prefix_tokens :].amax(dim=1)], dim=-1)

    def set_fused_attention(self, fused: bool) -> None:
        """Switch both attentions of every block between SDPA and explicit softmax."""
        for block in self.blocks.blocks:
            block.attn.fused = fused
            block.attn_contrast.fused = fused
