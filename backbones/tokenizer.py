"""Point tokenizer: farthest point sampling (FPS) of patch centres and kNN grouping.

Semantics (docs/formats.md, "Tokenizer"): the first centre is point index 0; each next centre is the point
with the largest squared distance to the already chosen set, the first index on ties.  Each
centre's neighbourhood is its ``k`` nearest points by exact Euclidean distance (the centre is
among them), sorted by distance, then expressed relative to the centre.

Backends behind one interface:

- ``"torch"``: plain PyTorch, CPU and CUDA, nothing to compile (the default).
- ``"pytorch3d"``: ``pytorch3d.ops`` when it is importable (optional).
- ``"auto"``: ``"torch"``; set ``PCCLORA_TOKENIZER_BACKEND=pytorch3d`` to prefer pytorch3d.
  The torch path is the default because it is at least as fast on CPU (see the README's tokenizer figures).

The torch backend keeps the coordinates as (B, 3, N) so every per-centre step works on contiguous
rows, and ``group_points`` reuses the distance rows FPS computes as the kNN distances (one distance
pass instead of two; see ``_fps_knn_torch``).

Gradients: indices are computed without autograd (on detached inputs); the centres and
neighbourhoods ``group_points`` returns are gathered from the input tensor itself, so they are
differentiable with respect to the points (as pytorch3d's gathered points are), and a model
built on the tokenizer is differentiable with respect to its input.

``fps_naive`` and ``knn_naive`` are loop implementations of the same semantics that the tests
use as the reference.
"""

from __future__ import annotations

import importlib.util
import os

import torch
from torch import nn

from .errors import InputShapeError, UnknownNameError, unknown_name_message

BACKENDS = ("torch", "pytorch3d")


def pytorch3d_available() -> bool:
    """Whether ``pytorch3d.ops`` can be imported."""
    return importlib.util.find_spec("pytorch3d") is not None


def available_backends() -> list[str]:
    """The backends that can run here, ``"torch"`` first."""
    return ["torch"] + (["pytorch3d"] if pytorch3d_available() else [])


def resolve_backend(backend: str = "auto") -> str:
    """Turn ``"auto"`` into a concrete backend name and check that it can run."""
    if backend == "auto":
        backend = os.environ.get("PCCLORA_TOKENIZER_BACKEND", "torch")
        if backend == "pytorch3d" and not pytorch3d_available():
            backend = "torch"
    if backend not in BACKENDS:
        raise UnknownNameError(unknown_name_message("tokenizer backend", backend, ("auto", *BACKENDS)))
    if backend == "pytorch3d" and not pytorch3d_available():
        raise UnknownNameError(
            "tokenizer backend 'pytorch3d' was asked for but pytorch3d is not installed "
            "(it comes from conda or a source build; the 'torch' backend needs nothing)"
        )
    return backend


def check_points(points: torch.Tensor, name: str = "points") -> None:
    """Raise :class:`InputShapeError` unless ``points`` is a floating tensor (B, N, 3)."""
    if not isinstance(points, torch.Tensor):
        raise InputShapeError(f"{name} must be a torch.Tensor of shape (B, N, 3), got {type(points).__name__}")
    if points.dim() != 3 or points.shape[-1] != 3:
        raise InputShapeError(f"{name} must have shape (B, N, 3), got {tuple(points.shape)}")
    if not points.is_floating_point():
        raise InputShapeError(f"{name} must be a floating-point tensor, got {points.dtype}")


def _check_count(points: torch.Tensor, count: int, what: str) -> None:
    if count < 1:
        raise InputShapeError(f"{what} must be at least 1, got {count}")
    if points.shape[1] < count:
        raise InputShapeError(
            f"the cloud has {points.shape[1]} points but {what} is {count}: "
            f"give at least {count} points per cloud (or lower {what})"
        )


# --------------------------------------------------------------------------------------------
# torch backend
# --------------------------------------------------------------------------------------------

#: Centres whose distance rows are held at once. Bounding the buffer to (B, 16, N) keeps memory
#: flat in G (a full (B, G, N) matrix is 0.5 GB at B=32, G=512, N=8192) and, on CPU, lets the
#: allocator reuse one small block instead of page-faulting a fresh large one on every call.
_ROW_BLOCK = 16


