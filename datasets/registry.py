"""``build_dataset(name, root, split, **options)``: one entry point for every dataset."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

from torch.utils.data import Dataset

from backbones.errors import UnknownNameError

from backbones.errors import DataError
from .fewshot import ModelNetFewShotDataset
from .modelnet40 import ModelNet40Dataset
from .scanobjectnn import ScanObjectNNDataset

DATASETS: dict[str, Callable[..., Dataset]] = {
    "scanobjectnn": ScanObjectNNDataset,
    "modelnet40": ModelNet40Dataset,
    "modelnet40_fewshot": ModelNetFewShotDataset,
}


def list_datasets() -> list[str]:
    """Names :func:`build_dataset` accepts."""
    return list(DATASETS)


def dataset_options(name: str) -> list[str]:
    """The options a dataset takes besides root and split."""
    parameters = inspect.signature(DATASETS[name]).parameters
    return [option for option in parameters if option not in ("root", "split")]


def build_dataset(name: str, root: Path | str, split: str, **options: object) -> Dataset:
    """Build a dataset by name.

    Args:
        name: ``"scanobjectnn"`` (options: variant in hardest/objbg/objonly, npoints,
            shuffle_points), ``"modelnet40"`` (npoints, use_normals, source in
            auto/txt/dat/h5, shuffle_points) or ``"modelnet40_fewshot"`` (way, shot, fold,
            npoints, use_normals, shuffle_points).
        root: the dataset folder (see each class).
        split: ``"train"`` or ``"test"``.

    Returns:
        a Dataset of ``(points (npoints, 3 or 6) float32 tensor, label int)`` with
        ``num_classes``, ``class_names`` and ``npoints_available``.
    """
    if name not in DATASETS:
        raise UnknownNameError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    valid = dataset_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise DataError(
            f"unknown option(s) {', '.join(unknown)} for dataset {name!r}; valid options: {', '.join(valid)}"
        )
    return DATASETS[name](root, split, **options)
