"""FPS + kNN tokenizer against the loop references (docs/formats.md)."""

from __future__ import annotations

import pytest
import torch

from backbones import InputShapeError, UnknownNameError
from backbones.tokenizer import (
    Group,
    _fps_knn_torch,
    farthest_point_sample,
    fps_naive,
    gather_points,
    group_points,
    knn_naive,
    knn_query,
    pytorch3d_available,
)


def _cloud(batch: int = 2, num_points: int = 300, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, num_points, 3, generator=torch.Generator().manual_seed(seed))


def _squared_distances64(query: torch.Tensor, points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """float64 squared distance of each query to its listed neighbours: (B, S, k)."""
    neighbours = gather_points(points.double(), idx)
    return (neighbours - query.double()[:, :, None, :]).square().sum(-1)


# --------------------------------------------------------------------------------------------
# FPS
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_points, num_samples", [(300, 40), (1024, 64), (100, 100)])
def test_fps_equals_the_loop_reference_and_starts_at_index_0(num_points, num_samples):
    points = _cloud(num_points=num_points)
    idx = farthest_point_sample(points, num_samples, backend="torch")
    assert idx.shape == (2, num_samples) and idx.dtype == torch.long
    assert torch.all(idx[:, 0] == 0)
    assert torch.equal(idx, fps_naive(points, num_samples))


def test_fps_takes_the_first_index_on_ties():
    # Every point repeated: the farthest distance is always reached twice; the lower index wins.
    base = _cloud(batch=1, num_points=20)
    points = torch.cat([base, base], dim=1)
    idx = farthest_point_sample(points, 20, backend="torch")
    assert torch.equal(idx, fps_naive(points, 20))
    assert torch.all(idx < 20)


def test_fps_of_all_points_is_a_permutation():
    points = _cloud(batch=1, num_points=50)
    idx = farthest_point_sample(points, 50, backend="torch")
    assert sorted(idx[0].tolist()) == list(range(50))


# --------------------------------------------------------------------------------------------
# kNN
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_queries, k", [(40, 16), (37, 32)])  # 37: a partial distance block
def test_knn_finds_the_reference_neighbours_with_exact_distances(num_queries, k):
    points = _cloud(num_points=500)
    query = gather_points(points, farthest_point_sample(points, num_queries))
    idx = knn_query(query, points, k, backend="torch")
    ref = knn_naive(query, points, k)
    assert idx.shape == (2, num_queries, k)
    assert [set(row) for row in idx.reshape(-1, k).tolist()] == [set(row) for row in ref.reshape(-1, k).tolist()]
    dist = _squared_distances64(query, points, idx)
    assert torch.equal(dist, _squared_distances64(query, points, ref))
    assert torch.all(dist[..., 1:] >= dist[..., :-1])  # nearest first


def test_knn_of_off_cloud_queries_matches_the_reference():
    points = _cloud(num_points=200)
    query = _cloud(num_points=10, seed=1) * 2
    idx = knn_query(query, points, 8, backend="torch")
    ref = knn_naive(query, points, 8)
    assert torch.equal(_squared_distances64(query, points, idx), _squared_distances64(query, points, ref))


# 37 and 5 centres: a partial last block of distance rows, and fewer centres than one block.
@pytest.mark.parametrize("num_points, num_group, group_size", [(2048, 128, 32), (300, 37, 8), (50, 5, 4)])
def test_fused_fps_knn_equals_separate_fps_then_knn(num_points, num_group, group_size):
    points = _cloud(batch=3, num_points=num_points)
    centre_idx, neighbour_idx = _fps_knn_torch(points, num_group, group_size)
    assert torch.equal(centre_idx, fps_naive(points, num_group))
    centres = gather_points(points, centre_idx)
    assert torch.equal(neighbour_idx, knn_query(centres, points, group_size, backend="torch"))


# --------------------------------------------------------------------------------------------
# grouping
# --------------------------------------------------------------------------------------------


def test_group_points_gives_centred_neighbourhoods_in_fps_order():
    points = _cloud(num_points=400)
    neighborhood, center = group_points(points, 32, 16, backend="torch")
    assert neighborhood.shape == (2, 32, 16, 3) and center.shape == (2, 32, 3)
    assert torch.equal(center, gather_points(points, fps_naive(points, 32)))
    ref_idx = knn_naive(center, points, 16)
    torch.testing.assert_close(
        (neighborhood + center[:, :, None]).square().sum(-1).sort(-1).values,
        gather_points(points, ref_idx).square().sum(-1).sort(-1).values,
    )
    # Each centre is its own nearest neighbour: the first offset is exactly zero.
    assert torch.all(neighborhood[:, :, 0] == 0)


def test_group_module_matches_the_function():
    points = _cloud(num_points=100)
    group = Group(8, 4)
    for got, want in zip(group(points), group_points(points, 8, 4), strict=True):
        assert torch.equal(got, want)
    assert "num_group=8" in repr(group)


def test_double_precision_input_keeps_its_dtype():
    points = _cloud(num_points=64).double()
    neighborhood, center = group_points(points, 8, 4)
    assert neighborhood.dtype == center.dtype == torch.float64


# --------------------------------------------------------------------------------------------
# pytorch3d backend
# --------------------------------------------------------------------------------------------


@pytest.mark.skipif(not pytorch3d_available(), reason="pytorch3d is not installed")
def test_pytorch3d_backend_equals_torch_backend():
    points = _cloud(num_points=600)
    idx = farthest_point_sample(points, 64, backend="pytorch3d")
    assert torch.equal(idx, farthest_point_sample(points, 64, backend="torch"))
    query = gather_points(points, idx)
    got = knn_query(query, points, 16, backend="pytorch3d")
    want = knn_query(query, points, 16, backend="torch")
    assert torch.equal(_squared_distances64(query, points, got), _squared_distances64(query, points, want))


def test_asking_for_pytorch3d_without_it_is_a_clear_error():
    if pytorch3d_available():
        pytest.skip("pytorch3d is installed")
    with pytest.raises(UnknownNameError, match="pytorch3d is not installed"):
        farthest_point_sample(_cloud(), 4, backend="pytorch3d")


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------


def test_unknown_backend_lists_the_valid_ones():
    with pytest.raises(UnknownNameError, match="unknown tokenizer backend 'cuda'.*torch"):
        group_points(_cloud(), 4, 4, backend="cuda")


@pytest.mark.parametrize(
    "points, message",
    [
        (torch.randn(2, 50, 4), r"\(B, N, 3\)"),
        (torch.randn(50, 3), r"\(B, N, 3\)"),
        (torch.ones(2, 50, 3, dtype=torch.long), "floating"),
    ],
)
def test_bad_point_tensors_are_rejected(points, message):
    with pytest.raises(InputShapeError, match=message):
        group_points(points, 4, 4)


@pytest.mark.parametrize("num_group, group_size, what", [(60, 8, "num_group"), (8, 60, "group_size")])
def test_too_few_points_names_the_setting(num_group, group_size, what):
    with pytest.raises(InputShapeError, match=f"50 points but {what} is 60"):
        group_points(_cloud(num_points=50), num_group, group_size)
