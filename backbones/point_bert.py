"""Point-BERT fine-tuning model (Yu et al., CVPR 2022), official module and key names."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from .point_transformer import PointPatchTransformer


class PointBERT(PointPatchTransformer):
    """Point-BERT classifier: 256-d mini-PointNet tokens, ``reduce_dim`` to the 384-d transformer.

    Defaults are the official 1024-point setting (64 groups × 32). The head is
    Linear(2·trans_dim, 256) ReLU Dropout Linear(256, C) at indices 0, 3 (no BatchNorm).
    22,065,960 parameters for C = 40.

    Args: see :class:`backbones.point_transformer.PointPatchTransformer`.
    """

    patch_embedding_names: ClassVar[tuple[str, ...]] = ("encoder", "reduce_dim", "pos_embed")
    default_config: ClassVar[dict[str, Any]] = {
        "trans_dim": 384,
        "depth": 12,
        "num_heads": 6,
        "num_group": 64,
        "group_size": 32,
        "encoder_dims": 256,
        "drop_path_rate": 0.1,
        "mlp_ratio": 4.0,
    }

    def __init__(self, num_classes: int, **overrides: Any) -> None:
        super().__init__(num_classes, **{**self.default_config, **overrides})
        self.reduce_dim = nn.Linear(self.encoder_dims, self.trans_dim)
        self.cls_head_finetune = nn.Sequential(
            nn.Linear(self.trans_dim * 2, 256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(256, self.num_classes),
        )
        self._init_backbone_weights()

    def project_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, G, encoder_dims) → (B, G, trans_dim) through ``reduce_dim``."""
        return self.reduce_dim(tokens)
