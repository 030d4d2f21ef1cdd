"""Chamfer distance: the torch implementation against a loop reference, chunking edges, gradients, backends."""

from __future__ import annotations

import math

import pytest
import torch

from backbones.chamfer import (
    CHAMFER_LOSSES,
    chamfer_distance,
    chamfer_l1,
    chamfer_l2,
    chamfer_naive,
    nearest_neighbours,
    resolve_chamfer_backend,
)
from backbones.errors import InputShapeError, UnknownNameError


def clouds(batch: int, n: int, m: int, seed: int = 0, dtype: torch.dtype = torch.float32):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n, 3, generator=generator).to(dtype)
    y = torch.randn(batch, m, 3, generator=generator).to(dtype)
    return x, y


def dense_reference(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole (B, N, M) matrix at once, differentiable through min (the textbook form)."""
    distances = (x[:, :, None, :] - y[:, None, :, :]).square().sum(-1)
    return distances.min(dim=2).values, distances.min(dim=1).values


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("batch", "n", "m"), [(1, 1, 1), (3, 17, 23), (2, 40, 5), (4, 32, 32)])
def test_distances_equal_the_loop_reference(batch, n, m, dtype):
    x, y = clouds(batch, n, m, dtype=dtype)
    dist1, dist2 = chamfer_distance(x, y, backend="torch")
    ref1, ref2 = chamfer_naive(x, y)
    assert dist1.shape == (batch, n) and dist2.shape == (batch, m) and dist1.dtype == dtype
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(dist1.double(), ref1, atol=tolerance, rtol=tolerance)
    torch.testing.assert_close(dist2.double(), ref2, atol=tolerance, rtol=tolerance)


def test_losses_are_the_official_formulas():
    x, y = clouds(3, 11, 7, seed=1, dtype=torch.float64)
    ref1, ref2 = chamfer_naive(x, y)
    assert float(chamfer_l2(x, y)) == pytest.approx(float(ref1.mean() + ref2.mean()), rel=1e-12)
    expected_l1 = (ref1.sqrt().mean() + ref2.sqrt().mean()) / 2
    assert float(chamfer_l1(x, y)) == pytest.approx(float(expected_l1), rel=1e-12)
    assert CHAMFER_LOSSES == {"cdl2": chamfer_l2, "cdl1": chamfer_l1}


@pytest.mark.parametrize(
    "chunk",
    [1, 2, 5, 7 * 13 - 1, 7 * 13, 7 * 13 + 1, 3 * 7 * 13 - 1, 3 * 7 * 13, 10**9],
)
def test_chunking_edges_give_the_unchunked_neighbours(chunk):
    """Chunks of whole clouds, of rows of one cloud, of one row; sizes just below, at and above a cloud."""
    x, y = clouds(3, 7, 13, seed=2)
    x[1, 3] = y[1, 5]  # an exact match: distance 0
    whole1, whole2 = nearest_neighbours(x, y, chunk_elements=10**9)
    idx1, idx2 = nearest_neighbours(x, y, chunk_elements=chunk)
    assert torch.equal(idx1, whole1) and torch.equal(idx2, whole2)
    dist1, dist2 = chamfer_distance(x, y, backend="torch", chunk_elements=chunk)
    ref1, ref2 = chamfer_naive(x, y)
    torch.testing.assert_close(dist1.double(), ref1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dist2.double(), ref2, atol=1e-5, rtol=1e-5)
    assert float(dist1[1, 3]) == 0.0


def test_ties_keep_the_first_index_across_chunks():
    x = torch.zeros(1, 4, 3)  # four identical points: every y point ties between all of them
    y = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])
    for chunk in (1, 2, 3, 100):
        _, idx2 = nearest_neighbours(x, y, chunk_elements=chunk)
        assert idx2.tolist() == [[0, 0]]


def test_gradients_are_those_of_the_dense_min():
    x, y = clouds(2, 9, 12, seed=3, dtype=torch.float64)
    x1, y1 = x.clone().requires_grad_(), y.clone().requires_grad_()
    x2, y2 = x.clone().requires_grad_(), y.clone().requires_grad_()
    dist1, dist2 = chamfer_distance(x1, y1, chunk_elements=5)
    (dist1.mean() + 2 * dist2.mean()).backward()
    ref1, ref2 = dense_reference(x2, y2)
    (ref1.mean() + 2 * ref2.mean()).backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(y1.grad, y2.grad)


def test_masked_patch_sized_batches_match_the_dense_form():
    """Point-MAE's loss at the official size: 128 clouds × 38 masked patches of 32 points."""
    x, y = clouds(128 * 38, 32, 32, seed=4)
    dist1, dist2 = chamfer_distance(x, y)
    ref1, ref2 = dense_reference(x, y)
    torch.testing.assert_close(dist1, ref1, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(dist2, ref2, atol=1e-6, rtol=1e-5)


def test_two_8192_point_clouds_run_in_bounded_memory(monkeypatch):
    """A dense (2, 8192, 8192) matrix would be 0.5 GB (1.5 GB with its difference tensor); chunks hold 16 MB."""
    from backbones import chamfer

    sizes: list[int] = []
    original = chamfer._chunk_distances

    def recording(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        out = original(a, b)
        sizes.append(out.numel())
        return out

    monkeypatch.setattr(chamfer, "_chunk_distances", recording)
    x, y = clouds(2, 8192, 8192, seed=5)
    x.requires_grad_()
    loss = chamfer_l2(x, y)
    loss.backward()
    assert math.isfinite(float(loss.detach())) and x.grad.shape == x.shape
    assert max(sizes) <= chamfer.CHUNK_ELEMENTS and sum(sizes) == 2 * 8192 * 8192
    # spot-check a few points against their exact nearest neighbour
    for b, i in ((0, 0), (1, 4095), (1, 8191)):
        exact = float((x[b, i].detach() - y[b]).square().sum(-1).min())
        assert float(chamfer_distance(x[b : b + 1, i : i + 1].detach(), y[b : b + 1])[0]) == pytest.approx(exact)


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (torch.zeros(2, 5, 3), torch.zeros(3, 5, 3), "same number of clouds"),
        (torch.zeros(2, 0, 3), torch.zeros(2, 5, 3), "at least one point"),
        (torch.zeros(2, 5, 2), torch.zeros(2, 5, 3), r"shape \(B, N, 3\)"),
        (torch.zeros(2, 5, 3, dtype=torch.long), torch.zeros(2, 5, 3), "floating-point"),
    ],
)
def test_bad_inputs_are_input_shape_errors(x, y, message):
    with pytest.raises(InputShapeError, match=message):
        chamfer_distance(x, y)


def test_backends_resolve_and_refuse_clearly(monkeypatch):
    assert resolve_chamfer_backend("auto") in ("torch", "pytorch3d")
    assert resolve_chamfer_backend("torch") == "torch"
    with pytest.raises(UnknownNameError, match="unknown chamfer backend 'cuda'"):
        resolve_chamfer_backend("cuda")
    from backbones import chamfer

    monkeypatch.setattr(chamfer, "_pytorch3d_import_error", lambda: "ImportError: No module named 'pytorch3d'")
    with pytest.raises(UnknownNameError, match="pytorch3d.*not installed or does not import"):
        resolve_chamfer_backend("pytorch3d")
    monkeypatch.setenv("PCCLORA_CHAMFER_BACKEND", "pytorch3d")
    assert resolve_chamfer_backend("auto") == "torch"  # asked for by the environment but absent: torch


def test_pytorch3d_backend_agrees_when_installed():
    from backbones import chamfer

    if chamfer._pytorch3d_import_error() is not None:
        pytest.skip("pytorch3d is not installed")
    x, y = clouds(3, 50, 40, seed=6)
    ours = chamfer_distance(x, y, backend="torch")
    theirs = chamfer_distance(x, y, backend="pytorch3d")
    torch.testing.assert_close(ours[0], theirs[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours[1], theirs[1], atol=1e-5, rtol=1e-5)
    assert float(chamfer_l2(x, y, backend="pytorch3d")) == pytest.approx(float(chamfer_l2(x, y, backend="torch")))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_gives_the_cpu_distances():
    x, y = clouds(4, 300, 200, seed=7)
    cpu = chamfer_distance(x, y, backend="torch")
    gpu = chamfer_distance(x.cuda(), y.cuda(), backend="torch", chunk_elements=1000)
    torch.testing.assert_close(gpu[0].cpu(), cpu[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gpu[1].cpu(), cpu[1], atol=1e-5, rtol=1e-5)