def _squared_distances(
    points_t: torch.Tensor, centres_t: torch.Tensor, scratch: torch.Tensor, out: torch.Tensor
) -> torch.Tensor:
    """Exact squared distances: points_t (B, 3, N), centres_t (B, 3, M) → out (B, M, N).

    Computed as the sum over the 3 axes of (p - c)², in float32, by the same three kernels for
    FPS and kNN, so both see bit-identical distances (no |p|² - 2p·c + |c|² cancellation, which
    would reorder near-tied neighbours). ``scratch`` is a (B, 3, M, N) work buffer.
    """
    torch.sub(points_t[:, :, None, :], centres_t[..., None], out=scratch)
    scratch.square_()
    return torch.sum(scratch, dim=1, out=out)


def _fps_knn_torch(
    points: torch.Tensor, num_samples: int, k: int | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """FPS, and optionally the kNN of every chosen centre, in one pass.

    FPS computes each centre's distances to all points anyway (to update the running minimum);
    the kNN reuses those rows, so grouping costs one distance pass instead of two.

    Returns:
        centre indices (B, S); neighbour indices (B, S, k) nearest first, or ``None`` without k.
    """
    batch, num_points, _ = points.shape
    device = points.device
    pts_t = points.float().transpose(1, 2).contiguous()  # (B, 3, N): each axis contiguous
    centre_idx = torch.zeros(batch, num_samples, dtype=torch.long, device=device)
    scratch = torch.empty(batch, 3, 1, num_points, device=device)
    min_dist = torch.empty(batch, num_points, device=device)
    block = min(_ROW_BLOCK, num_samples) if k is not None else 1
    rows = torch.empty(batch, block, num_points, device=device)  # distance rows of recent centres
    neighbour_idx = torch.empty(batch, num_samples, k, dtype=torch.long, device=device) if k is not None else None
    last = torch.zeros(batch, 3, 1, dtype=torch.long, device=device)  # index of the newest centre
    for i in range(num_samples):
        if neighbour_idx is None and i == num_samples - 1:
            break  # the last centre's distances are only needed for its neighbours
        slot = i % block
        row = rows[:, slot : slot + 1]  # (B, 1, N)
        _squared_distances(pts_t, torch.gather(pts_t, 2, last), scratch, row)
        if neighbour_idx is not None and (slot == block - 1 or i == num_samples - 1):
            filled = rows[:, : slot + 1]
            neighbour_idx[:, i - slot : i + 1] = filled.topk(k, dim=-1, largest=False, sorted=True).indices
        if i == num_samples - 1:
            break
        if i == 0:
            min_dist.copy_(row[:, 0])
        else:
            torch.minimum(min_dist, row[:, 0], out=min_dist)
        nxt = min_dist.argmax(dim=1)  # first index on ties
        centre_idx[:, i + 1] = nxt
        last = nxt.view(batch, 1, 1).expand(batch, 3, 1)
    return centre_idx, neighbour_idx


def _fps_torch(points: torch.Tensor, num_samples: int) -> torch.Tensor:
    return _fps_knn_torch(points, num_samples)[0]


def _knn_torch(query: torch.Tensor, points: torch.Tensor, k: int) -> torch.Tensor:
    batch, num_queries, _ = query.shape
    num_points = points.shape[1]
    device = points.device
    pts_t = points.float().transpose(1, 2).contiguous()  # (B, 3, N)
    query_t = query.float().transpose(1, 2)  # (B, 3, S)
    block = min(_ROW_BLOCK, num_queries)
    scratch = torch.empty(batch, 3, block, num_points, device=device)
    rows = torch.empty(batch, block, num_points, device=device)
    out = torch.empty(batch, num_queries, k, dtype=torch.long, device=device)
    for start in range(0, num_queries, block):
        size = min(block, num_queries - start)
        dist = _squared_distances(pts_t, query_t[:, :, start : start + size], scratch[:, :, :size], rows[:, :size])
        out[:, start : start + size] = dist.topk(k, dim=-1, largest=False, sorted=True).indices
    return out


# --------------------------------------------------------------------------------------------
# pytorch3d backend
# --------------------------------------------------------------------------------------------


def _fps_pytorch3d(points: torch.Tensor, num_samples: int) -> torch.Tensor:
    from pytorch3d.ops import sample_farthest_points

    _, idx = sample_farthest_points(points.float(), K=num_samples, random_start_point=False)
    return idx


def _knn_pytorch3d(query: torch.Tensor, points: torch.Tensor, k: int) -> torch.Tensor:
    from pytorch3d.ops import knn_points

    return knn_points(query.float(), points.float(), K=k, return_sorted=True).idx


# --------------------------------------------------------------------------------------------
# public interface
# --------------------------------------------------------------------------------------------


def farthest_point_sample(points: torch.Tensor, num_samples: int, backend: str = "auto") -> torch.Tensor:
    """Indices of ``num_samples`` farthest-point-sampled points.

    Args:
        points: (B, N, 3) float tensor.
        num_samples: S, at most N.
        backend: ``"auto"``, ``"torch"`` or ``"pytorch3d"``.

    Returns:
        (B, S) long tensor; column 0 is always index 0.
    """
    check_points(points)
    _check_count(points, num_samples, "num_samples")
    backend = resolve_backend(backend)
    with torch.no_grad():  # indices are not differentiable
        if backend == "pytorch3d":
            return _fps_pytorch3d(points.detach(), num_samples)
        return _fps_torch(points.detach(), num_samples)


def knn_query(query: torch.Tensor, points: torch.Tensor, k: int, backend: str = "auto") -> torch.Tensor:
    """Indices of the ``k`` nearest ``points`` of every query point, nearest first.

    Args:
        query: (B, S, 3) float tensor.
        points: (B, N, 3) float tensor.
        k: neighbours per query, at most N.

    Returns:
        (B, S, k) long tensor of indices into ``points``.
    """
    check_points(query, "query")
    check_points(points)
    _check_count(points, k, "k (group_size)")
    backend = resolve_backend(backend)
    with torch.no_grad():  # indices are not differentiable
        if backend == "pytorch3d":
            return _knn_pytorch3d(query.detach(), points.detach(), k)
        return _knn_torch(query.detach(), points.detach(), k)


def gather_points(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Pick points by index.

    Args:
        points: (B, N, C).
        idx: (B, ...) long indices into N.

    Returns:
        (B, ..., C).
    """
    batch = points.shape[0]
    flat = idx.reshape(batch, -1)
    out = torch.gather(points, 1, flat[..., None].expand(-1, -1, points.shape[-1]))
    return out.reshape(*idx.shape, points.shape[-1])


def group_points(
    points: torch.Tensor, num_group: int, group_size: int, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a cloud into ``num_group`` local patches of ``group_size`` points.

    Args:
        points: (B, N, 3) float tensor, N ≥ max(num_group, group_size).

    Returns:
        neighborhood: (B, G, k, 3) patch points relative to their centre.
        center: (B, G, 3) patch centres in FPS order.
    """
    check_points(points)
    _check_count(points, num_group, "num_group")
    _check_count(points, group_size, "group_size")
    backend = resolve_backend(backend)
    # Indices without autograd; the coordinates are then gathered from ``points`` itself, so that
    # centres and neighbourhoods are differentiable with respect to the points.
    if backend == "torch":
        with torch.no_grad():
            center_idx, neighbour_idx = _fps_knn_torch(points.detach(), num_group, group_size)
        center = gather_points(points, center_idx)
    else:
        center_idx = farthest_point_sample(points, num_group, backend)
        center = gather_points(points, center_idx)
        neighbour_idx = knn_query(center, points, group_size, backend)
    neighborhood = gather_points(points, neighbour_idx) - center[:, :, None, :]
    return neighborhood, center


class Group(nn.Module):
    """FPS + kNN tokenizer as a module (no parameters), named ``group_divider`` in the models."""

    def __init__(self, num_group: int, group_size: int, backend: str = "auto") -> None:
        super().__init__()
        self.num_group = num_group
        self.group_size = group_size
        self.backend = backend

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, 3) → neighborhood (B, G, k, 3), center (B, G, 3)."""
        return group_points(points, self.num_group, self.group_size, self.backend)

    def extra_repr(self) -> str:
        return f"num_group={self.num_group}, group_size={self.group_size}, backend={self.backend!r}"


# --------------------------------------------------------------------------------------------
# references for the tests
# --------------------------------------------------------------------------------------------


def fps_naive(points: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Loop reference of :func:`farthest_point_sample` (float64, one cloud at a time)."""
    out = []
    for cloud in points.double():
        chosen = [0]
        best = ((cloud - cloud[0]) ** 2).sum(-1)
        for _ in range(1, num_samples):
            nxt = int(torch.nonzero(best == best.max())[0])
            chosen.append(nxt)
            best = torch.minimum(best, ((cloud - cloud[nxt]) ** 2).sum(-1))
        out.append(chosen)
    return torch.tensor(out, dtype=torch.long)


def knn_naive(query: torch.Tensor, points: torch.Tensor, k: int) -> torch.Tensor:
    """Loop reference of :func:`knn_query`: full sort of exact float64 distances, stable."""
    out = []
    for q_cloud, p_cloud in zip(query.double(), points.double(), strict=True):
        rows = []
        for q in q_cloud:
            dist = ((p_cloud - q) ** 2).sum(-1)
            rows.append(torch.sort(dist, stable=True).indices[:k])
        out.append(torch.stack(rows))
    return torch.stack(out)
