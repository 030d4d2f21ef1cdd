"""Batch augmentations and FPS re-sampling for point clouds (docs/formats.md).

Every function takes a batch ``(B, N, C)`` with xyz in the first three channels (C = 3, or 6
with normals), returns a new tensor on the input's device and dtype, and draws its random
numbers from ``generator`` when one is given (on the generator's device, then moved), else
from torch's global generator.
"""

from __future__ import annotations

import math

import torch

from backbones.errors import InputShapeError
from backbones.tokenizer import farthest_point_sample, gather_points

# The official fine-tuning runner's FPS pool for each npoints (docs/formats.md).
_FPS_POINTS = {1024: 1200, 2048: 2400, 4096: 4800, 8192: 8192}


def _check_batch(points: torch.Tensor) -> None:
    if not isinstance(points, torch.Tensor) or points.dim() != 3 or points.shape[-1] < 3:
        shape = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
        raise InputShapeError(f"points must be a tensor of shape (B, N, 3 or more), got {shape}")
    if not points.is_floating_point():
        raise InputShapeError(f"points must be a floating-point tensor, got {points.dtype}")


def _rand(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """U(0, 1) samples of ``shape`` on ``like``'s device, drawn from ``generator`` if given."""
    device = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=device).to(like.device)


def _randn(shape: tuple[int, ...], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=device).to(like.device)


def scale_and_translate(
    points: torch.Tensor,
    scale_low: float = 2.0 / 3.0,
    scale_high: float = 3.0 / 2.0,
    translate: float = 0.2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per sample, scale each axis by U(scale_low, scale_high), then shift it by U(-translate, translate).

    Args:
        points: (B, N, C); only xyz change.

    Returns:
        (B, N, C).
    """
    _check_batch(points)
    batch = points.shape[0]
    scale = scale_low + (scale_high - scale_low) * _rand((batch, 1, 3), points, generator)
    shift = translate * (2 * _rand((batch, 1, 3), points, generator) - 1)
    out = points.clone()
    out[..., :3] = points[..., :3] * scale.to(points.dtype) + shift.to(points.dtype)
    return out


def rotation_matrices_y(angles: torch.Tensor) -> torch.Tensor:
    """(B,) angles -> (B, 3, 3) matrices R with ``p @ R`` rotating row vectors about the y axis."""
    cos, sin = torch.cos(angles), torch.sin(angles)
    zero, one = torch.zeros_like(angles), torch.ones_like(angles)
    rows = [torch.stack([cos, zero, sin], -1), torch.stack([zero, one, zero], -1), torch.stack([-sin, zero, cos], -1)]
    return torch.stack(rows, dim=-2)


def rotate_y(points: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rotate each sample about the y (up) axis by an angle U(0, 2π); normals turn with it.

    Args:
        points: (B, N, 3) or (B, N, 6) with normals in channels 3:6.

    Returns:
        same shape.
    """
    _check_batch(points)
    angles = 2 * math.pi * _rand((points.shape[0],), points, generator)
    rotation = rotation_matrices_y(angles).to(points.dtype)
    out = points.clone()
    out[..., :3] = points[..., :3] @ rotation
    if points.shape[-1] >= 6:
        out[..., 3:6] = points[..., 3:6] @ rotation
    return out


def jitter(
    points: torch.Tensor, sigma: float = 0.01, clip: float = 0.05, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Add per-point Gaussian noise N(0, sigma²) clipped to [-clip, clip] to xyz. (B, N, C) -> (B, N, C)."""
    _check_batch(points)
    noise = (sigma * _randn((*points.shape[:2], 3), points, generator)).clamp(-clip, clip)
    out = points.clone()
    out[..., :3] = points[..., :3] + noise.to(points.dtype)
    return out


def random_point_dropout(
    points: torch.Tensor, max_ratio: float = 0.875, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Per sample draw a ratio U(0, max_ratio); each point is dropped with that probability.

    A dropped point's xyz become the sample's first point (the batch keeps its shape), as in the
    PointNet++ augmentation. (B, N, C) -> (B, N, C).
    """
    _check_batch(points)
    if not 0 <= max_ratio < 1:
        raise InputShapeError(f"max_ratio must be in [0, 1), got {max_ratio}")
    ratio = max_ratio * _rand((points.shape[0], 1), points, generator)
    dropped = _rand(points.shape[:2], points, generator) <= ratio
    dropped[:, 0] = False
    out = points.clone()
    first = points[:, :1, :3].expand(-1, points.shape[1], -1)
    out[..., :3] = torch.where(dropped[..., None], first, points[..., :3])
    return out


def fps_points_for(npoints: int) -> int:
    """Size of the FPS pool the training re-sampling draws ``npoints`` from.

    1024 -> 1200, 2048 -> 2400, 4096 -> 4800, 8192 -> 8192 (the official runner); other sizes
    use the same ratio 75/64 below 8192 and ``npoints`` itself from 8192 on.
    """
    if npoints < 1:
        raise InputShapeError(f"npoints must be positive, got {npoints}")
    if npoints in _FPS_POINTS:
        return _FPS_POINTS[npoints]
    return npoints if npoints >= 8192 else math.ceil(npoints * 75 / 64)


def fps_resample(
    points: torch.Tensor,
    npoints: int,
    fps_points: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Training re-sampling: FPS to ``fps_points`` (capped at N), then a random ``npoints`` of those.

    Each sample gets its own random subset (the official runner shares one across the batch).
    For 2048-point ScanObjectNN clouds and npoints 2048 this is a random permutation.

    Args:
        points: (B, N, C), FPS on xyz, all channels gathered.
        npoints: points per output cloud.
        fps_points: FPS pool size; None = :func:`fps_points_for` (npoints).

    Returns:
        (B, npoints, C).
    """
    _check_batch(points)
    pool = min(fps_points if fps_points is not None else fps_points_for(npoints), points.shape[1])
    if npoints > pool:
        raise InputShapeError(
            f"cannot re-sample {npoints} points from clouds of {points.shape[1]} points (FPS pool {pool}); "
            f"lower npoints or give clouds with at least {npoints} points"
        )
    pool_idx = farthest_point_sample(points[..., :3].contiguous(), pool)
    subset = _rand((points.shape[0], pool), points, generator).argsort(dim=1)[:, :npoints]
    return gather_points(points, torch.gather(pool_idx, 1, subset))


def fps_subsample(points: torch.Tensor, npoints: int) -> torch.Tensor:
    """Evaluation sampling: the ``npoints`` farthest points (deterministic). (B, N, C) -> (B, npoints, C)."""
    _check_batch(points)
    return gather_points(points, farthest_point_sample(points[..., :3].contiguous(), npoints))
