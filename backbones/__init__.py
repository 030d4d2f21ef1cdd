"""Backbone zoo: point-cloud tokenizer, Point-MAE, Point-BERT, ACT, ReCon, PointGPT, official checkpoints,
Point-MAE's pre-training network and the Chamfer distance.

>>> import backbones
>>> backbones.list_backbones()
['act', 'point_bert', 'point_mae', 'point_mae_seg', 'point_mae_tiny', 'pointgpt_b', 'pointgpt_l', 'pointgpt_s', 'recon']
>>> model = backbones.create_backbone("point_mae", num_classes=15)  # doctest: +SKIP

This package is the foundation of the toolkit: every other package may import it. Its public names
load on first use, so that a module that needs only the error classes (``backbones.errors``, which
imports nothing of the toolkit) does not load the models.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the submodule that defines it
_EXPORTS = {
    "ACT": "act",
    "Attention": "layers",
    "Block": "layers",
    "CheckpointError": "errors",
    "ConfigError": "errors",
    "DataError": "errors",
    "DropPath": "layers",
    "Group": "tokenizer",
    "InputShapeError": "errors",
    "LoadReport": "checkpoint",
    "Mlp": "layers",
    "ModelConfigError": "errors",
    "NonFiniteError": "errors",
    "PatchEncoder": "patch_encoder",
    "PointBERT": "point_bert",
    "PointGPT": "point_gpt",
    "PointGPTB": "point_gpt",
    "PointGPTL": "point_gpt",
    "PointGPTS": "point_gpt",
    "PointMAE": "point_mae",
    "PointMAEPretrainer": "point_mae_pretrain",
    "PointMAESeg": "point_mae_seg",
    "PointMAETiny": "point_mae",
    "PointPatchTransformer": "point_transformer",
    "ReCon": "recon",
    "StateError": "errors",
    "ToolkitError": "errors",
    "TransformerEncoder": "layers",
    "UnknownNameError": "errors",
    "backbone_defaults": "registry",
    "backbone_target_modules": "registry",
    "backbone_task": "registry",
    "backbone_trainable_extra": "registry",
    "chamfer_distance": "chamfer",
    "chamfer_l1": "chamfer",
    "chamfer_l2": "chamfer",
    "checkpoint_filter_fn": "checkpoint",
    "classification_backbones": "registry",
    "create_backbone": "registry",
    "create_pretrainer": "registry",
    "farthest_point_sample": "tokenizer",
    "gather_points": "tokenizer",
    "group_points": "tokenizer",
    "knn_query": "tokenizer",
    "list_backbones": "registry",
    "list_pretrainers": "registry",
    "load_checkpoint": "checkpoint",
    "read_checkpoint": "checkpoint",
    "pretrainer_defaults": "registry",
    "register_backbone": "registry",
    "register_pretrainer": "registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'backbones' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
