"""The compute counter: published figures, conventions, attribution, kernel and device independence."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import backbones
from backbones.tokenizer import Group
from pcclora.profiling import compute_figures, count_compute, measure_latency, tokenizer_flops_estimate
from pcclora.profiling.latency import forward_times, round_robin_times

TINY = dict(trans_dim=32, depth=2, num_heads=4, num_group=16, group_size=8, encoder_dims=32)
TINY_POINTS = 128


# --------------------------------------------------------------------------------------------
# hand formulas, written from the layer shapes of the official models (docs/formats.md)
# --------------------------------------------------------------------------------------------


def expected_conv_linear_macs(
    *, num_group, group_size, trans_dim, depth, encoder_dims, num_classes, mlp_ratio=4, bert=False
):
    """Conv1d/Linear multiply-adds of one cloud through Point-MAE (or Point-BERT)."""
    d = trans_dim
    per_point = 3 * 128 + 128 * 256 + 512 * 512 + 512 * encoder_dims  # the two 1x1-conv stages
    macs = num_group * group_size * per_point
    if bert:
        macs += num_group * encoder_dims * d  # reduce_dim
    macs += num_group * (3 * 128 + 128 * d)  # pos_embed of every centre
    hidden = int(d * mlp_ratio)
    per_token = d * 3 * d + d * d + d * hidden + hidden * d  # qkv, proj, fc1, fc2
    macs += (num_group + 1) * depth * per_token  # the cls token too
    if bert:
        macs += 2 * d * 256 + 256 * num_classes
    else:
        macs += 2 * d * 256 + 256 * 256 + 256 * num_classes
    return macs


def expected_attention_macs(*, num_group, trans_dim, depth):
    """q·kᵀ and attn·v: 2 · T² · d per block (all heads together), T = G + 1."""
    tokens = num_group + 1
    return depth * 2 * tokens * tokens * trans_dim


def expected_norm_macs(*, num_group, group_size, trans_dim, depth, bert=False):
    """fvcore's figures: eval BatchNorm 2 per element, LayerNorm 5 per element (affine)."""
    batch_norm = 2 * num_group * group_size * (128 + 512) + (0 if bert else 2 * 2 * 256)
    layer_norm = 5 * (2 * depth + 1) * (num_group + 1) * trans_dim
    return batch_norm + layer_norm


# --------------------------------------------------------------------------------------------
# full-size backbones (one forward each, shared by the tests that read it)
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def point_mae_2048():
    torch.manual_seed(0)
    model = backbones.create_backbone("point_mae", num_classes=15)
    return count_compute(model, torch.rand(1, 2048, 3))


def test_point_mae_2048_conv_linear_macs_match_the_published_4_76_gflops(point_mae_2048):
    expected = expected_conv_linear_macs(
        num_group=128, group_size=32, trans_dim=384, depth=12, encoder_dims=384, num_classes=15
    )
    assert point_mae_2048.macs_conv_linear == expected
    assert point_mae_2048.macs_conv_linear / 1e9 == pytest.approx(4.761, abs=0.005)


def test_point_mae_2048_macs_with_attention_match_fvcore_4_925(point_mae_2048):
    assert point_mae_2048.attention == expected_attention_macs(num_group=128, trans_dim=384, depth=12)
    assert point_mae_2048.norm == expected_norm_macs(num_group=128, group_size=32, trans_dim=384, depth=12)
    assert point_mae_2048.macs_with_attention / 1e9 == pytest.approx(4.925, abs=0.005)
    assert point_mae_2048.flops == 2 * point_mae_2048.macs_with_attention


def test_point_mae_2048_tokenizer_is_not_counted_as_network_compute(point_mae_2048):
    assert point_mae_2048.tokenizer_counted == 0
    assert "group_divider" not in point_mae_2048.per_module
    assert sum(point_mae_2048.per_module.values()) == point_mae_2048.macs_with_attention


def test_point_mae_1024_points_64_groups_gives_2_391_gflops():
    model = backbones.create_backbone("point_mae", num_classes=15, num_group=64)
    count = count_compute(model, torch.rand(1, 1024, 3))
    assert count.macs_conv_linear / 1e9 == pytest.approx(2.391, abs=0.005)


