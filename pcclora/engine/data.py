"""Datasets and loaders of a run, with a data order and randomness that depend on (seed, epoch).

Every epoch re-seeds python, numpy and torch from ``(seed, epoch, rank)`` and shuffles with a
generator seeded from ``(seed, epoch)``, so epoch ``e`` sees the same batches and augmentations
whether the run went straight through or was resumed after epoch ``e - 1``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Subset

from backbones.errors import ConfigError
from pcclora.engine.distributed import DistributedContext

# Where each dataset comes from, for the message when its folder is missing.
DATASET_SOURCES = {
    "scanobjectnn": (
        "ScanObjectNN h5 files (main_split/, main_split_nobg/) from https://hkust-vgd.github.io/scanobjectnn/"
    ),
    "modelnet40": (
        "modelnet40_normal_resampled/ (or the modelnet40_{train,test}_8192pts_fps.dat files) as linked "
        "from the Point-BERT / Point-MAE DATASET.md"
    ),
    "modelnet40_fewshot": "ModelNetFewshot/ fold files as linked from the Point-BERT / Point-MAE DATASET.md",
}
SYNTHETIC_FORMAT = {"scanobjectnn": "scanobjectnn", "modelnet40": "modelnet40"}


def derive_seed(*parts: int) -> int:
    """A well-mixed 31-bit seed from integers (seed, epoch, rank, ...)."""
    return int(np.random.SeedSequence([int(part) for part in parts]).generate_state(1)[0] >> 1)


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class RunData:
    """The two splits of a run and what the model needs to know about them."""

    train: Dataset | None
    test: Dataset
    num_classes: int
    class_names: list[str]


def _dataset_options(dataset_cfg: dict[str, Any]) -> dict[str, Any]:
    name = dataset_cfg["name"]
    if name == "scanobjectnn":
        return {"variant": dataset_cfg["variant"]}
    if name == "modelnet40":
        return {"source": dataset_cfg["source"], "use_normals": dataset_cfg["use_normals"]}
    if name == "modelnet40_fewshot":
        return {
            "way": dataset_cfg["way"],
            "shot": dataset_cfg["shot"],
            "fold": dataset_cfg["fold"],
            "use_normals": dataset_cfg["use_normals"],
        }
    raise ConfigError(
        f"unknown dataset.name {name!r}; choose one of {', '.join(DATASET_SOURCES)}"
    )


def ensure_synthetic(dataset_cfg: dict[str, Any], root: Path, log: Callable[[str], None] = print) -> None:
    """Write synthetic data in the official layout into ``root`` when it is missing and asked for."""
    synthetic = dataset_cfg["synthetic"]
    if not synthetic["enabled"] or root.exists():
        return
    name = dataset_cfg["name"]
    if name not in SYNTHETIC_FORMAT:
        raise ConfigError(f"dataset.synthetic is available for {', '.join(SYNTHETIC_FORMAT)}, not {name!r}")
    from datasets.synthetic import make_synthetic

    log(
        f"dataset: {root} does not exist; writing synthetic {name} data there "
        f"({synthetic['num_train']} train / {synthetic['num_test']} test, seed {synthetic['seed']}); "
        "it is reused on the next run"
    )
    options = {"variants": [dataset_cfg["variant"]]} if name == "scanobjectnn" else {}
    make_synthetic(
        SYNTHETIC_FORMAT[name],
        root,
        num_train=synthetic["num_train"],
        num_test=synthetic["num_test"],
        seed=synthetic["seed"],
        num_points=synthetic["num_points"],
        **options,
    )


def build_run_data(dataset_cfg: dict[str, Any], log: Callable[[str], None] = print, with_train: bool = True) -> RunData:
    """The splits of the configured dataset (all stored points; FPS picks npoints per batch).

    Args:
        with_train: also load the train split (evaluation needs only the test split).

    Raises:
        ConfigError: no root configured or the folder is missing (names the path and the source).
        DatasetError: from the loaders, for missing or malformed files.
    """
    from datasets import build_dataset

    name = dataset_cfg["name"]
    options = _dataset_options(dataset_cfg)
    if dataset_cfg["root"] is None:
        raise ConfigError(
            f"no data folder for {name}: pass --data-root DIR (or set dataset.root); "
            f"it should hold the {DATASET_SOURCES[name]}"
        )
    root = Path(str(dataset_cfg["root"])).expanduser()  # str(): YAML reads a bare number as an int
    ensure_synthetic(dataset_cfg, root, log)
    train = build_dataset(name, root, "train", **options) if with_train else None
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


def train_loader(
    dataset: Dataset, batch_size: int, seed: int, epoch: int, context: DistributedContext, num_workers: int
) -> DataLoader:
    """The shuffled, drop-last loader of one epoch; its order is a function of (seed, epoch).

    Under DDP each rank reads its shard (``DistributedSampler`` with ``set_epoch``) and the
    batch size is the per-rank share of ``batch_size``.
    """
    per_rank = batch_size // context.world_size
    if per_rank < 1 or len(dataset) // context.world_size < per_rank:
        raise ConfigError(
            f"training.batch_size {batch_size} does not fit {len(dataset)} training samples over "
            f"{context.world_size} process(es); lower training.batch_size"
        )
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
