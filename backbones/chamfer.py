"""Chamfer distance between point sets, in plain PyTorch (CPU and CUDA), optionally through pytorch3d.

For clouds ``x`` (B, N, 3) and ``y`` (B, M, 3), :func:`chamfer_distance` returns the squared
distance of every point to its nearest neighbour in the other cloud, ``dist1`` (B, N) and
``dist2`` (B, M), as the official CUDA extension (``extensions/chamfer_dist`` of Point-MAE,
ACT, ReCon, PointGPT) does. The official losses built on them:

- ``ChamferDistanceL2`` = ``mean(dist1) + mean(dist2)`` (the means over every point of the
  batch): :func:`chamfer_l2`, Point-MAE's pre-training loss (``loss: cdl2``);
- ``ChamferDistanceL1`` = ``(mean(sqrt(dist1)) + mean(sqrt(dist2))) / 2``: :func:`chamfer_l1`.

Memory. The (B, N, M) matrix of squared distances is never held whole: it is computed in chunks
of at most :data:`CHUNK_ELEMENTS` entries (whole clouds at a time when a cloud's matrix fits,
else rows of one cloud), without autograd, and only the nearest-neighbour indices are kept. The
distances are then recomputed from the gathered neighbours, differentiably: the gradient is the
official one, 2·(x − nearest) for each point and its negative, summed, for the neighbours.
Peak memory is about 2 × :data:`CHUNK_ELEMENTS` floats plus O(B·(N + M)), so 128 × 38 masked
patches of 32 points and two 8192-point clouds both fit in a few tens of MB.

Precision: the distances are sums over the three axes of squared coordinate differences (no
|x|² − 2x·y + |y|² cancellation), in the inputs' precision but at least float32. Among exactly
tied neighbours the first index is kept (the values are equal either way).

Backends: ``"torch"`` (default, nothing to compile) and ``"pytorch3d"`` (``pytorch3d.ops.knn_points``
with K = 1 for the per-point distances, ``pytorch3d.loss.chamfer_distance`` for the L2 loss),
used when asked for (``backend="pytorch3d"`` or ``PCCLORA_CHAMFER_BACKEND=pytorch3d``) and when
pytorch3d really imports. :func:`chamfer_naive` is a loop reference of the same definition that
the tests use.
"""

from __future__ import annotations

import functools
import os

import torch

from .errors import InputShapeError, UnknownNameError, unknown_name_message
from .tokenizer import check_points

BACKENDS = ("torch", "pytorch3d")
#: Entries of the squared-distance matrix computed at once (16 MB of float32).
CHUNK_ELEMENTS = 1 << 22


