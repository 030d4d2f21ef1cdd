"""CLoRA / LoRA layer math: initial equality, the paper's formula, rank, merging, cost."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from pcclora.peft import apply_peft, merge_adapters, unmerge_adapters
from pcclora.peft.bases import BaseSpaceFamily
from pcclora.peft.layers import CLoRALinear, LoRALinear

ADAPTER_METHODS = ("clora", "clora_shared", "lora")


@pytest.fixture
def adapted(build_tiny):
    """``adapted(...)`` as a factory (it needs the tiny-model fixtures)."""

    def make(method: str, dtype: torch.dtype = torch.float32, **cfg) -> tuple[nn.Module, nn.Module]:
        plain = build_tiny().to(dtype).eval()
        adapted = apply_peft(copy.deepcopy(plain), {"method": method, "rank": 2, "num_bases": 3, **cfg})
        return plain, adapted.eval()

    return make


def _reference_clora_output(layer: CLoRALinear, x: torch.Tensor) -> torch.Tensor:
    """The paper's formula, split by split: x Wᵀ + b + s Σ_h ((x D_h) Q_h^j) U_h."""
    family = layer.family
    down, up = family.down_bases(), family.up_bases()
    coefficients = layer.layer_coefficients()
    base = nn.functional.linear(x, layer.base_layer.weight, layer.base_layer.bias)
    parts = []
    for split in range(layer.num_splits):
        update = sum(x @ down[h] @ coefficients[split, h] @ up[h] for h in range(layer.num_bases))
        parts.append(layer.scaling * update)
    return base + torch.cat(parts, dim=-1)


@pytest.mark.parametrize("method", ADAPTER_METHODS)
def test_adapted_model_equals_backbone_exactly_at_initialisation(method, make_points, adapted):
    plain, adapted = adapted(method)
    points = make_points()
    assert torch.equal(adapted(points), plain(points))


def test_fused_qkv_follows_the_paper_formula_per_split(randomize_adapters, adapted):
    _, adapted = adapted("clora", torch.float64)
    randomize_adapters(adapted)
    layer = adapted.blocks.blocks[0].attn.qkv
    assert isinstance(layer, CLoRALinear) and layer.num_splits == 3
    assert layer.coefficients.shape == (3, 3, 2, 2)
    x = torch.randn(5, 7, 32, dtype=torch.float64)
    torch.testing.assert_close(layer(x), _reference_clora_output(layer, x), rtol=1e-12, atol=1e-12)


def test_delta_weight_is_the_transposed_paper_update(randomize_adapters, adapted):
    _, adapted = adapted("clora", torch.float64)
    randomize_adapters(adapted)
    layer = adapted.blocks.blocks[1].mlp.fc1  # (32 → 128) family
    x = torch.randn(4, 32, dtype=torch.float64)
    via_delta = x @ layer.delta_weight().T
    via_branch = layer.adapter_output(x)
    torch.testing.assert_close(via_delta, via_branch, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ADAPTER_METHODS)
def test_merged_equals_unmerged_and_unmerge_restores(method, make_points, randomize_adapters, adapted):
    _, adapted = adapted(method, torch.float64)
    randomize_adapters(adapted)
    points = make_points().double()
    weights_before = {k: v.clone() for k, v in adapted.state_dict().items()}
    unmerged_logits = adapted(points)
    merge_adapters(adapted)
    assert all(layer.merged for layer in adapted.modules() if hasattr(layer, "merged"))
    torch.testing.assert_close(adapted(points), unmerged_logits, rtol=1e-10, atol=1e-10)
    changed = [k for k, v in adapted.state_dict().items() if not torch.equal(v, weights_before[k])]
    assert changed and all(key.endswith("base_layer.weight") for key in changed)
    unmerge_adapters(adapted)
    for key, value in adapted.state_dict().items():
        torch.testing.assert_close(value, weights_before[key], rtol=0, atol=1e-12)
    torch.testing.assert_close(adapted(points), unmerged_logits, rtol=1e-10, atol=1e-10)


def test_merged_model_runs_no_adapter_compute(make_points, randomize_adapters, adapted):
    plain, adapted = adapted("clora")
    randomize_adapters(adapted)
    points = make_points()

    def flops(model: nn.Module) -> int:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(points)
        return counter.get_total_flops()

    unmerged = flops(adapted)
    merge_adapters(adapted)
    assert flops(adapted) == flops(plain) < unmerged


@pytest.mark.parametrize("method", ("clora", "lora"))
def test_update_rank_is_bounded_and_reached(method, randomize_adapters, adapted):
    _, adapted = adapted(method, torch.float64, rank=3, num_bases=4)
    randomize_adapters(adapted)
    bound = 3 * 4 if method == "clora" else 3
    for module in adapted.modules():
        if isinstance(module, (CLoRALinear, LoRALinear)):
            for delta in module.delta_weight().split(module.split_features, dim=0):
                assert torch.linalg.matrix_rank(delta).item() == min(bound, *delta.shape)


