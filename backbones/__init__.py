"""Backbone zoo: point-cloud tokenizer, Point-MAE and Point-BERT, official checkpoint loading.

>>> import backbones
>>> backbones.list_backbones()
['point_bert', 'point_mae']
>>> model = backbones.create_backbone("point_mae", num_classes=15)  # doctest: +SKIP
"""

from .checkpoint import LoadReport, checkpoint_filter_fn, load_checkpoint, read_checkpoint
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    InputShapeError,
    ModelConfigError,
    NonFiniteError,
    StateError,
    ToolkitError,
    UnknownNameError,
)
from .layers import Attention, Block, DropPath, Mlp, TransformerEncoder
from .patch_encoder import PatchEncoder
from .point_bert import PointBERT
from .point_mae import PointMAE
from .point_transformer import PointPatchTransformer
from .registry import backbone_defaults, create_backbone, list_backbones, register_backbone
from .tokenizer import Group, farthest_point_sample, gather_points, group_points, knn_query

__all__ = [
    "Attention",
    "Block",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DropPath",
    "Group",
    "InputShapeError",
    "LoadReport",
    "Mlp",
    "ModelConfigError",
    "NonFiniteError",
    "PatchEncoder",
    "PointBERT",
    "PointMAE",
    "PointPatchTransformer",
    "StateError",
    "ToolkitError",
    "TransformerEncoder",
    "backbone_defaults",
    "UnknownNameError",
    "checkpoint_filter_fn",
    "create_backbone",
    "farthest_point_sample",
    "gather_points",
    "group_points",
    "knn_query",
    "list_backbones",
    "load_checkpoint",
    "read_checkpoint",
    "register_backbone",
]
