"""Miniature official-layout datasets and tiny configs for the engine and CLI tests.

The clouds are class-dependent (each class an ellipsoid with its own axis ratios) so that a
tiny model can tell them apart a little, but the tests only rely on the files' layout.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pcclora.config import load_config

TINY_BACKBONE = [
    "backbone.trans_dim=32",
    "backbone.depth=2",
    "backbone.num_heads=2",
    "backbone.num_group=16",
    "backbone.group_size=8",
    "backbone.encoder_dims=32",
    "backbone.drop_path_rate=0.0",
]
TINY_TRAINING = [
    "training.batch_size=8",
    "training.test_batch_size=16",
    "training.max_epoch=0",
    "training.profile=false",
    "training.tensorboard=false",
    "scheduler.warmup_epochs=1",
    "scheduler.epochs=4",
    "peft.rank=2",
    "peft.num_bases=2",
]


def class_clouds(
    num_samples: int, num_points: int, num_classes: int, seed: int, channels: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """(S, P, channels) float32 ellipsoid surfaces whose axis ratios depend on the class, (S,) labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(num_samples) % num_classes
    directions = rng.normal(size=(num_samples, num_points, 3))
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    axes = 0.3 + 0.7 * ((labels[:, None] * np.array([1, 3, 7]) + np.array([0, 1, 2])) % num_classes) / num_classes
    points = directions * axes[:, None, :] + rng.normal(scale=0.01, size=directions.shape)
    if channels == 6:
        points = np.concatenate([points, directions], axis=-1)
    return points.astype(np.float32), labels.astype(np.int64)


def write_scanobjectnn(root: Path, num_train: int = 32, num_test: int = 15, num_points: int = 96) -> Path:
    """``root/main_split/{training,test}_objectdataset_augmentedrot_scale75.h5`` (PB_T50_RS layout)."""
    folder = root / "main_split"
    folder.mkdir(parents=True, exist_ok=True)
    for split, count, seed in (("training", num_train, 0), ("test", num_test, 1)):
        points, labels = class_clouds(count, num_points, 15, seed)
        with h5py.File(folder / f"{split}_objectdataset_augmentedrot_scale75.h5", "w") as handle:
            handle["data"] = points
            handle["label"] = labels
            handle["mask"] = np.zeros(points.shape[:2], dtype=np.int64)
    return root


def write_modelnet40_dat(root: Path, num_train: int = 40, num_test: int = 40, num_points: int = 96) -> Path:
    """``root/modelnet40_{train,test}_8192pts_fps.dat`` pickles (lists of (P, 6) arrays and (1,) labels)."""
    root.mkdir(parents=True, exist_ok=True)
    for split, count, seed in (("train", num_train, 2), ("test", num_test, 3)):
        points, labels = class_clouds(count, num_points, 40, seed, channels=6)
        content = [list(points), [np.array([label], dtype=np.int32) for label in labels]]
        with open(root / f"modelnet40_{split}_8192pts_fps.dat", "wb") as stream:
            pickle.dump(content, stream)
    return root


def write_fewshot(root: Path, way: int = 5, shot: int = 2, fold: int = 0, num_points: int = 96) -> Path:
    """``root/{way}way{shot}shot/{fold}.pkl`` with ``shot`` train and 20 test samples per class."""
    folder = root / f"{way}way{shot}shot"
    folder.mkdir(parents=True, exist_ok=True)
    content: dict[str, Any] = {}
    for split, per_class, seed in (("train", shot, 4), ("test", 20, 5)):
        points, labels = class_clouds(way * per_class, num_points, way, seed, channels=6)
        content[split] = [(cloud, int(label), int(label) * 3) for cloud, label in zip(points, labels, strict=True)]
    with open(folder / f"{fold}.pkl", "wb") as stream:
        pickle.dump(content, stream)
    return root


def tiny_overrides(data_root: Path, npoints: int = 64, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """``--set`` strings that shrink any packaged config to a seconds-long CPU run."""
    return [*TINY_BACKBONE, *TINY_TRAINING, f"dataset.root={data_root}", f"dataset.npoints={npoints}", *extra]


def tiny_config(
    name: str, data_root: Path, npoints: int = 64, extra: list[str] | tuple[str, ...] = ()
) -> dict[str, Any]:
    return load_config(name, tiny_overrides(data_root, npoints, extra))
