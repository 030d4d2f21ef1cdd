"""Datasets: ScanObjectNN, ModelNet40, few-shot ModelNet40, ShapeNet-55, batch transforms, synthetic data.

``build_dataset(name, root, split, **options)`` is the entry point; ``datasets.transforms``
holds the augmentations; ``datasets.synthetic.make_synthetic`` writes small files in the
official layouts.
"""

from __future__ import annotations

from backbones.errors import DataError, DatasetError

from .classes import MODELNET40_CLASSES, SCANOBJECTNN_CLASSES
from .fewshot import ModelNetFewShotDataset, make_fewshot_folds
from .modelnet40 import ModelNet40Dataset, build_dat_cache, pc_normalize
from .registry import DATASETS, DatasetSpec, build_dataset, dataset_options, get_dataset_spec, list_datasets
from .scanobjectnn import ScanObjectNNDataset
from .shapenet55 import ShapeNet55Dataset
from .synthetic import make_synthetic

__all__ = [
    "MODELNET40_CLASSES",
    "SCANOBJECTNN_CLASSES",
    "DATASETS",
    "DataError",
    "DatasetError",
    "DatasetSpec",
    "ModelNet40Dataset",
    "ModelNetFewShotDataset",
    "ScanObjectNNDataset",
    "ShapeNet55Dataset",
    "build_dat_cache",
    "build_dataset",
    "dataset_options",
    "get_dataset_spec",
    "list_datasets",
    "make_fewshot_folds",
    "make_synthetic",
    "pc_normalize",
]