def test_point_bert_2048_points_128_groups_gives_4_504_gflops():
    model = backbones.create_backbone("point_bert", num_classes=15, num_group=128)
    count = count_compute(model, torch.rand(1, 2048, 3))
    expected = expected_conv_linear_macs(
        num_group=128, group_size=32, trans_dim=384, depth=12, encoder_dims=256, num_classes=15, bert=True
    )
    assert count.macs_conv_linear == expected
    assert count.macs_conv_linear / 1e9 == pytest.approx(4.504, abs=0.005)


# --------------------------------------------------------------------------------------------
# tiny backbones
# --------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return backbones.create_backbone("point_mae", num_classes=5, **TINY)


def test_tiny_counts_follow_the_hand_formulas(tiny_model):
    count = count_compute(tiny_model, torch.rand(1, TINY_POINTS, 3))
    sizes = dict(num_group=16, group_size=8, trans_dim=32, depth=2)
    assert count.conv_linear == expected_conv_linear_macs(**sizes, encoder_dims=32, num_classes=5)
    assert count.attention == expected_attention_macs(num_group=16, trans_dim=32, depth=2)
    assert count.norm == expected_norm_macs(**sizes)


def test_counts_scale_with_the_batch(tiny_model):
    one = count_compute(tiny_model, torch.rand(1, TINY_POINTS, 3))
    three = count_compute(tiny_model, torch.rand(3, TINY_POINTS, 3))
    assert three.macs_with_attention == 3 * one.macs_with_attention


def test_explicit_and_sdpa_attention_give_the_same_counts(tiny_model):
    points = torch.rand(2, TINY_POINTS, 3)
    tiny_model.set_fused_attention(True)
    fused = count_compute(tiny_model, points)
    tiny_model.set_fused_attention(False)
    explicit = count_compute(tiny_model, points)
    assert fused.attention > 0
    assert fused == explicit


def test_counting_restores_training_mode_and_changes_no_weight(tiny_model):
    tiny_model.train()
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    count_compute(tiny_model, torch.rand(1, TINY_POINTS, 3))
    assert tiny_model.training
    after = tiny_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_batch_norm_in_training_mode_is_not_what_is_counted(tiny_model):
    tiny_model.train()
    trained = count_compute(tiny_model, torch.rand(1, TINY_POINTS, 3))
    tiny_model.eval()
    evaluated = count_compute(tiny_model, torch.rand(1, TINY_POINTS, 3))
    assert trained == evaluated


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_counts_are_the_same_on_cuda(tiny_model):
    points = torch.rand(1, TINY_POINTS, 3)
    on_cpu = count_compute(tiny_model, points)
    on_cuda = count_compute(tiny_model.cuda(), points.cuda())
    assert on_cpu == on_cuda


class MatmulTokenizer(Group):
    """A tokenizer that also runs a matmul (as a distance computation by ``mm`` would) and a Linear."""

    def __init__(self, num_group, group_size):
        super().__init__(num_group, group_size)
        self.mix = nn.Linear(3, 3, bias=False)

    def forward(self, points):
        gram = points @ self.mix(points).transpose(1, 2)
        neighborhood, center = super().forward(points)
        return neighborhood + 0 * gram.sum(), center


def test_matmuls_inside_the_tokenizer_stay_out_of_the_network_figures(tiny_model):
    points = torch.rand(1, TINY_POINTS, 3)
    plain = count_compute(tiny_model, points)
    tiny_model.group_divider = MatmulTokenizer(16, 8)
    leaky = count_compute(tiny_model, points)
    assert leaky.tokenizer_counted == TINY_POINTS * TINY_POINTS * 3 + TINY_POINTS * 3 * 3
    assert (leaky.conv_linear, leaky.attention, leaky.norm) == (plain.conv_linear, plain.attention, plain.norm)


class Wrapped(nn.Module):
    """An adapter-style wrapper: ``base_layer`` plus a low-rank branch computed in its forward."""

    def __init__(self, base: nn.Linear, rank: int) -> None:
        super().__init__()
        self.base_layer = base
        self.down = nn.Parameter(torch.zeros(base.in_features, rank))
        self.up = nn.Parameter(torch.zeros(rank, base.out_features))

    def forward(self, x):
        return self.base_layer(x) + (x @ self.down) @ self.up


