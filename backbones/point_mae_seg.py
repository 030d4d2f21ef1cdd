"""Point-MAE part-segmentation model (ShapeNetPart), official module and key names.

Pipeline for clouds (B, N, 3) and their shape categories:

1. ``group_divider`` (FPS + kNN) → G patches of k points; ``encoder`` (mini-PointNet) → one
   token per patch; ``pos_embed`` of each centre. No cls token.
2. ``blocks``: the pre-norm transformer, the position added before every block; the outputs of
   three blocks (3, 7 and 11 of 12) are each normalised by the shared ``norm`` and concatenated
   → (B, 3·C, G).
3. Global feature: max and mean over the G patches (B, 3·C each) and ``label_conv`` of the
   16-dim one-hot category (B, 64), repeated at every point.
4. ``propagation_0``: 3-NN inverse-distance interpolation of the patch features to every point,
   concatenated after the point's xyz, then Conv1d-BN-ReLU 3·C+3 → 4·C → 1024.
5. Point-wise head ``convs1`` (+``bns1``, ReLU, ``dp1``) → ``convs2`` (+``bns2``, ReLU) →
   ``convs3`` → part logits.

The head (everything after the transformer: ``label_conv``, ``propagation_0``, ``convs*``,
``bns*``) is :attr:`PointMAESeg.head_module_names`, so PEFT methods train it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputShapeError, ModelConfigError
from .layers import TransformerEncoder, init_all_but_head, linear_drop_path_rates
from .patch_encoder import PatchEncoder
from .point_transformer import check_cloud, check_transformer_sizes
from .propagation import FeaturePropagation
from .tokenizer import Group

#: Blocks whose outputs the official 12-block model concatenates.
OFFICIAL_FEATURE_BLOCKS = (3, 7, 11)


def feature_blocks(depth: int) -> tuple[int, int, int]:
    """The three blocks whose outputs feed the head: the last block of each third of the
    transformer, ``round((i + 1) · depth / 3) - 1`` → (3, 7, 11) for the official depth 12,
    (0, 0, 1) for depth 2."""
    return tuple(max(round((i + 1) * depth / 3) - 1, 0) for i in range(3))  # type: ignore[return-value]


class PointMAESeg(nn.Module):
    """Point-MAE part segmentation (Pang et al., ECCV 2022; official ``segmentation/models/pt.py``).

    Defaults are the official ShapeNetPart setting: 2048 points, 128 groups × 32, a 12 × 384
    transformer with 6 heads, drop path 0.1, 50 part classes and 16 shape categories:
    27,063,730 parameters (BatchNorm statistics not counted), of which the head has 5,238,706.

    Args:
        num_classes: part classes, outputs per point (50 for ShapeNetPart).
        num_shape_classes: categories of the one-hot shape label (16 for ShapeNetPart).
        trans_dim, depth, num_heads, num_group, group_size, encoder_dims, drop_path_rate,
            mlp_ratio: as :class:`backbones.PointPatchTransformer` (``encoder_dims`` must equal
            ``trans_dim``, as in Point-MAE).
        fused_attention: use ``F.scaled_dot_product_attention``.
        tokenizer_backend: FPS/kNN backend, ``"auto"``, ``"torch"`` or ``"pytorch3d"``.

    ``forward(points (B, N, 3), shape_label (B,) or (B, num_shape_classes))`` returns part
    logits **(B, N, num_classes)** (the official model returns their log-softmax in the same
    layout; the argmax is the same).
    """

    #: What the head serves (``backbones.backbone_task``): per-point part logits.
    task: ClassVar[str] = "segmentation"
    #: Modules after the transformer: the segmentation head (PEFT keeps them trainable).
    head_module_names: ClassVar[tuple[str, ...]] = (
        "label_conv",
        "propagation_0",
        "convs1",
        "convs2",
        "convs3",
        "bns1",
        "bns2",
    )
    #: Modules between the tokenizer and the transformer (run without autograd when frozen).
    patch_embedding_names: ClassVar[tuple[str, ...]] = ("encoder", "pos_embed")
    #: No learned tokens besides the patches: the default ``trainable_extra`` of PEFT is empty.
    peft_trainable_extra: ClassVar[tuple[str, ...]] = ()
    default_config: ClassVar[dict[str, Any]] = {
        "trans_dim": 384,
        "depth": 12,
        "num_heads": 6,
        "num_group": 128,
        "group_size": 32,
        "encoder_dims": 384,
        "drop_path_rate": 0.1,
        "mlp_ratio": 4.0,
        "num_shape_classes": 16,
    }

    def __init__(
        self,
        num_classes: int,
        *,
        num_shape_classes: int = 16,
        trans_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        num_group: int = 128,
        group_size: int = 32,
        encoder_dims: int = 384,
        drop_path_rate: float = 0.1,
        mlp_ratio: float = 4.0,
        fused_attention: bool = True,
        tokenizer_backend: str = "auto",
    ) -> None:
        super().__init__()
        check_transformer_sizes(
            drop_path_rate,
            num_classes=num_classes,
            num_shape_classes=num_shape_classes,
            trans_dim=trans_dim,
            depth=depth,
            num_heads=num_heads,
            num_group=num_group,
            group_size=group_size,
            encoder_dims=encoder_dims,
        )
        if encoder_dims != trans_dim:
            raise ModelConfigError(
                f"Point-MAE needs encoder_dims == trans_dim (it has no reduce_dim), got "
                f"encoder_dims={encoder_dims}, trans_dim={trans_dim}"
            )
        self.num_classes = int(num_classes)
        self.num_shape_classes = int(num_shape_classes)
        self.trans_dim = int(trans_dim)
        self.depth = int(depth)
        self.num_heads = int(num_heads)
        self.num_group = int(num_group)
        self.group_size = int(group_size)
        self.encoder_dims = int(encoder_dims)
        self.drop_path_rate = float(drop_path_rate)
        self.feature_blocks = feature_blocks(self.depth)

        width = self.trans_dim
        self.group_divider = Group(self.num_group, self.group_size, backend=tokenizer_backend)
        self.encoder = PatchEncoder(self.encoder_dims)
        self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, width))
        self.blocks = TransformerEncoder(
            width,
            self.num_heads,
            linear_drop_path_rates(drop_path_rate, self.depth),
            mlp_ratio=mlp_ratio,
            fused_attention=fused_attention,
        )
        self.norm = nn.LayerNorm(width)
        self.label_conv = nn.Sequential(
            nn.Conv1d(self.num_shape_classes, 64, kernel_size=1, bias=False),
            nn.BatchNorm1d(64),
            nn.LeakyReLU(0.2),
        )
        self.propagation_0 = FeaturePropagation(3 * width + 3, [4 * width, 1024])
        self.convs1 = nn.Conv1d(1024 + 2 * 3 * width + 64, 512, 1)
        self.dp1 = nn.Dropout(0.5)
        self.convs2 = nn.Conv1d(512, 256, 1)
        self.convs3 = nn.Conv1d(256, self.num_classes, 1)
        self.bns1 = nn.BatchNorm1d(512)
        self.bns2 = nn.BatchNorm1d(256)
        self.relu = nn.ReLU()
        self._init_backbone_weights()

    def _init_backbone_weights(self) -> None:
        """Transformer side as the toolkit's classifiers (truncated normal, std 0.02); the head
        keeps PyTorch's default initialisation, as the official segmentation model."""
        init_all_but_head(self)

    # ----------------------------------------------------------------------------------------
    # inputs
    # ----------------------------------------------------------------------------------------

    def check_input(self, points: torch.Tensor) -> None:
        """Raise :class:`InputShapeError` unless ``points`` is a finite float (B, N, 3) cloud with
        at least ``num_group`` and ``group_size`` points."""
        check_cloud(points, self.num_group, self.group_size)

    def one_hot_label(self, shape_label: torch.Tensor | None, batch: int, like: torch.Tensor) -> torch.Tensor:
        """The one-hot category (B, num_shape_classes) in ``like``'s dtype and device.

        Args:
            shape_label: (B,) integer categories, (B, num_shape_classes) one-hot, or ``None``:
                an all-zero vector (no category information; the compute is the same, which
                is what the profiler and the benchmark use when they call ``model(points)``).

        Raises:
            InputShapeError: a wrong shape or a category outside [0, num_shape_classes).
        """
        classes = self.num_shape_classes
        if shape_label is None:
            return like.new_zeros(batch, classes)
        if not isinstance(shape_label, torch.Tensor):
            shape_label = torch.as_tensor(shape_label)
        shape_label = shape_label.to(like.device)
        if shape_label.dim() == 2 and shape_label.shape == (batch, 1):
            shape_label = shape_label[:, 0]
        if shape_label.dim() == 1 and shape_label.shape[0] == batch and not shape_label.is_floating_point():
            if bool(((shape_label < 0) | (shape_label >= classes)).any()):
                raise InputShapeError(
                    f"shape_label holds categories outside [0, {classes}): {shape_label.tolist()}; "
                    "give each cloud's category index"
                )
            return F.one_hot(shape_label.long(), classes).to(like.dtype)
        if shape_label.shape == (batch, classes):
            return shape_label.to(like.dtype)
        raise InputShapeError(
            f"shape_label must be (B,) category indices or a (B, {classes}) one-hot tensor for B = {batch}, "
            f"got shape {tuple(shape_label.shape)} ({shape_label.dtype})"
        )

    # ----------------------------------------------------------------------------------------
    # forward
    # ----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _embedding_grad_mode(self, points: torch.Tensor) -> Iterator[None]:
        """``no_grad`` for the tokenizer and patch embedding when nothing there trains."""
        trains = any(p.requires_grad for name in self.patch_embedding_names for p in getattr(self, name).parameters())
        lean = torch.is_grad_enabled() and not points.requires_grad and not trains
        with torch.no_grad() if lean else contextlib.nullcontext():
            yield

    def forward_features(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Patch features for the head: points (B, N, 3) → (features (B, 3·C, G), centres (B, G, 3)).

        The features are the outputs of blocks :attr:`feature_blocks`, each normalised by
        ``norm``, concatenated along the channels.
        """
        with self._embedding_grad_mode(points):
            neighborhood, center = self.group_divider(points)
            tokens = self.encoder(neighborhood)
            pos = self.pos_embed(center)
        collected: dict[int, torch.Tensor] = {}

        def run(blocks: nn.ModuleList) -> torch.Tensor:
            x = tokens
            for index, block in enumerate(blocks):
                x = block(x + pos)
                if index in self.feature_blocks:
                    collected[index] = x
            return x

        self.blocks(tokens, pos, runner=run)
        features = [self.norm(collected[index]).transpose(1, 2) for index in self.feature_blocks]
        return torch.cat(features, dim=1), center

    def forward(self, points: torch.Tensor, shape_label: torch.Tensor | None = None) -> torch.Tensor:
        """Part logits: points (B, N, 3), shape_label (B,) / (B, num_shape_classes) → (B, N, num_classes).

        ``shape_label=None`` uses an all-zero category vector (see :meth:`one_hot_label`);
        training and evaluation always pass the category.
        """
        self.check_input(points)
        points = points.to(self.norm.weight.dtype)
        batch, num_points, _ = points.shape
        features, center = self.forward_features(points)  # (B, 3C, G), (B, G, 3)
        pooled = torch.cat([features.amax(dim=2), features.mean(dim=2)], dim=1)  # (B, 6C)
        label = self.one_hot_label(shape_label, batch, points).unsqueeze(-1)  # (B, K, 1)
        global_feature = torch.cat([pooled.unsqueeze(-1), self.label_conv(label)], dim=1)
        global_feature = global_feature.expand(-1, -1, num_points)  # (B, 6C + 64, N)
        point_feature = self.propagation_0(points, center, points.transpose(1, 2), features)  # (B, 1024, N)
        x = torch.cat([point_feature, global_feature], dim=1)
        x = self.dp1(self.relu(self.bns1(self.convs1(x))))
        x = self.relu(self.bns2(self.convs2(x)))
        return self.convs3(x).transpose(1, 2)

    def set_fused_attention(self, fused: bool) -> None:
        """Switch every block between SDPA (``True``) and explicit softmax attention."""
        for block in self.blocks.blocks:
            block.attn.fused = fused

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, num_shape_classes={self.num_shape_classes}, "
            f"trans_dim={self.trans_dim}, depth={self.depth}, num_heads={self.num_heads}, "
            f"num_group={self.num_group}, group_size={self.group_size}, feature_blocks={self.feature_blocks}"
        )
