"""One spec per dataset, and ``build_dataset(name, root, split, **options)`` that reads them.

Everything the toolkit knows about a dataset — its loader class and options, its classes, where
its files come from, its default folder, how to write a synthetic copy — is one
:class:`DatasetSpec` here. The engine, the profiler and ``make_synthetic`` read these specs, so
a new dataset is one loader module plus one entry in :data:`DATASETS`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backbones.errors import DataError, UnknownNameError, unknown_name_message

from .base import PointCloudDataset
from .classes import (
    FEWSHOT_SOURCE,
    MODELNET40_CLASSES,
    MODELNET40_SOURCE,
    SCANOBJECTNN_CLASSES,
    SCANOBJECTNN_SOURCE,
    SHAPENET55_SOURCE,
)
from .fewshot import ModelNetFewShotDataset
from .modelnet40 import ModelNet40Dataset
from .scanobjectnn import ScanObjectNNDataset
from .shapenet55 import ShapeNet55Dataset
from .shapenetpart import NUM_PARTS, SHAPENETPART_PART_NAMES, SHAPENETPART_SOURCE, ShapeNetPartDataset

#: Loader options that a run sets itself (it reads every stored point and picks ``npoints`` by FPS).
RUN_OWNED_OPTIONS = ("npoints", "shuffle_points")


@dataclass(frozen=True)
class DatasetSpec:
    """What the toolkit knows about one dataset.

    Attributes:
        name: the registered name (``dataset.name`` in a config).
        loader: the dataset class, called as ``loader(root, split, **options)``.
        source: where the files come from (quoted in the message when they are missing).
        default_root: the folder the packaged configs use, relative to the working folder.
        class_names: the label order when it is fixed (``None`` when it depends on the files or
            the options, e.g. a few-shot fold).
        num_classes: the class count from the dataset options alone, without reading a file.
        synthetic_format: the :func:`datasets.make_synthetic` format that writes this layout,
            or ``None`` when there is no synthetic writer.
        synthetic_options: turns the dataset options into that writer's keyword options.
        normalize: whether the loader centres each cloud and scales it into the unit sphere
            (predictions on other clouds do the same for a model trained on this dataset).
        labelled: whether the labels are classes to fine-tune on; ``False`` for a pre-training
            set (ShapeNet-55, whose items carry their taxonomy only for the interface's sake).
    """

    name: str
    loader: Callable[..., PointCloudDataset]
    source: str
    default_root: str
    class_names: tuple[str, ...] | None
    num_classes: Callable[[Mapping[str, Any]], int]
    normalize: bool
    synthetic_format: str | None = None
    synthetic_options: Callable[[Mapping[str, Any]], dict[str, Any]] = field(default=lambda options: {})
    labelled: bool = True

    @property
    def options(self) -> list[str]:
        """The loader's options besides ``root`` and ``split``, in its signature's order."""
        parameters = inspect.signature(self.loader).parameters
        return [option for option in parameters if option not in ("root", "split")]

    @property
    def config_options(self) -> list[str]:
        """The options a run takes from its ``dataset:`` section (all but :data:`RUN_OWNED_OPTIONS`)."""
        return [option for option in self.options if option not in RUN_OWNED_OPTIONS]

    def options_from_config(self, dataset_cfg: Mapping[str, Any]) -> dict[str, Any]:
        """The loader options of a resolved ``dataset:`` config section."""
        return {option: dataset_cfg[option] for option in self.config_options}


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="scanobjectnn",
            loader=ScanObjectNNDataset,
            source=SCANOBJECTNN_SOURCE,
            default_root="data/ScanObjectNN",
            class_names=SCANOBJECTNN_CLASSES,
            num_classes=lambda options: len(SCANOBJECTNN_CLASSES),
            normalize=False,
            synthetic_format="scanobjectnn",
            synthetic_options=lambda options: {"variants": [options.get("variant", "hardest")]},
        ),
        DatasetSpec(
            name="modelnet40",
            loader=ModelNet40Dataset,
            source=MODELNET40_SOURCE,
            default_root="data/ModelNet/modelnet40_normal_resampled",
            class_names=MODELNET40_CLASSES,
            num_classes=lambda options: len(MODELNET40_CLASSES),
            normalize=True,
            synthetic_format="modelnet40",
        ),
        DatasetSpec(
            name="modelnet40_fewshot",
            loader=ModelNetFewShotDataset,
            source=FEWSHOT_SOURCE,
            default_root="data/ModelNetFewshot",
            class_names=None,
            num_classes=lambda options: int(options.get("way", 5)),  # one class per way
            normalize=True,
        ),
        DatasetSpec(
            name="shapenet55",
            loader=ShapeNet55Dataset,
            source=SHAPENET55_SOURCE,
            default_root="data/ShapeNet55-34",
            class_names=None,
            num_classes=lambda options: 55,  # the official taxonomies (a synthetic copy has its own count)
            normalize=True,
            synthetic_format="shapenet55",
            labelled=False,
        ),
        DatasetSpec(
            name="shapenetpart",  # part segmentation (task: segmentation); items carry part labels
            loader=ShapeNetPartDataset,
            source=SHAPENETPART_SOURCE,
            default_root="data/shapenetcore_partanno_segmentation_benchmark_v0_normal",
            class_names=SHAPENETPART_PART_NAMES,
            num_classes=lambda options: NUM_PARTS,  # the model's outputs: part classes
            normalize=True,
            synthetic_format="shapenetpart",
        ),
    )
}


def list_datasets() -> list[str]:
    """Names :func:`build_dataset` accepts."""
    return list(DATASETS)


def get_dataset_spec(name: str) -> DatasetSpec:
    """The spec of a registered dataset.

    Raises:
        UnknownNameError: ``name`` is not registered (the nearest name is suggested).
    """
    if name not in DATASETS:
        raise UnknownNameError(unknown_name_message("dataset", name, DATASETS, cutoff=0.6))
    return DATASETS[name]


def dataset_options(name: str) -> list[str]:
    """The options a dataset takes besides root and split."""
    return get_dataset_spec(name).options


def build_dataset(name: str, root: Path | str, split: str, **options: object) -> PointCloudDataset:
    """Build a dataset by name.

    Args:
        name: ``"scanobjectnn"`` (options: variant in hardest/objbg/objonly, npoints,
            shuffle_points), ``"modelnet40"`` (npoints, use_normals, source in
            auto/txt/dat/h5, shuffle_points), ``"modelnet40_fewshot"`` (way, shot, fold,
            npoints, use_normals, shuffle_points), ``"shapenet55"`` (npoints, shuffle_points;
            the pre-training set) or ``"shapenetpart"`` (npoints, use_normals; items are
            ``(points, category, part labels (npoints,))``).
        root: the dataset folder (see each class).
        split: ``"train"`` or ``"test"``.

    Returns:
        a Dataset of ``(points (npoints, 3 or 6) float32 tensor, label int)`` with
        ``num_classes``, ``class_names`` and ``npoints_available``.

    Raises:
        UnknownNameError: unknown dataset name.
        DataError: an unknown option, or missing / malformed files (from the loader).
    """
    spec = get_dataset_spec(name)
    valid = spec.options
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise DataError(
            f"unknown option(s) {', '.join(unknown)} for dataset {name!r}; valid options: {', '.join(valid)}"
        )
    return spec.loader(root, split, **options)
