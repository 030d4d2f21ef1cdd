"""Point-MAE fine-tuning model (Pang et al., ECCV 2022), official module and key names."""

from __future__ import annotations

from typing import Any, ClassVar

from torch import nn

from .errors import ModelConfigError
from .point_transformer import PointPatchTransformer


class PointMAE(PointPatchTransformer):
    """Point-MAE classifier: mini-PointNet tokens straight into a 12 × 384 transformer.

    Defaults are the official ScanObjectNN setting (2048 points, 128 groups × 32). The head is
    Linear(2·trans_dim, 256) BN ReLU Dropout Linear(256, 256) BN ReLU Dropout Linear(256, C),
    whose linear/BN layers sit at indices 0, 1, 4, 5, 8 as in the official state dicts.
    22,093,327 parameters for C = 15.

    Args: see :class:`backbones.point_transformer.PointPatchTransformer`.
    """

    default_config: ClassVar[dict[str, Any]] = {
        "trans_dim": 384,
        "depth": 12,
        "num_heads": 6,
        "num_group": 128,
        "group_size": 32,
        "encoder_dims": 384,
        "drop_path_rate": 0.1,
        "mlp_ratio": 4.0,
    }

    def __init__(self, num_classes: int, **overrides: Any) -> None:
        super().__init__(num_classes, **{**self.default_config, **overrides})
        if self.encoder_dims != self.trans_dim:
            # Point-MAE feeds encoder tokens to the transformer without a projection.
            raise ModelConfigError(
                f"Point-MAE needs encoder_dims == trans_dim (it has no reduce_dim), got "
                f"encoder_dims={self.encoder_dims}, trans_dim={self.trans_dim}"
            )
        self.cls_head_finetune = nn.Sequential(
            nn.Linear(self.trans_dim * 2, 256),
            nn.BatchNorm1d(256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(256, 256),
            nn.BatchNorm1d(256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(256, self.num_classes),
        )
        self._init_backbone_weights()


#: The sizes of the small Point-MAE whose pre-trained weights ship with pcclora
#: (``backbones/weights``; docs/recipes.md, "The shipped pre-trained backbone").
POINT_MAE_TINY_SIZES: dict[str, Any] = {
    "trans_dim": 128,
    "depth": 4,
    "num_heads": 4,
    "num_group": 32,
    "group_size": 16,
    "encoder_dims": 128,
    "drop_path_rate": 0.1,
    "mlp_ratio": 4.0,
}


class PointMAETiny(PointMAE):
    """The Point-MAE classifier at the size of pcclora's shipped pre-trained backbone.

    The same module tree and key names as :class:`PointMAE` (any ``point_mae`` tool or method
    applies); only the default sizes differ (:data:`POINT_MAE_TINY_SIZES`).
    ``backbones.create_backbone("point_mae_tiny", num_classes=C, pretrained=True)`` loads the
    shipped weights (pre-trained with ``tools/pretrain.py`` on synthetic ShapeNet-55-layout data).
    """

    default_config: ClassVar[dict[str, Any]] = dict(POINT_MAE_TINY_SIZES)
