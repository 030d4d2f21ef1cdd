"""Tokenizer behaviour beyond the FPS / kNN semantics: gradients, input checks, the optional
features pytorch3d users expect, the pytorch3d availability check.

The semantics themselves (indices against the loop references) are in ``test_tokenizer.py``.
"""

from __future__ import annotations

import pytest
import torch

from backbones import create_backbone
from backbones.tokenizer import farthest_point_sample, fps_naive, gather_points, group_points, knn_query


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
