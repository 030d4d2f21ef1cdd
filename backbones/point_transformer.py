"""The plain point-patch transformer classifier that Point-MAE, Point-BERT, ACT and ReCon share.

Pipeline (docs/formats.md), for a cloud (B, N, 3):

1. ``group_divider``: FPS picks G centres, kNN takes k points around each → neighborhood
   (B, G, k, 3) relative to the centres, centres (B, G, 3).
2. ``encoder`` (mini-PointNet) → one token per patch; Point-BERT then applies ``reduce_dim``.
3. ``pos_embed`` of each centre; a learned ``cls_token`` with its own ``cls_pos`` is prepended.
4. ``blocks``: pre-norm transformer, position added before every block; final ``norm``.
5. Pooled feature concat[cls token, max over patch tokens] (B, 2·trans_dim) → ``cls_head_finetune``.

Subclasses choose the head, whether tokens are projected (``reduce_dim``, :meth:`project_tokens`),
the learned tokens in front of the patch tokens (:meth:`prefix_tokens`; ReCon adds two) and the
pooling (:meth:`pool`), and may replace ``blocks`` by any module called as ``blocks(x, pos)``.
"""

from __future__ import annotations

import numbers
from typing import Any, ClassVar

import torch
from torch import nn

from .errors import InputShapeError, ModelConfigError
from .layers import TransformerEncoder, linear_drop_path_rates
from .patch_encoder import PatchEncoder
from .tokenizer import Group, check_points


