"""Checks on loaded arrays; each failure is one :class:`DataError` naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backbones.errors import DataError


def check_clouds(points: np.ndarray, path: Path | str, channels: tuple[int, ...] = (3,)) -> np.ndarray:
    """Check a stack of clouds (S, N, C) and return it as float32.

    Raises DataError when it is not 3-D, has a channel count outside ``channels``, is empty,
    or holds NaN/Inf coordinates.
    """
    points = np.asarray(points)
    expected = " or ".join(str(c) for c in channels)
    if points.ndim != 3 or points.shape[-1] not in channels:
        raise DataError(f"{path}: point data has shape {points.shape}, expected (samples, points, {expected})")
    if points.shape[0] == 0 or points.shape[1] == 0:
        raise DataError(f"{path}: holds no points (shape {points.shape})")
    if not np.issubdtype(points.dtype, np.number):
        raise DataError(f"{path}: point data has dtype {points.dtype}, expected float")
    points = points.astype(np.float32, copy=False)
    finite = np.isfinite(points).all(axis=(1, 2))
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise DataError(
            f"{path}: {len(bad)} sample(s) hold NaN or Inf coordinates (first: sample {int(bad[0])}); "
            "the file is corrupt, re-create or re-download it"
        )
    return points


def check_labels(labels: np.ndarray, num_samples: int, num_classes: int, path: Path | str) -> np.ndarray:
    """Check labels of shape (S,) or (S, 1) against 0..num_classes-1 and return them as int64 (S,)."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or labels.shape[0] != num_samples:
        raise DataError(
            f"{path}: labels have shape {labels.shape}, expected ({num_samples},) or ({num_samples}, 1) "
            "— one label per sample"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.issubdtype(labels.dtype, np.floating) or not np.all(labels == np.round(labels)):
            raise DataError(f"{path}: labels have dtype {labels.dtype}, expected integers")
    labels = labels.astype(np.int64)
    out_of_range = (labels < 0) | (labels >= num_classes)
    if out_of_range.any():
        first = int(np.flatnonzero(out_of_range)[0])
        raise DataError(
            f"{path}: label {int(labels[first])} of sample {first} is outside 0..{num_classes - 1} "
            f"({num_classes} classes); the labels do not match the class list"
        )
    return labels


def check_npoints(npoints: int | None, available: int, path: Path | str) -> int:
    """Return the number of points per item: ``npoints`` (None = all available).

    Raises DataError when more points are asked for than every sample holds.
    """
    if npoints is None:
        return available
    if isinstance(npoints, bool) or not isinstance(npoints, (int, np.integer)) or npoints < 1:
        raise DataError(f"npoints must be a positive integer, got {npoints!r}")
    if npoints > available:
        raise DataError(
            f"{path}: npoints={npoints} was asked for but the samples hold only {available} points; "
            f"ask for at most {available} (or use data with more points per sample)"
        )
    return int(npoints)
