"""Tokenizer behaviour beyond the FPS / kNN semantics: gradients, input checks, the optional
features pytorch3d users expect, the pytorch3d availability check.

The semantics themselves (indices against the loop references) are in ``test_tokenizer.py``.
"""

from __future__ import annotations

import sys

import pytest
import torch

from backbones import InputShapeError, UnknownNameError, create_backbone
from backbones import tokenizer as tokenizer_module
from backbones.threads import AdaptiveThreads
from backbones.tokenizer import (
    FPS_THREADS,
    farthest_point_sample,
    fps_naive,
    gather_points,
    group_points,
    knn_naive,
    knn_query,
    pytorch3d_available,
    resolve_backend,
)


def _cloud(batch: int = 2, num_points: int = 300, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(batch, num_points, 3, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.fixture
def tiny_point_mae() -> torch.nn.Module:
    """A Point-MAE small enough for gradcheck: 2 blocks of width 32, 8 groups of 8 points."""
    torch.manual_seed(0)
    return create_backbone(
        "point_mae",
        num_classes=3,
        trans_dim=32,
        depth=2,
        num_heads=2,
        num_group=8,
        group_size=8,
        encoder_dims=32,
    )


# --------------------------------------------------------------------------------------------
# gradients
# --------------------------------------------------------------------------------------------


def test_points_that_require_grad_are_accepted_and_indices_carry_no_graph():
    points = _cloud(num_points=200).requires_grad_()
    idx = farthest_point_sample(points, 16, backend="torch")
    assert not idx.requires_grad and torch.equal(idx, fps_naive(points.detach(), 16))
    query = gather_points(points, idx)
    nn_idx = knn_query(query, points, 8, backend="torch")
    assert not nn_idx.requires_grad and torch.equal(nn_idx, knn_query(query.detach(), points.detach(), 8))


def test_group_points_is_differentiable_with_respect_to_the_points():
    points = _cloud(batch=2, num_points=40, dtype=torch.float64).requires_grad_()
    # gradcheck perturbs every coordinate by 1e-6: random points have no tie that close, so the
    # indices stay put and the (piecewise linear) grouping is checked against finite differences.
    assert torch.autograd.gradcheck(lambda p: group_points(p, 8, 6, backend="torch"), (points,))


def test_group_points_gradient_counts_how_often_each_point_is_used():
    points = _cloud(num_points=100).requires_grad_()
    neighborhood, center = group_points(points, 10, 8, backend="torch")
    center.sum().backward()
    # d(sum of centres)/d(points) is 1 on each coordinate of every chosen centre, 0 elsewhere.
    want = torch.zeros_like(points)
    want.scatter_(1, fps_naive(points.detach(), 10)[..., None].expand(-1, -1, 3), 1.0)
    assert torch.equal(points.grad, want)


def test_model_input_gradient_flows_with_a_frozen_backbone(tiny_point_mae):
    """A saliency map: every weight frozen (the lean path's condition), the input requires grad."""
    model = tiny_point_mae.eval()
    model.requires_grad_(False)
    points = _cloud(batch=2, num_points=64).requires_grad_()
    logits = model(points)
    logits[:, 1].sum().backward()
    assert points.grad is not None and torch.isfinite(points.grad).all()
    assert points.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_model_input_gradient_matches_finite_differences(tiny_point_mae):
    model = tiny_point_mae.double().eval()
    model.requires_grad_(False)
    points = _cloud(batch=1, num_points=24, seed=3, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda p: model(p), (points,))


def test_frozen_patch_embedding_still_skips_autograd_when_the_input_needs_no_grad(tiny_point_mae):
    model = tiny_point_mae.train()
    for name in model.patch_embedding_names:
        getattr(model, name).requires_grad_(False)
    modes: list[bool] = []
    hook = model.encoder.register_forward_hook(lambda *_: modes.append(torch.is_grad_enabled()))
    try:
        model(_cloud(num_points=64))
        model(_cloud(num_points=64).requires_grad_())
    finally:
        hook.remove()
    assert modes == [False, True]


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------


def test_knn_with_a_query_batch_that_does_not_match_the_points_is_an_error():
    with pytest.raises(InputShapeError, match="query has batch size 2 but points has 1"):
        knn_query(_cloud(batch=2, num_points=10), _cloud(batch=1, num_points=50), 4)


def test_knn_with_query_and_points_on_different_devices_is_an_error():
    with pytest.raises(InputShapeError, match="query is on meta but points is on cpu"):
        knn_query(torch.empty(2, 10, 3, device="meta"), _cloud(num_points=50), 4)


# --------------------------------------------------------------------------------------------
# precision
# --------------------------------------------------------------------------------------------


def test_float64_clouds_are_computed_in_float64():
    # Offsets of 1e-6 on coordinates near 1000 vanish in float32 (all points coincide there).
    offsets = torch.randn(1, 60, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    points = 1000.0 + 1e-6 * offsets
    assert torch.unique(points.float(), dim=1).shape[1] == 1
    assert torch.equal(farthest_point_sample(points, 10, backend="torch"), fps_naive(points, 10))
    query = points[:, :5]
    idx, dist = knn_query(query, points, 6, backend="torch", return_distances=True)
    assert torch.equal(idx, knn_naive(query, points, 6))
    assert dist.dtype == torch.float64


def test_half_precision_clouds_are_computed_in_float32():
    # bfloat16 coordinates square and sum exactly in float32: the float64 reference must agree.
    points = _cloud(num_points=200).bfloat16()
    assert torch.equal(farthest_point_sample(points, 20, backend="torch"), fps_naive(points, 20))
    neighborhood, center = group_points(points, 20, 8, backend="torch")
    assert neighborhood.dtype == center.dtype == torch.bfloat16


# --------------------------------------------------------------------------------------------
# returned distances
# --------------------------------------------------------------------------------------------


def test_knn_returns_sorted_squared_distances_like_the_reference():
    points = _cloud(num_points=400)
    query = _cloud(num_points=30, seed=1)
    idx, dist = knn_query(query, points, 12, backend="torch", return_distances=True)
    assert torch.equal(idx, knn_query(query, points, 12, backend="torch"))
    ref = (gather_points(points.double(), knn_naive(query, points, 12)) - query.double()[:, :, None]).square().sum(-1)
    torch.testing.assert_close(dist.double(), ref, rtol=1e-6, atol=1e-6)
    assert dist.dtype == torch.float32
    assert torch.all(dist[..., 1:] >= dist[..., :-1])  # the very values topk ordered


def test_knn_distances_are_differentiable_with_respect_to_query_and_points():
    points = _cloud(num_points=30, dtype=torch.float64).requires_grad_()
    query = _cloud(num_points=5, seed=1, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda q, p: knn_query(q, p, 4, return_distances=True)[1], (query, points))


# --------------------------------------------------------------------------------------------
# per-cloud lengths (padded batches)
# --------------------------------------------------------------------------------------------


def _padded(lengths: list[int], num_points: int = 120, fill: float = float("nan")) -> torch.Tensor:
    """Clouds padded to ``num_points``; the padding holds ``fill`` (it must never be used)."""
    points = _cloud(batch=len(lengths), num_points=num_points, seed=2)
    for b, length in enumerate(lengths):
        points[b, length:] = fill
    return points


@pytest.mark.parametrize("fill", [float("nan"), 1e6, 0.0])
def test_fps_with_lengths_samples_only_each_clouds_own_points(fill):
    lengths = [120, 50, 17]
    points = _padded(lengths, fill=fill)
    idx = farthest_point_sample(points, 16, backend="torch", lengths=torch.tensor(lengths))
    assert torch.equal(idx, fps_naive(points, 16, lengths=lengths))
    assert all(int(idx[b].max()) < length for b, length in enumerate(lengths))


def test_knn_and_grouping_with_lengths_never_use_the_padding():
    lengths = [120, 40]
    points = _padded(lengths, fill=float("nan"))
    query = _cloud(batch=2, num_points=9, seed=3)
    idx = knn_query(query, points, 8, backend="torch", lengths=lengths)
    assert torch.equal(idx, knn_naive(query, points, 8, lengths=lengths))
    neighborhood, center = group_points(points, 12, 8, backend="torch", lengths=lengths)
    assert torch.isfinite(neighborhood).all() and torch.isfinite(center).all()
    assert torch.equal(center, gather_points(points, fps_naive(points, 12, lengths=lengths)))


def test_full_lengths_give_the_same_result_as_no_lengths():
    points = _cloud(num_points=100)
    got = group_points(points, 10, 8, backend="torch", lengths=[100, 100])
    for a, b in zip(got, group_points(points, 10, 8, backend="torch"), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "lengths, message",
    [
        ([50], r"lengths must be 2 integers"),
        ([50.0, 50.0], r"lengths must be 2 integers"),
        ([50, 130], r"lengths\[1\] is 130 but the clouds hold 120 points"),
        ([50, 10], r"cloud 1 has 10 points \(lengths\[1\]\) but num_group is 12"),
    ],
)
def test_bad_lengths_are_clear_errors(lengths, message):
    with pytest.raises(InputShapeError, match=message):
        group_points(_cloud(num_points=120), 12, 8, lengths=torch.tensor(lengths))


# --------------------------------------------------------------------------------------------
# random start point
# --------------------------------------------------------------------------------------------


def test_random_start_point_is_drawn_per_cloud_and_reproducible():
    points = _cloud(batch=16, num_points=80)
    lengths = [80] * 8 + [20] * 8
    draw = lambda seed: farthest_point_sample(  # noqa: E731
        points,
        6,
        backend="torch",
        lengths=lengths,
        random_start_point=True,
        generator=torch.Generator().manual_seed(seed),
    )
    idx = draw(0)
    assert torch.equal(idx, draw(0))
    assert not torch.equal(idx[:, 0], draw(1)[:, 0])
    assert len(set(idx[:, 0].tolist())) > 1 and int(idx[8:, 0].max()) < 20
    assert torch.equal(idx, fps_naive(points, 6, lengths=lengths, start=idx[:, 0].tolist()))


# --------------------------------------------------------------------------------------------
# pytorch3d availability
# --------------------------------------------------------------------------------------------


@pytest.fixture
def broken_pytorch3d(tmp_path, monkeypatch):
    """A pytorch3d that is found but whose compiled part does not load (built for another torch)."""
    package = tmp_path / "pytorch3d"
    (package / "ops").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "ops" / "__init__.py").write_text("from pytorch3d import _C  # the compiled part\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == "pytorch3d" or m.startswith("pytorch3d.")]:
        monkeypatch.delitem(sys.modules, name)
    tokenizer_module._pytorch3d_import_error.cache_clear()
    yield
    tokenizer_module._pytorch3d_import_error.cache_clear()


def test_a_pytorch3d_whose_compiled_part_does_not_import_is_not_available(broken_pytorch3d):
    assert pytorch3d_available() is False
    with pytest.raises(UnknownNameError, match=r"pytorch3d is not installed or does not import \(ImportError: .*_C"):
        resolve_backend("pytorch3d")
    assert resolve_backend("auto") == "torch"


# --------------------------------------------------------------------------------------------
# threads of the FPS loop
# --------------------------------------------------------------------------------------------


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("pinned", [1, 2, None])
def test_thread_count_changes_no_result_and_is_restored(two_threads, pinned):
    points = _cloud(batch=4, num_points=2048)  # above the adaptive threshold
    want = (fps_naive(points, 40), None)
    with FPS_THREADS.pinned(pinned) if pinned else FPS_THREADS.pinned(None):
        center_idx, neighbour_idx = tokenizer_module._fps_knn_torch(points, 40, 16)
    assert torch.equal(center_idx, want[0])
    assert torch.equal(neighbour_idx, knn_query(gather_points(points, center_idx), points, 16, backend="torch"))
    assert torch.get_num_threads() == 2
    if pinned:
        assert set(FPS_THREADS.last_counts) == {pinned}


class _FakeLoop:
    """Drives :class:`AdaptiveThreads` with a fake clock: a step costs ``cost[threads]`` seconds."""

    def __init__(self) -> None:
        self.now = 0.0
        self.chooser = AdaptiveThreads(clock=lambda: self.now)

    def run(self, cost: dict[int, float], calls: int, num_steps: int = 128) -> list[list[int]]:
        history = []
        for _ in range(calls):
            for _step in self.chooser.steps(torch.device("cpu"), 16384, num_steps, 16):
                self.now += cost[torch.get_num_threads()]
            history.append(self.chooser.last_counts)
        return history


def test_adaptive_threads_settle_on_the_faster_count(two_threads):
    loop = _FakeLoop()
    quiet = loop.run({1: 1.0, 2: 0.6}, calls=20)
    assert quiet[0][:2] == [1, 2]  # both counts measured first
    late = [c for counts in quiet[10:] for c in counts]
    assert late.count(2) / len(late) > 0.9  # mostly the faster count, with an occasional re-try of 1
    busy = loop.run({1: 1.0, 2: 30.0}, calls=20)
    late = [c for counts in busy[5:] for c in counts]
    assert late.count(1) / len(late) > 0.95
    assert torch.get_num_threads() == 2


def test_a_slow_round_on_several_threads_is_cut_short(two_threads):
    loop = _FakeLoop()
    loop.run({1: 1.0, 2: 0.6}, calls=3)
    loop.run({1: 1.0, 2: 50.0}, calls=1)
    counts = loop.chooser.last_counts
    # The first round on 2 threads is cut short after its first slow step; one thread finishes it.
    i = counts.index(2)
    assert counts[i + 1] == 1
    assert loop.now < 3 * 128 * 1.0 + 4 * 128 * 0.6 + 3 * 50.0


def test_tiny_loops_run_on_one_thread_and_cuda_loops_are_left_alone(two_threads):
    chooser = AdaptiveThreads()
    seen = [torch.get_num_threads() for _ in chooser.steps(torch.device("cpu"), 100, 5, 16)]
    assert seen == [1] * 5 and torch.get_num_threads() == 2
    seen = [torch.get_num_threads() for _ in chooser.steps(torch.device("meta"), 1 << 20, 5, 16)]
    assert seen == [2] * 5


# --------------------------------------------------------------------------------------------
# the options on the pytorch3d backend
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(not pytorch3d_available(), reason="pytorch3d is not installed")
def test_pytorch3d_backend_agrees_on_lengths_random_start_distances_and_gradients():
    lengths = [120, 50]
    points = _padded(lengths, fill=float("nan"))
    got = farthest_point_sample(points, 16, backend="pytorch3d", lengths=lengths)
    assert torch.equal(got, farthest_point_sample(points, 16, backend="torch", lengths=lengths))
    start = farthest_point_sample(points, 16, backend="pytorch3d", lengths=lengths, random_start_point=True)
    assert int(start[1, 0]) < 50
    assert torch.equal(start, fps_naive(points, 16, lengths=lengths, start=start[:, 0].tolist()))
    query = _cloud(batch=2, num_points=9, seed=3)
    idx, dist = knn_query(query, points, 8, backend="pytorch3d", lengths=lengths, return_distances=True)
    _, want_dist = knn_query(query, points, 8, backend="torch", lengths=lengths, return_distances=True)
    assert torch.equal(dist, want_dist)
    clean = _cloud(num_points=80).requires_grad_()
    neighborhood, center = group_points(clean, 8, 6, backend="pytorch3d")
    (neighborhood.sum() + center.sum()).backward()
    assert clean.grad is not None
    for a, b in zip((neighborhood, center), group_points(clean.detach(), 8, 6, backend="torch"), strict=True):
        assert torch.equal(a.detach(), b)
