"""Datasets and loaders of a run, with a data order and randomness that depend on (seed, epoch).

Every epoch re-seeds python, numpy and torch from ``(seed, epoch, rank)`` and shuffles with a
generator seeded from ``(seed, epoch)``, so epoch ``e`` sees the same batches and augmentations
whether the run went straight through or was resumed after epoch ``e - 1``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Subset

from backbones.errors import ConfigError
from datasets import DATASETS, build_dataset, get_dataset_spec, make_synthetic
from pcclora.engine.distributed import DistributedContext
from pcclora.engine.seeding import derive_seed


@dataclass
class RunData:
    """The splits of a run and what the model needs to know about them.

    Attributes:
        train: what the run trains on (None when only evaluating).
        test: the labelled split the run is evaluated on.
        num_classes, class_names: of ``test``'s labels.
        eval_train: a labelled split the evaluation itself fits on (pre-training's linear probe);
            None for tasks whose model has its own head.
    """

    train: Dataset | None
    test: Dataset
    num_classes: int
    class_names: list[str]
    eval_train: Dataset | None = None


def ensure_synthetic(dataset_cfg: dict[str, Any], root: Path, log: Callable[[str], None] = print) -> None:
    """Write synthetic data in the official layout into ``root`` when it is missing and asked for."""
    synthetic = dataset_cfg["synthetic"]
    if not synthetic["enabled"] or root.exists():
        return
    name = dataset_cfg["name"]
    spec = get_dataset_spec(name)
    if spec.synthetic_format is None:
        writable = [other.name for other in DATASETS.values() if other.synthetic_format is not None]
        raise ConfigError(f"dataset.synthetic is available for {', '.join(writable)}, not {name!r}")
    log(
        f"dataset: {root} does not exist; writing synthetic {name} data there "
        f"({synthetic['num_train']} train / {synthetic['num_test']} test, seed {synthetic['seed']}); "
        "it is reused on the next run"
    )
    make_synthetic(
        spec.synthetic_format,
        root,
        num_train=synthetic["num_train"],
        num_test=synthetic["num_test"],
        seed=synthetic["seed"],
        num_points=synthetic["num_points"],
        **spec.synthetic_options(dataset_cfg),
    )


def build_run_data(
    dataset_cfg: dict[str, Any], log: Callable[[str], None] = print, with_train: bool = True, shuffle_train: bool = True
) -> RunData:
    """The splits of the configured dataset (all stored points; FPS picks npoints per batch).

    Args:
        with_train: also load the train split (evaluation needs only the test split).
        shuffle_train: serve the train split's points in a new order at every read, as the official
            loaders do for training; ``False`` for a train split that an evaluation reads (a linear
            probe), which must see the same points every time.

    Raises:
        ConfigError: no root configured or the folder is missing (names the path and the source).
        DatasetError: from the loaders, for missing or malformed files.
    """
    name = dataset_cfg["name"]
    spec = get_dataset_spec(name)
    options = spec.options_from_config(dataset_cfg)
    if dataset_cfg["root"] is None:
        raise ConfigError(
            f"no data folder for {name}: pass --data-root DIR (or set dataset.root); it should hold the {spec.source}"
        )
    root = Path(str(dataset_cfg["root"])).expanduser()  # str(): YAML reads a bare number as an int
    ensure_synthetic(dataset_cfg, root, log)
    train_options = (
        options if shuffle_train or "shuffle_points" not in spec.options else {**options, "shuffle_points": False}
    )
    train = build_dataset(name, root, "train", **train_options) if with_train else None
    test = build_dataset(name, root, "test", **options)
    for split, dataset in (("train", train), ("test", test)):
        if dataset is None:
            continue
        if dataset.npoints_available < dataset_cfg["npoints"]:
            raise ConfigError(
                f"dataset.npoints is {dataset_cfg['npoints']} but the {split} clouds of {root} have only "
                f"{dataset.npoints_available} points; lower dataset.npoints"
            )
    return RunData(train=train, test=test, num_classes=test.num_classes, class_names=list(test.class_names))


def check_batch_size(num_samples: int, batch_size: int, world_size: int) -> None:
    """Fail before a run starts when ``training.batch_size`` gives no full batch per process.

    Raises:
        ConfigError: fewer samples per process than its share of the batch.
    """
    per_rank = batch_size // world_size
    if per_rank < 1 or num_samples // world_size < per_rank:
        raise ConfigError(
            f"training.batch_size {batch_size} does not fit {num_samples} training samples over "
            f"{world_size} process(es); lower training.batch_size"
        )


def train_loader(
    dataset: Dataset, batch_size: int, seed: int, epoch: int, context: DistributedContext, num_workers: int
) -> DataLoader:
    """The shuffled, drop-last loader of one epoch; its order is a function of (seed, epoch).

    Under DDP each rank reads its shard (``DistributedSampler`` with ``set_epoch``) and the
    batch size is the per-rank share of ``batch_size``.
    """
    check_batch_size(len(dataset), batch_size, context.world_size)
    per_rank = batch_size // context.world_size
    if context.enabled:
        sampler: Any = DistributedSampler(
            dataset, num_replicas=context.world_size, rank=context.rank, shuffle=True, seed=seed, drop_last=True
        )
        sampler.set_epoch(epoch)
    else:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(derive_seed(seed, epoch)))
    return DataLoader(
        dataset,
        batch_size=per_rank,
        sampler=sampler,
        drop_last=True,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(derive_seed(seed, epoch, 1)),
        pin_memory=context.device.type == "cuda",
    )


def test_loader(dataset: Dataset, batch_size: int, context: DistributedContext, num_workers: int) -> DataLoader:
    """In-order loader of this rank's share of the test set (every sample exactly once overall)."""
    if context.enabled:
        dataset = Subset(dataset, list(range(context.rank, len(dataset), context.world_size)))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=context.device.type == "cuda",
    )