class PointPatchTransformer(nn.Module):
    """Base class; see :class:`backbones.PointMAE`, :class:`backbones.PointBERT`, :class:`backbones.ACT`
    and :class:`backbones.ReCon`.

    Args:
        num_classes: C, outputs of the head.
        trans_dim: token width of the transformer.
        depth: number of transformer blocks.
        num_heads: attention heads (``trans_dim`` must be divisible by it).
        num_group: G, patches per cloud (FPS centres).
        group_size: k, points per patch.
        encoder_dims: output width of the mini-PointNet.
        drop_path_rate: stochastic depth of the last block; rates rise linearly from 0.
        mlp_ratio: hidden width of the block MLPs relative to ``trans_dim``.
        fused_attention: use ``F.scaled_dot_product_attention`` (``False``: explicit softmax).
        tokenizer_backend: FPS/kNN backend, ``"auto"``, ``"torch"`` or ``"pytorch3d"``.
    """

    #: Modules that form the classification head (PEFT keeps them trainable).
    head_module_names: ClassVar[tuple[str, ...]] = ("cls_head_finetune",)
    #: Modules between the tokenizer and the transformer; when none of their parameters needs a
    #: gradient and the input points do not either, tokenizer + patch embedding run under
    #: ``torch.no_grad()`` (lean PEFT training). Points that require grad (saliency maps,
    #: adversarial examples) keep autograd on there, so that the gradient reaches the input.
    patch_embedding_names: ClassVar[tuple[str, ...]] = ("encoder", "pos_embed")
    #: The official default sizes, overridable by keyword (official config names).
    default_config: ClassVar[dict[str, Any]] = {}
    #: Learned tokens in front of the patch tokens: the cls token (ReCon adds its image and text
    #: queries, :meth:`prefix_tokens`); :meth:`pool` max-pools the tokens after them.
    num_prefix_tokens: ClassVar[int] = 1

    def __init__(
        self,
        num_classes: int,
        *,
        trans_dim: int,
        depth: int,
        num_heads: int,
        num_group: int,
        group_size: int,
        encoder_dims: int,
        drop_path_rate: float,
        mlp_ratio: float = 4.0,
        fused_attention: bool = True,
        tokenizer_backend: str = "auto",
    ) -> None:
        super().__init__()
        _check_sizes(
            num_classes=num_classes,
            trans_dim=trans_dim,
            depth=depth,
            num_heads=num_heads,
            num_group=num_group,
            group_size=group_size,
            encoder_dims=encoder_dims,
        )
        if not 0.0 <= drop_path_rate < 1.0:
            raise ModelConfigError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        if trans_dim % num_heads != 0:
            raise ModelConfigError(
                f"trans_dim {trans_dim} is not divisible by num_heads {num_heads}; "
                f"choose num_heads among the divisors of trans_dim (the official model uses 384 / 6)"
            )
        num_classes, trans_dim, depth, num_heads, num_group, group_size, encoder_dims = (
            int(v) for v in (num_classes, trans_dim, depth, num_heads, num_group, group_size, encoder_dims)
        )
        self.num_classes = num_classes
        self.trans_dim = trans_dim
        self.depth = depth
        self.num_heads = num_heads
        self.num_group = num_group
        self.group_size = group_size
        self.encoder_dims = encoder_dims
        self.drop_path_rate = float(drop_path_rate)

        self.group_divider = Group(num_group, group_size, backend=tokenizer_backend)
        self.encoder = PatchEncoder(encoder_dims)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, trans_dim))
        self.cls_pos = nn.Parameter(torch.zeros(1, 1, trans_dim))
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, trans_dim))
        self.blocks = self.build_blocks(linear_drop_path_rates(drop_path_rate, depth), mlp_ratio, fused_attention)
        self.norm = nn.LayerNorm(trans_dim)

    def build_blocks(self, drop_path_rates: list[float], mlp_ratio: float, fused_attention: bool) -> nn.Module:
        """The transformer, called as ``blocks(x, pos)``: a :class:`TransformerEncoder` of
        ``len(drop_path_rates)`` blocks of width ``trans_dim`` (ReCon builds its own)."""
        return TransformerEncoder(
            self.trans_dim, self.num_heads, drop_path_rates, mlp_ratio=mlp_ratio, fused_attention=fused_attention
        )

    def _init_backbone_weights(self) -> None:
        """Initialise everything but the head as the official models do from scratch.

        The head keeps PyTorch's default initialisation, which is what the official fine-tuning
        scripts use when they start from a pre-trained checkpoint (their ``_init_weights`` runs
        only when there is no checkpoint).
        """
        head = {id(m) for name in self.head_module_names for m in getattr(self, name).modules()}
        for module in self.modules():
            if id(module) in head:
                continue
            if isinstance(module, (nn.Linear, nn.Conv1d)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.cls_pos, std=0.02)

    # ----------------------------------------------------------------------------------------
    # forward
    # ----------------------------------------------------------------------------------------

    def project_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Map encoder tokens (B, G, encoder_dims) to the transformer width (B, G, trans_dim)."""
        return tokens

    def patch_embedding_requires_grad(self) -> bool:
        """Whether any parameter of the patch embedding (``patch_embedding_names``) needs a gradient."""
        return any(p.requires_grad for name in self.patch_embedding_names for p in getattr(self, name).parameters())

    def embed_patches(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenise and embed: points (B, N, 3) → tokens (B, G, trans_dim), positions (B, G, trans_dim)."""
        neighborhood, center = self.group_divider(points)
        tokens = self.project_tokens(self.encoder(neighborhood))
        return tokens, self.pos_embed(center)

    def check_input(self, points: torch.Tensor) -> None:
        """Raise :class:`InputShapeError` unless ``points`` is a finite float (B, N, 3) cloud that is
        large enough for ``num_group`` centres and ``group_size`` neighbours."""
        check_cloud(points, self.num_group, self.group_size)

    def prefix_tokens(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The learned tokens put before the patch tokens and their positions, each
        (B, ``num_prefix_tokens``, trans_dim): here ``cls_token`` with ``cls_pos``."""
        return self.cls_token.expand(batch, -1, -1), self.cls_pos.expand(batch, -1, -1)

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised tokens (B, T, C) → the pooled feature: concat[cls token, max over the tokens
        after the prefix] (B, 2·C)."""
        return torch.cat([x[:, 0], x[:, self.num_prefix_tokens :].amax(dim=1)], dim=-1)

    def forward_features(self, points: torch.Tensor) -> torch.Tensor:
        """Pooled feature: points (B, N, 3) → (B, 2·trans_dim) = concat[cls token, max over patches]."""
        self.check_input(points)
        points = points.to(self.cls_token.dtype)
        lean = torch.is_grad_enabled() and not points.requires_grad and not self.patch_embedding_requires_grad()
        if lean:  # nothing upstream of the transformer is trained nor wants a gradient: no graph there
            with torch.no_grad():
                tokens, pos = self.embed_patches(points)
        else:
            tokens, pos = self.embed_patches(points)
        prefix, prefix_pos = self.prefix_tokens(tokens.shape[0])
        x = torch.cat([prefix, tokens], dim=1)
        pos = torch.cat([prefix_pos, pos], dim=1)
        return self.pool(self.norm(self.blocks(x, pos)))

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """Class logits: points (B, N, 3) → (B, num_classes)."""
        return self.cls_head_finetune(self.forward_features(points))

    def set_fused_attention(self, fused: bool) -> None:
        """Switch every block between SDPA (``True``) and explicit softmax attention."""
        for block in self.blocks.blocks:
            block.attn.fused = fused

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, trans_dim={self.trans_dim}, depth={self.depth}, "
            f"num_heads={self.num_heads}, num_group={self.num_group}, group_size={self.group_size}, "
            f"encoder_dims={self.encoder_dims}, drop_path_rate={self.drop_path_rate}"
        )


def check_cloud(points: torch.Tensor, num_group: int, group_size: int) -> None:
    """Raise :class:`InputShapeError` unless ``points`` is a finite float (B, N, 3) cloud with at
    least ``num_group`` and ``group_size`` points."""
    check_points(points)
    num_points = points.shape[1]
    for what, need in (("num_group", num_group), ("group_size", group_size)):
        if num_points < need:
            raise InputShapeError(
                f"the clouds have {num_points} points but this model's {what} is {need}: give at "
                f"least {need} points per cloud or build the model with a smaller {what}"
            )
    if not torch.isfinite(points).all():
        bad = int((~torch.isfinite(points)).sum())
        raise InputShapeError(f"points contain {bad} NaN or infinite coordinates; clean or drop those clouds first")


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ModelConfigError(f"{name} must be a positive integer, got {value!r}")
