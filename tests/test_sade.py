"""SADE through r×r Grams equals the dense definition (docs/method.md); gradients; range."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from pcclora.peft import apply_peft, sade_loss
from pcclora.peft.sade import branch_similarity, branch_similarity_dense, sade_loss_dense, sade_loss_dense_macs


def _random_family(d_in, d_out, rank, num_bases, layers, seed):
    generator = torch.Generator().manual_seed(seed)
    shape_args = {"generator": generator, "dtype": torch.float64}
    down = torch.randn(num_bases, d_in, rank, **shape_args) / d_in**0.5
    up = torch.randn(num_bases, rank, d_out, **shape_args) / rank**0.5
    coefficients = torch.randn(layers, num_bases, rank, rank, **shape_args)
    return down, up, coefficients


@pytest.mark.parametrize("normalized", (True, False))
@pytest.mark.parametrize(
    "d_in, d_out, rank, num_bases",
    [(12, 20, 2, 3), (33, 17, 4, 4), (64, 64, 8, 2), (10, 96, 3, 5), (40, 8, 1, 6)],
)
def test_gram_sade_equals_dense_reference(d_in, d_out, rank, num_bases, normalized):
    down, up, coefficients = _random_family(d_in, d_out, rank, num_bases, layers=3, seed=d_in)
    got = branch_similarity(down, up, coefficients, normalized=normalized)
    expected = branch_similarity_dense(down, up, coefficients, normalized=normalized)
    for layer in range(3):
        assert abs(got[layer] - expected[layer]) <= 1e-8 * abs(expected[layer])


@pytest.mark.parametrize("normalized", (True, False))
def test_model_sade_is_the_mean_over_all_layers(normalized, build_tiny, randomize_adapters):
    model = apply_peft(build_tiny().double(), {"rank": 2, "num_bases": 3, "sade_normalized": normalized})
    randomize_adapters(model)
    got, expected = sade_loss(model), sade_loss_dense(model, normalized=normalized)
    assert got.shape == () and abs(got - expected) <= 1e-8 * abs(expected)


def test_clora_shared_sade_equals_dense_reference(build_tiny, randomize_adapters):
    model = apply_peft(build_tiny().double(), {"method": "clora_shared", "rank": 2, "num_bases": 3})
    randomize_adapters(model)
    got, expected = sade_loss(model), sade_loss_dense(model)
    assert abs(got - expected) <= 1e-8 * abs(expected)


@pytest.mark.parametrize("normalized", (True, False))
def test_dense_reference_multiply_adds_match_the_flop_counter(normalized, build_tiny, randomize_adapters):
    model = apply_peft(build_tiny(), {"rank": 2, "num_bases": 3, "sade_normalized": normalized})
    randomize_adapters(model)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        sade_loss_dense(model)
    assert counter.get_total_flops() == 2 * sade_loss_dense_macs(model) > 0


def test_sade_gradients_reach_bases_and_coefficients(build_tiny, randomize_adapters):
    model = apply_peft(build_tiny(), {"rank": 2, "num_bases": 3})
    randomize_adapters(model)
    sade_loss(model).backward()
    family = model.blocks.blocks[0].attn.qkv.family
    coefficients = model.blocks.blocks[0].attn.qkv.coefficients
    for parameter in (family.down, family.up, coefficients):
        assert torch.isfinite(parameter.grad).all() and parameter.grad.abs().sum() > 0


def test_sade_is_zero_with_finite_gradients_at_initialisation(build_tiny):
    model = apply_peft(build_tiny(), {"rank": 2, "num_bases": 3})
    value = sade_loss(model)
    value.backward()
    assert value.item() == 0.0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_sade_lies_in_unit_interval_and_reaches_one_for_identical_branches(build_tiny, randomize_adapters):
    model = apply_peft(build_tiny().double(), {"rank": 2, "num_bases": 3})
    for seed in range(3):
        randomize_adapters(model, seed=seed)
        assert 0.0 < sade_loss(model).item() < 1.0
    down, up, coefficients = _random_family(16, 24, 2, 1, layers=2, seed=1)
    identical = branch_similarity(down.expand(4, -1, -1), up.expand(4, -1, -1), coefficients.expand(-1, 4, -1, -1))
    torch.testing.assert_close(identical, torch.ones(2, dtype=torch.float64), rtol=1e-9, atol=0)
    assert (identical <= 1.0).all()


def test_sade_is_scale_invariant():
    down, up, coefficients = _random_family(20, 20, 3, 3, layers=2, seed=3)
    once = branch_similarity(down, up, coefficients)
    scaled = branch_similarity(down * 3.0, up * 0.5, coefficients * 7.0)
    torch.testing.assert_close(once, scaled, rtol=1e-9, atol=0)


def test_single_base_has_no_pairs(build_tiny, randomize_adapters):
    model = apply_peft(build_tiny(), {"rank": 2, "num_bases": 1})
    randomize_adapters(model)
    assert sade_loss(model).item() == 0.0


@pytest.mark.parametrize("method", ("lora", "linear", "full"))
def test_sade_is_zero_for_methods_without_bases(method, build_tiny):
    model = apply_peft(build_tiny(), {"method": method})
    value = sade_loss(model)
    assert value.shape == () and value.item() == 0.0
    assert sade_loss(copy.deepcopy(build_tiny())).item() == 0.0


def test_sade_loss_trains_with_the_task_loss(build_tiny, make_points, randomize_adapters):
    model = apply_peft(build_tiny(), {"rank": 2, "num_bases": 3}).train()
    randomize_adapters(model)
    loss = model(make_points()).logsumexp(-1).mean() + 0.1 * sade_loss(model)
    loss.backward()
    assert model.clora_bases.families["32x32"].down.grad.abs().sum() > 0