@functools.lru_cache(maxsize=1)
def _pytorch3d_import_error() -> str | None:
    """``None`` when ``pytorch3d.ops`` and ``pytorch3d.loss`` import, else why not (tried once)."""
    try:
        import pytorch3d.loss  # noqa: F401  (the import is the check: it loads the compiled part)
        import pytorch3d.ops  # noqa: F401
    except (ImportError, OSError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def resolve_chamfer_backend(backend: str = "auto") -> str:
    """Turn ``"auto"`` into ``"torch"`` (or ``"pytorch3d"`` when the environment asks and it imports).

    Raises:
        UnknownNameError: an unknown backend, or ``"pytorch3d"`` asked for explicitly and not importable.
    """
    if backend == "auto":
        backend = os.environ.get("PCCLORA_CHAMFER_BACKEND", "torch")
        if backend == "pytorch3d" and _pytorch3d_import_error() is not None:
            backend = "torch"
    if backend not in BACKENDS:
        raise UnknownNameError(unknown_name_message("chamfer backend", backend, ("auto", *BACKENDS)))
    if backend == "pytorch3d" and _pytorch3d_import_error() is not None:
        raise UnknownNameError(
            "chamfer backend 'pytorch3d' was asked for but pytorch3d is not installed or does not import "
            f"({_pytorch3d_import_error()}); install a pytorch3d built for this torch, or use the 'torch' "
            "backend, which needs nothing"
        )
    return backend


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    check_points(x, "x")
    check_points(y, "y")
    if x.shape[0] != y.shape[0]:
        raise InputShapeError(f"x and y must hold the same number of clouds, got {x.shape[0]} and {y.shape[0]}")
    if x.shape[1] == 0 or y.shape[1] == 0:
        raise InputShapeError(
            f"the Chamfer distance needs at least one point per cloud, got x {tuple(x.shape)}, y {tuple(y.shape)}"
        )
    if x.device != y.device:
        raise InputShapeError(f"x and y must be on the same device, got {x.device} and {y.device}")


def _chunk_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared distances (b, n, m) of x (b, n, 3) to y (b, m, 3): Σ over the axes of (x − y)²."""
    out = (x[..., 0:1] - y[..., 0].unsqueeze(1)).square_()
    for axis in (1, 2):
        out.add_((x[..., axis : axis + 1] - y[..., axis].unsqueeze(1)).square_())
    return out


@torch.no_grad()
def nearest_neighbours(
    x: torch.Tensor, y: torch.Tensor, chunk_elements: int = CHUNK_ELEMENTS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of each point's nearest neighbour in the other cloud, both ways, chunked.

    Args:
        x: (B, N, 3); y: (B, M, 3), on one device.
        chunk_elements: the most distance entries computed at once.

    Returns:
        ``idx1`` (B, N) into y and ``idx2`` (B, M) into x (int64).
    """
    _check_pair(x, y)
    dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)
    x, y = x.detach().to(dtype), y.detach().to(dtype)
    batch, n, m = x.shape[0], x.shape[1], y.shape[1]
    chunk_elements = max(int(chunk_elements), 1)
    if n * m <= chunk_elements:
        clouds, rows = max(chunk_elements // (n * m), 1), n
    else:
        clouds, rows = 1, max(chunk_elements // m, 1)
    idx1 = torch.empty(batch, n, dtype=torch.long, device=x.device)
    idx2 = torch.empty(batch, m, dtype=torch.long, device=x.device)
    for b0 in range(0, batch, clouds):
        b1 = min(b0 + clouds, batch)
        best2 = torch.full((b1 - b0, m), float("inf"), dtype=dtype, device=x.device)
        arg2 = torch.zeros(b1 - b0, m, dtype=torch.long, device=x.device)
        for r0 in range(0, n, rows):
            r1 = min(r0 + rows, n)
            distances = _chunk_distances(x[b0:b1, r0:r1], y[b0:b1])  # (b, r, m)
            idx1[b0:b1, r0:r1] = distances.argmin(dim=2)
            values, index = distances.min(dim=1)  # (b, m): the best of these rows
            better = values < best2  # strict: among ties the earlier row (lower index) stays
            best2 = torch.where(better, values, best2)
            arg2 = torch.where(better, index + r0, arg2)
        idx2[b0:b1] = arg2
    return idx1, idx2


def _squared_to(points: torch.Tensor, others: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """‖points − others[idx]‖² per point, differentiable w.r.t. both: (B, N, 3), (B, M, 3), (B, N) → (B, N)."""
    nearest = torch.gather(others, 1, idx.unsqueeze(-1).expand(-1, -1, others.shape[-1]))
    return (points - nearest).square().sum(dim=-1)


def chamfer_distance(
    x: torch.Tensor, y: torch.Tensor, backend: str = "auto", chunk_elements: int = CHUNK_ELEMENTS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared nearest-neighbour distances both ways, as the official ``ChamferFunction``.

    Args:
        x: (B, N, 3); y: (B, M, 3) (floating point, one device).
        backend: ``"auto"``, ``"torch"`` or ``"pytorch3d"`` (module docstring).
        chunk_elements: torch backend: the most distance entries computed at once.

    Returns:
        ``dist1`` (B, N): for each point of x the squared distance to its nearest point of y;
        ``dist2`` (B, M) the other way. Differentiable w.r.t. x and y; in the inputs' precision,
        at least float32.

    Raises:
        InputShapeError: not (B, N, 3) / (B, M, 3) floating tensors of one batch size and device,
            or an empty cloud.
    """
    _check_pair(x, y)
    dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)
    x, y = x.to(dtype), y.to(dtype)
    if resolve_chamfer_backend(backend) == "pytorch3d":
        from pytorch3d.ops import knn_points

        dist1 = knn_points(x.float(), y.float(), K=1).dists[..., 0]
        dist2 = knn_points(y.float(), x.float(), K=1).dists[..., 0]
        return dist1.to(dtype), dist2.to(dtype)
    idx1, idx2 = nearest_neighbours(x, y, chunk_elements)
    return _squared_to(x, y, idx1), _squared_to(y, x, idx2)


def chamfer_l2(
    x: torch.Tensor, y: torch.Tensor, backend: str = "auto", chunk_elements: int = CHUNK_ELEMENTS
) -> torch.Tensor:
    """The official ``ChamferDistanceL2``: ``mean(dist1) + mean(dist2)`` over the whole batch (a scalar)."""
    if resolve_chamfer_backend(backend) == "pytorch3d":
        _check_pair(x, y)
        from pytorch3d.loss import chamfer_distance as pytorch3d_chamfer

        # Default reductions: mean over each cloud's points, then over the batch; with one
        # point count per cloud that is the official mean over every point of the batch.
        loss, _ = pytorch3d_chamfer(x.float(), y.float())
        return loss
    dist1, dist2 = chamfer_distance(x, y, "torch", chunk_elements)
    return dist1.mean() + dist2.mean()


def chamfer_l1(
    x: torch.Tensor, y: torch.Tensor, backend: str = "auto", chunk_elements: int = CHUNK_ELEMENTS
) -> torch.Tensor:
    """The official ``ChamferDistanceL1``: ``(mean(sqrt(dist1)) + mean(sqrt(dist2))) / 2`` (a scalar).

    As in the official code, a point that coincides with its neighbour has distance 0, whose
    square root has no finite gradient.
    """
    dist1, dist2 = chamfer_distance(x, y, backend, chunk_elements)
    return (dist1.sqrt().mean() + dist2.sqrt().mean()) / 2


#: The official loss names (``model.loss`` in Point-MAE's pre-training config).
CHAMFER_LOSSES = {"cdl2": chamfer_l2, "cdl1": chamfer_l1}


def chamfer_naive(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Loop reference of :func:`chamfer_distance` (float64, no chunking, no autograd tricks)."""
    x64, y64 = x.detach().double(), y.detach().double()
    dist1 = torch.empty(x.shape[:2], dtype=torch.float64)
    dist2 = torch.empty(y.shape[:2], dtype=torch.float64)
    for b in range(x.shape[0]):
        for i in range(x.shape[1]):
            dist1[b, i] = min(float(((x64[b, i] - y64[b, j]) ** 2).sum()) for j in range(y.shape[1]))
        for j in range(y.shape[1]):
            dist2[b, j] = min(float(((y64[b, j] - x64[b, i]) ** 2).sum()) for i in range(x.shape[1]))
    return dist1, dist2
