"""An in-memory point-cloud dataset: the item logic shared by every loader."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset


class PointCloudDataset(Dataset):
    """Clouds held in memory, served as ``(points (npoints, C) float32 tensor, label int)``.

    Args:
        points: (S, P, C) float32 array, C = 3 (xyz) or 6 (xyz + normals).
        labels: (S,) int64 array in ``0..len(class_names)-1``.
        class_names: one name per label.
        npoints: points per item: the first ``npoints`` of each stored cloud (the official
            ModelNet40 caches are FPS-ordered, so this is an FPS subset there).
        channels: 3 for xyz only, 6 for xyz + normals.
        shuffle_points: permute each item's points (the official loaders do it for the train
            split so that FPS in training does not always start at the same point). Uses torch's
            generator, which DataLoader seeds differently in each worker.
    """

    def __init__(
        self,
        points: np.ndarray,
        labels: np.ndarray,
        class_names: Sequence[str],
        npoints: int,
        channels: int = 3,
        shuffle_points: bool = False,
    ) -> None:
        self.points = points
        self.labels = labels
        self.class_names = list(class_names)
        self.npoints = npoints
        self.channels = channels
        self.shuffle_points = shuffle_points

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(class_names)``)."""
        return len(self.class_names)

    @property
    def npoints_available(self) -> int:
        """Points stored per sample (the most ``npoints`` can be)."""
        return int(self.points.shape[1])

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        cloud = torch.from_numpy(np.array(self.points[index, : self.npoints, : self.channels]))
        if self.shuffle_points:
            cloud = cloud[torch.randperm(cloud.shape[0])]
        return cloud, int(self.labels[index])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(samples={len(self)}, classes={self.num_classes}, "
            f"npoints={self.npoints}, channels={self.channels})"
        )