def test_adapter_products_inside_a_wrapped_linear_count_as_linear(tiny_model):
    points = torch.rand(1, TINY_POINTS, 3)
    plain = count_compute(tiny_model, points)
    fc1 = tiny_model.blocks.blocks[0].mlp.fc1
    tiny_model.blocks.blocks[0].mlp.fc1 = Wrapped(fc1, rank=2)
    wrapped = count_compute(tiny_model, points)
    tokens = 16 + 1
    assert wrapped.conv_linear - plain.conv_linear == tokens * 2 * (fc1.in_features + fc1.out_features)
    assert wrapped.attention == plain.attention


def test_fvcore_agrees_when_installed(tiny_model):
    fvcore = pytest.importorskip("fvcore.nn")
    points = torch.rand(1, TINY_POINTS, 3)
    ours = count_compute(tiny_model, points)
    tiny_model.eval()
    tiny_model.set_fused_attention(False)  # fvcore's tracer does not count the SDPA kernel
    theirs = fvcore.FlopCountAnalysis(tiny_model, points).unsupported_ops_warnings(False).total()
    assert ours.macs_with_attention == theirs


# --------------------------------------------------------------------------------------------
# tokenizer estimate, compute figures, latency
# --------------------------------------------------------------------------------------------


def test_tokenizer_estimate_for_the_scanobjectnn_setting():
    fps = 10 * 127 * 2048
    knn = 128 * 2048 * (9 + 5)
    assert tokenizer_flops_estimate(2048, 128, 32) == fps + knn + 3 * 128 * 32
    assert tokenizer_flops_estimate(2048, 128, 32, batch_size=4) == 4 * (fps + knn + 3 * 128 * 32)


def test_compute_figures_report_the_tokenizer_on_its_own_line(tiny_model):
    figures = compute_figures(tiny_model, torch.rand(2, TINY_POINTS, 3))
    assert figures["tokenizer_flops_estimate"] == tokenizer_flops_estimate(TINY_POINTS, 16, 8, batch_size=2)
    assert figures["flops"] == 2 * figures["macs_with_attention"]
    assert figures["macs_with_attention"] == (
        figures["macs_conv_linear"] + figures["macs_attention"] + figures["macs_norm"]
    )


def test_measure_latency_reports_median_throughput_and_passes_per_batch_size(tiny_model):
    tiny_model.train()
    result = measure_latency(tiny_model, TINY_POINTS, "cpu", batch_sizes=(1, 2), warmup=0, repeats=1)
    assert result["device"] == "cpu" and result["npoints"] == TINY_POINTS
    assert [row["batch_size"] for row in result["results"]] == [1, 2]
    for row in result["results"]:
        assert row["latency_ms"] > 0 and row["repeats"] == 1
        assert row["throughput"] == pytest.approx(row["batch_size"] / (row["latency_ms"] / 1000))
    assert tiny_model.training


def test_measure_latency_stops_repeating_once_the_time_budget_is_spent(tiny_model):
    result = measure_latency(tiny_model, TINY_POINTS, "cpu", batch_sizes=(1,), warmup=0, repeats=5, max_seconds=0)
    assert result["results"][0]["repeats"] == 1


def test_round_robin_times_runs_one_call_of_each_per_round():
    order = []
    calls = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    times = round_robin_times(calls, warmup=1, repeats=3)
    assert order == ["a", "b"] * 4  # one warm-up round, then three timed ones
    assert [len(times["a"]), len(times["b"])] == [3, 3]
    assert all(t >= 0 for t in times["a"] + times["b"])


def test_round_robin_times_stops_after_the_time_budget_but_times_one_round():
    times = round_robin_times({"a": lambda: None, "b": lambda: None}, warmup=0, repeats=5, max_seconds=0)
    assert [len(times["a"]), len(times["b"])] == [1, 1]


def test_forward_times_restore_the_training_mode(tiny_model):
    tiny_model.train()
    times = forward_times({"tiny": tiny_model}, torch.rand(1, TINY_POINTS, 3), warmup=0, repeats=2)
    assert len(times["tiny"]) == 2 and tiny_model.training
