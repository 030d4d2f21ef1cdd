"""Point tokenizer: farthest point sampling (FPS) of patch centres and kNN grouping.

Semantics (docs/formats.md, "Tokenizer"): the first centre is point index 0 (unless
``random_start_point``); each next centre is the point with the largest squared distance to the
already chosen set, the first index on ties.  Each
centre's neighbourhood is its ``k`` nearest points by exact Euclidean distance (the centre is
among them), sorted by distance, then expressed relative to the centre.

Precision: the torch backend computes distances in the input's precision, at least float32
(float64 clouds in float64; float32, float16 and bfloat16 clouds in float32), as sums of squared
coordinate differences. The pytorch3d backend computes in float32 whatever the input (its
kernels take float32 only).

Backends behind one interface:

- ``"torch"``: plain PyTorch, CPU and CUDA, nothing to compile (the default).
- ``"pytorch3d"``: ``pytorch3d.ops`` when it really imports (optional).
- ``"auto"``: ``"torch"``; set ``PCCLORA_TOKENIZER_BACKEND=pytorch3d`` to prefer pytorch3d.
  The torch path is the default because it is at least as fast on CPU (see the README's tokenizer figures).

The torch backend keeps the coordinates as (B, 3, N) so every per-centre step works on contiguous
rows, and ``group_points`` reuses the distance rows FPS computes as the kNN distances (one distance
pass instead of two; see ``_fps_knn_torch``). On the CPU, the FPS loop runs in rounds, each
on one intra-op thread or on the caller's count, whichever is faster at the time: the loop's
many small ops gain from a second thread on a quiet machine but lose badly when other
processes occupy the cores (:mod:`backbones.threads`, ``FPS_THREADS``).

Gradients: indices are computed without autograd (on detached inputs); the centres and
neighbourhoods ``group_points`` returns are gathered from the input tensor itself, so they are
differentiable with respect to the points (as pytorch3d's gathered points are), and a model
built on the tokenizer is differentiable with respect to its input. ``knn_query(...,
return_distances=True)`` recomputes the distances from the gathered points, differentiably.

Beyond the defaults, as in pytorch3d: ``lengths`` (per-cloud point counts of a padded batch),
``random_start_point`` (FPS from a random point instead of index 0) and ``return_distances``.

``fps_naive`` and ``knn_naive`` are loop implementations of the same semantics that the tests
use as the reference.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Sequence

import torch
from torch import nn

from .errors import InputShapeError, UnknownNameError, unknown_name_message
from .threads import AdaptiveThreads

BACKENDS = ("torch", "pytorch3d")

#: What ``lengths`` may be: a (B,) integer tensor or a sequence of B integers.
Lengths = torch.Tensor | Sequence[int]


@functools.lru_cache(maxsize=1)
def _pytorch3d_import_error() -> str | None:
    """``None`` when ``pytorch3d.ops`` imports, else why it does not (tried once, then cached)."""
    try:
        import pytorch3d.ops  # noqa: F401  (the import is the check: it loads the compiled part)
    except (ImportError, OSError) as error:
        return f"{type(error).__name__}: {error}"
    return None


def pytorch3d_available() -> bool:
    """Whether ``pytorch3d.ops`` really imports, its compiled part ``pytorch3d._C`` included.

    A pytorch3d that is installed but built against another torch fails there; it counts as not
    available. The import is tried once per process.
    """
    return _pytorch3d_import_error() is None


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
            "tokenizer backend 'pytorch3d' was asked for but pytorch3d is not installed or does not "
            f"import ({_pytorch3d_import_error()}); install a pytorch3d built for this torch (conda or "
            "a source build), or use the 'torch' backend, which needs nothing"
        )
    return backend


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------


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


def _check_same_batch(query: torch.Tensor, points: torch.Tensor) -> None:
    """kNN pairs query set b with cloud b: same batch size, same device."""
    if query.shape[0] != points.shape[0]:
        raise InputShapeError(
            f"query has batch size {query.shape[0]} but points has {points.shape[0]}; kNN pairs query "
            f"set b with cloud b, so both need the same B (expand or repeat the smaller one if that "
            f"is what you mean)"
        )
    if query.device != points.device:
        raise InputShapeError(f"query is on {query.device} but points is on {points.device}; move both to one device")


def _check_lengths(lengths: Lengths | None, points: torch.Tensor, counts: dict[str, int]) -> torch.Tensor | None:
    """``lengths`` as a (B,) long tensor on the points' device, or ``None`` when every cloud is full.

    Args:
        lengths: valid points per cloud (the first ``lengths[b]`` of cloud b); ``None``: all N.
        points: the padded clouds (B, N, 3).
        counts: ``{setting name: points it needs}``; every cloud must have at least that many.
    """
    if lengths is None:
        return None
    batch, num_points = points.shape[:2]
    values = torch.as_tensor(lengths)
    if values.dim() != 1 or values.shape[0] != batch or values.is_floating_point() or values.dtype == torch.bool:
        raise InputShapeError(
            f"lengths must be {batch} integers (one per cloud, shape ({batch},)), got "
            f"{values.dtype} of shape {tuple(values.shape)}"
        )
    as_list = values.tolist()
    for b, length in enumerate(as_list):
        if length > num_points:
            raise InputShapeError(
                f"lengths[{b}] is {length} but the clouds hold {num_points} points (padded); a length must be at most N"
            )
        for what, need in counts.items():
            if length < need:
                raise InputShapeError(
                    f"cloud {b} has {length} points (lengths[{b}]) but {what} is {need}: "
                    f"give at least {need} valid points per cloud (or lower {what})"
                )
    if all(length == num_points for length in as_list):
        return None  # nothing is padded: the plain path gives the same result
    return values.to(device=points.device, dtype=torch.long)


def _padding_mask(lengths: torch.Tensor, num_points: int) -> torch.Tensor:
    """(B, N) bool, True where a point lies beyond its cloud's length."""
    return torch.arange(num_points, device=lengths.device) >= lengths[:, None]