def test_update_rank_stays_below_p_r_when_a_base_is_unused(randomize_adapters, adapted):
    _, adapted = adapted("clora", torch.float64, rank=3, num_bases=4)
    randomize_adapters(adapted)
    layer = adapted.blocks.blocks[0].mlp.fc2
    with torch.no_grad():
        layer.coefficients[:, 1].zero_()
    assert torch.linalg.matrix_rank(layer.delta_weight()).item() == 3 * 3


def test_clora_shared_gives_every_layer_of_a_family_the_same_update(randomize_adapters, adapted):
    _, adapted = adapted("clora_shared", torch.float64)
    randomize_adapters(adapted)
    by_family: dict[int, list[torch.Tensor]] = {}
    for module in adapted.modules():
        if isinstance(module, CLoRALinear):
            assert module.coefficients is None
            deltas = module.delta_weight().split(module.split_features, dim=0)
            by_family.setdefault(id(module.family), []).extend(deltas)
    assert len(by_family) == 3  # (32, 32), (32, 128), (128, 32)
    for deltas in by_family.values():
        assert deltas[0].abs().sum() > 0
        for delta in deltas[1:]:
            torch.testing.assert_close(delta, deltas[0], rtol=0, atol=0)
    # qkv (3 layers) and proj in two blocks share the (32, 32) family: 16 layers, one update
    assert max(len(deltas) for deltas in by_family.values()) == 2 * 4


def test_gradients_reach_bases_and_coefficients(make_points, randomize_adapters, adapted):
    _, adapted = adapted("clora")
    adapted.train()
    adapted(make_points()).square().mean().backward()
    layer = adapted.blocks.blocks[0].attn.qkv
    # At initialisation Q = 0: only Q receives gradient (D and U are multiplied by Q).
    assert layer.coefficients.grad.abs().sum() > 0
    adapted.zero_grad()
    randomize_adapters(adapted)
    adapted(make_points()).square().mean().backward()
    for parameter in (layer.family.down, layer.family.up, layer.coefficients):
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0


def test_forward_matmul_cost_is_the_factorised_one():
    """x·D once for q, k, v; block-diagonal r×r products; one up-projection over all splits."""
    torch.manual_seed(0)
    d_in, d_split, rank, num_bases, splits, tokens = 24, 24, 2, 3, 3, 10
    family = BaseSpaceFamily(d_in, d_split, rank, num_bases)
    layer = CLoRALinear(
        nn.Linear(d_in, splits * d_split, bias=False),
        family,
        num_splits=splits,
        alpha=2,
        dropout=0.0,
    )
    x = torch.randn(tokens, d_in)
    with FlopCounterMode(display=False) as counter:
        layer(x)
    pr = num_bases * rank
    expected_macs = tokens * (
        d_in * splits * d_split + d_in * pr + splits * num_bases * rank * rank + splits * pr * d_split
    )
    assert counter.get_total_flops() == 2 * expected_macs


class _LargeFreshTensors(TorchDispatchMode):
    """Records every op output with at least ``threshold`` elements that is not a view."""

    def __init__(self, threshold: int) -> None:
        super().__init__()
        self.threshold = threshold
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        inputs = [a for a in torch.utils._pytree.tree_leaves((args, kwargs)) if torch.is_tensor(a)]
        storages = {t.untyped_storage().data_ptr() for t in inputs}
        for out in torch.utils._pytree.tree_leaves(result):
            if (
                torch.is_tensor(out)
                and out.numel() >= self.threshold
                and out.untyped_storage().data_ptr() not in storages
            ):
                self.found.append(f"{func}: {tuple(out.shape)}")
        return result


@pytest.mark.parametrize("method", ADAPTER_METHODS)
def test_training_step_builds_no_dense_update_matrix(method, randomize_adapters):
    d = 64
    torch.manual_seed(0)
    linear = nn.Linear(d, 3 * d, bias=False).requires_grad_(False)
    if method == "lora":
        layer = LoRALinear(linear, num_splits=3, rank=2, alpha=2, dropout=0.1)
    else:
        family = BaseSpaceFamily(d, d, 2, 3, shared_coefficients=method == "clora_shared")
        layer = CLoRALinear(
            linear,
            family,
            num_splits=3,
            alpha=2,
            dropout=0.1,
            shared_coefficients=method == "clora_shared",
        )
    randomize_adapters(layer)
    x = torch.randn(4, d, requires_grad=True)  # 4 tokens: every activation is far below d·d
    with _LargeFreshTensors(threshold=d * d) as recorder:
        layer(x).square().sum().backward()
    assert recorder.found == []