def _start_indices(
    points: torch.Tensor, lengths: torch.Tensor | None, random_start_point: bool, generator: torch.Generator | None
) -> torch.Tensor | None:
    """First FPS centre per cloud: ``None`` for index 0, else a (B,) draw uniform over each cloud."""
    if not random_start_point:
        return None
    batch, num_points = points.shape[:2]
    counts = lengths.cpu() if lengths is not None else torch.full((batch,), num_points)
    draw = torch.rand(batch, generator=generator, dtype=torch.float64)  # on the CPU, like the generator
    start = (draw * counts).long().clamp_(max=counts - 1)
    return start.to(points.device)


def _work_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The precision distances are computed in: float64 if an input is float64, else float32."""
    dtype = torch.float32
    for tensor in tensors:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


# --------------------------------------------------------------------------------------------
# torch backend
# --------------------------------------------------------------------------------------------

#: Centres whose distance rows are held at once. Bounding the buffer to (B, 16, N) keeps memory
#: flat in G (a full (B, G, N) matrix is 0.5 GB at B=32, G=512, N=8192) and, on CPU, lets the
#: allocator reuse one small block instead of page-faulting a fresh large one on every call.
_ROW_BLOCK = 16


#: Chooses the FPS loop's intra-op thread count while it runs (:mod:`backbones.threads`).
FPS_THREADS = AdaptiveThreads()


def _squared_distances(
    points_t: torch.Tensor, centres_t: torch.Tensor, scratch: torch.Tensor, out: torch.Tensor
) -> torch.Tensor:
    """Exact squared distances: points_t (B, 3, 1, N), centres_t (B, 3, M, 1) → out (B, M, N).

    Computed as the sum over the 3 axes of (p - c)², by the same three kernels for FPS and kNN,
    so both see bit-identical distances (no |p|² - 2p·c + |c|² cancellation, which would reorder
    near-tied neighbours). ``scratch`` is a (B, 3, M, N) work buffer.
    """
    torch.sub(points_t, centres_t, out=scratch)
    scratch.square_()
    return torch.sum(scratch, dim=1, out=out)


def _fps_knn_torch(
    points: torch.Tensor,
    num_samples: int,
    k: int | None = None,
    lengths: torch.Tensor | None = None,
    start: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """FPS, and optionally the kNN of every chosen centre, in one pass (no autograd: detach first).

    FPS computes each centre's distances to all points anyway (to update the running minimum);
    the kNN reuses those rows, so grouping costs one distance pass instead of two.

    Args:
        points: (B, N, 3), without autograd history.
        num_samples: S centres.
        k: neighbours per centre, or ``None`` for FPS alone.
        lengths: (B,) valid points per cloud (checked), or ``None`` for all N.
        start: (B,) first centre per cloud, or ``None`` for index 0.

    Returns:
        centre indices (B, S); neighbour indices (B, S, k) nearest first, or ``None`` without k.
    """
    batch, num_points, _ = points.shape
    device = points.device
    dtype = _work_dtype(points)
    pts_t = points.to(dtype).transpose(1, 2).contiguous()  # (B, 3, N): each axis contiguous
    # Running minimum of the squared distance to the chosen centres; padding stays at -1, below
    # every real point's value (>= 0), so argmax never picks it.
    min_dist = torch.full((batch, num_points), torch.inf, dtype=dtype, device=device)
    pad = None
    if lengths is not None:
        pad = _padding_mask(lengths, num_points)
        pts_t.masked_fill_(pad[:, None, :], 0.0)  # whatever the padding holds (NaN too) stays out
        min_dist.masked_fill_(pad, -1.0)
    pts_4 = pts_t[:, :, None, :]  # (B, 3, 1, N)
    scratch = torch.empty(batch, 3, 1, num_points, dtype=dtype, device=device)
    block = min(_ROW_BLOCK, num_samples) if k is not None else 1
    rows = torch.empty(batch, block, num_points, dtype=dtype, device=device)  # rows of recent centres
    row_out = [rows[:, slot : slot + 1] for slot in range(block)]  # (B, 1, N) views, made once
    row_flat = [rows[:, slot] for slot in range(block)]  # (B, N) views of the same rows
    neighbour_idx = torch.empty(batch, num_samples, k, dtype=torch.long, device=device) if k is not None else None
    nxt = start if start is not None else torch.zeros(batch, dtype=torch.long, device=device)
    chosen = [nxt]
    # Steps that compute a distance row: every centre's with kNN; without, the last centre's row
    # is not needed. Rounds of _ROW_BLOCK steps (one topk each with kNN) on one thread count each.
    num_steps = num_samples if k is not None else num_samples - 1
    work = batch * num_points
    kind = "fps+knn" if k is not None else "fps"
    with contextlib.closing(FPS_THREADS.steps(device, work, num_steps, _ROW_BLOCK, kind)) as steps:
        for i in steps:
            slot = i % block
            centre = torch.gather(pts_4, 3, nxt.view(batch, 1, 1, 1).expand(batch, 3, 1, 1))  # (B, 3, 1, 1)
            _squared_distances(pts_4, centre, scratch, row_out[slot])
            if neighbour_idx is not None and (slot == block - 1 or i == num_samples - 1):
                filled = rows[:, : slot + 1]
                if pad is not None:
                    filled.masked_fill_(pad[:, None, :], torch.inf)  # padding is never a neighbour
                neighbour_idx[:, i - slot : i + 1] = filled.topk(k, dim=-1, largest=False, sorted=True).indices
            if i == num_samples - 1:
                break
            torch.minimum(min_dist, row_flat[slot], out=min_dist)
            nxt = min_dist.argmax(dim=1)  # first index on ties
            chosen.append(nxt)
    return torch.stack(chosen, dim=1), neighbour_idx


def _knn_torch(query: torch.Tensor, points: torch.Tensor, k: int, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Neighbour indices (B, S, k), nearest first (no autograd: detach first)."""
    batch, num_queries, _ = query.shape
    num_points = points.shape[1]
    device = points.device
    dtype = _work_dtype(query, points)
    pts_t = points.to(dtype).transpose(1, 2).contiguous()  # (B, 3, N)
    pad = None
    if lengths is not None:
        pad = _padding_mask(lengths, num_points)
        pts_t.masked_fill_(pad[:, None, :], 0.0)
    pts_4 = pts_t[:, :, None, :]  # (B, 3, 1, N)
    query_t = query.to(dtype).transpose(1, 2)[..., None]  # (B, 3, S, 1)
    block = min(_ROW_BLOCK, num_queries)
    scratch = torch.empty(batch, 3, block, num_points, dtype=dtype, device=device)
    rows = torch.empty(batch, block, num_points, dtype=dtype, device=device)
    out = torch.empty(batch, num_queries, k, dtype=torch.long, device=device)
    for start in range(0, num_queries, block):
        size = min(block, num_queries - start)
        dist = _squared_distances(pts_4, query_t[:, :, start : start + size], scratch[:, :, :size], rows[:, :size])
        if pad is not None:
            dist.masked_fill_(pad[:, None, :], torch.inf)
        out[:, start : start + size] = dist.topk(k, dim=-1, largest=False, sorted=True).indices
    return out


# --------------------------------------------------------------------------------------------
# pytorch3d backend
# --------------------------------------------------------------------------------------------


def _fps_pytorch3d(
    points: torch.Tensor, num_samples: int, lengths: torch.Tensor | None, random_start_point: bool
) -> torch.Tensor:
    from pytorch3d.ops import sample_farthest_points

    _, idx = sample_farthest_points(
        points.float(), lengths=lengths, K=num_samples, random_start_point=random_start_point
    )
    return idx


def _knn_pytorch3d(query: torch.Tensor, points: torch.Tensor, k: int, lengths: torch.Tensor | None) -> torch.Tensor:
    from pytorch3d.ops import knn_points

    return knn_points(query.float(), points.float(), lengths2=lengths, K=k, return_sorted=True).idx


# --------------------------------------------------------------------------------------------
# public interface
# --------------------------------------------------------------------------------------------


def _fps_indices(
    points: torch.Tensor,
    num_samples: int,
    k: int | None,
    backend: str,
    lengths: torch.Tensor | None,
    random_start_point: bool,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Checked inputs → centre indices (and, on the torch backend with ``k``, neighbour indices)."""
    if backend == "pytorch3d":
        if generator is not None:
            raise InputShapeError(
                "generator was given with the 'pytorch3d' backend, which draws its random start "
                "point from torch's global generator; use backend='torch' or leave generator out"
            )
        with torch.no_grad():
            return _fps_pytorch3d(points.detach(), num_samples, lengths, random_start_point), None
    start = _start_indices(points, lengths, random_start_point, generator)
    with torch.no_grad():
        return _fps_knn_torch(points.detach(), num_samples, k, lengths, start)


def farthest_point_sample(
    points: torch.Tensor,
    num_samples: int,
    backend: str = "auto",
    *,
    lengths: Lengths | None = None,
    random_start_point: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Indices of ``num_samples`` farthest-point-sampled points.

    Args:
        points: (B, N, 3) float tensor.
        num_samples: S, at most N (at most each cloud's length).
        backend: ``"auto"``, ``"torch"`` or ``"pytorch3d"``.
        lengths: valid points per cloud of a padded batch, (B,) integers; only the first
            ``lengths[b]`` points of cloud b are sampled. ``None``: all N.
        random_start_point: start from a point drawn uniformly from each cloud instead of index 0.
        generator: a CPU ``torch.Generator`` for the random start (torch backend; ``None``: the
            global one).

    Returns:
        (B, S) long tensor, not differentiable (:func:`gather_points` gives the points, with
        gradients); column 0 is index 0 unless ``random_start_point``.
    """
    check_points(points)
    _check_count(points, num_samples, "num_samples")
    lengths = _check_lengths(lengths, points, {"num_samples": num_samples})
    backend = resolve_backend(backend)
    return _fps_indices(points, num_samples, None, backend, lengths, random_start_point, generator)[0]


def knn_query(
    query: torch.Tensor,
    points: torch.Tensor,
    k: int,
    backend: str = "auto",
    *,
    lengths: Lengths | None = None,
    return_distances: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Indices of the ``k`` nearest ``points`` of every query point, nearest first.

    Args:
        query: (B, S, 3) float tensor; query set b is matched against cloud b.
        points: (B, N, 3) float tensor.
        k: neighbours per query, at most N (at most each cloud's length).
        backend: ``"auto"``, ``"torch"`` or ``"pytorch3d"``.
        lengths: valid points per cloud of a padded ``points`` batch, (B,) integers; padding is
            never a neighbour. ``None``: all N. (Padded query rows are answered like the others;
            ignore them.)
        return_distances: also return the squared distances.

    Returns:
        (B, S, k) long tensor of indices into ``points``; with ``return_distances`` also the
        (B, S, k) squared distances in the precision they were computed in (float64 if an input
        is float64, else float32), non-decreasing along k and differentiable with respect to
        ``query`` and ``points``.
    """
    check_points(query, "query")
    check_points(points)
    _check_same_batch(query, points)
    _check_count(points, k, "k (group_size)")
    lengths = _check_lengths(lengths, points, {"k (group_size)": k})
    backend = resolve_backend(backend)
    with torch.no_grad():  # indices are not differentiable
        if backend == "pytorch3d":
            idx = _knn_pytorch3d(query.detach(), points.detach(), k, lengths)
        else:
            idx = _knn_torch(query.detach(), points.detach(), k, lengths)
    if not return_distances:
        return idx
    dtype = _work_dtype(query, points)
    return idx, _neighbour_distances(query.to(dtype), points.to(dtype), idx)


def _neighbour_distances(query: torch.Tensor, points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Squared distances (B, S, k) of each query to its listed neighbours, with autograd.

    Summed axis by axis in the order the torch backend sums them, so that in float32 they are the
    very values its ``topk`` ordered by.
    """
    diff = (gather_points(points, idx) - query[:, :, None, :]).square()
    return diff[..., 0] + diff[..., 1] + diff[..., 2]


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
    points: torch.Tensor,
    num_group: int,
    group_size: int,
    backend: str = "auto",
    *,
    lengths: Lengths | None = None,
    random_start_point: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a cloud into ``num_group`` local patches of ``group_size`` points.

    Args:
        points: (B, N, 3) float tensor, N ≥ max(num_group, group_size).
        backend: ``"auto"``, ``"torch"`` or ``"pytorch3d"``.
        lengths, random_start_point, generator: as :func:`farthest_point_sample`; with
            ``lengths`` every cloud needs at least max(num_group, group_size) valid points.

    Returns:
        neighborhood: (B, G, k, 3) patch points relative to their centre.
        center: (B, G, 3) patch centres in FPS order.
        Both are gathered from ``points`` and differentiable with respect to it.
    """
    check_points(points)
    _check_count(points, num_group, "num_group")
    _check_count(points, group_size, "group_size")
    lengths = _check_lengths(lengths, points, {"num_group": num_group, "group_size": group_size})
    backend = resolve_backend(backend)
    # Indices without autograd; the coordinates are then gathered from ``points`` itself, so that
    # centres and neighbourhoods are differentiable with respect to the points.
    center_idx, neighbour_idx = _fps_indices(
        points, num_group, group_size, backend, lengths, random_start_point, generator
    )
    center = gather_points(points, center_idx)
    if neighbour_idx is None:  # pytorch3d: kNN as a second pass
        with torch.no_grad():
            neighbour_idx = _knn_pytorch3d(center.detach(), points.detach(), group_size, lengths)
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


def fps_naive(
    points: torch.Tensor, num_samples: int, lengths: Sequence[int] | None = None, start: Sequence[int] | None = None
) -> torch.Tensor:
    """Loop reference of :func:`farthest_point_sample` (float64, one cloud at a time).

    ``lengths``: only the first ``lengths[b]`` points of cloud b count; ``start``: first centre
    of each cloud (default 0).
    """
    out = []
    for b, cloud in enumerate(points.double()):
        if lengths is not None:
            cloud = cloud[: int(lengths[b])]
        first = 0 if start is None else int(start[b])
        chosen = [first]
        best = ((cloud - cloud[first]) ** 2).sum(-1)
        for _ in range(1, num_samples):
            nxt = int(torch.nonzero(best == best.max())[0])
            chosen.append(nxt)
            best = torch.minimum(best, ((cloud - cloud[nxt]) ** 2).sum(-1))
        out.append(chosen)
    return torch.tensor(out, dtype=torch.long)


def knn_naive(query: torch.Tensor, points: torch.Tensor, k: int, lengths: Sequence[int] | None = None) -> torch.Tensor:
    """Loop reference of :func:`knn_query`: full sort of exact float64 distances, stable.

    ``lengths``: only the first ``lengths[b]`` points of cloud b are candidates.
    """
    out = []
    for b, (q_cloud, p_cloud) in enumerate(zip(query.double(), points.double(), strict=True)):
        if lengths is not None:
            p_cloud = p_cloud[: int(lengths[b])]
        rows = []
        for q in q_cloud:
            dist = ((p_cloud - q) ** 2).sum(-1)
            rows.append(torch.sort(dist, stable=True).indices[:k])
        out.append(torch.stack(rows))
    return torch.stack(out)
