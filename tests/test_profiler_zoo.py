"""Compute of the new backbones by hand from their official definitions, and the published rows
the profiler shows next to each backbone."""

from __future__ import annotations

import pytest
import torch

import backbones
from pcclora.profiling import count_compute, published_rows
from pcclora.profiling.report import compute_table


def _mini_pointnet(points: int, dims: int) -> int:
    return points * (3 * 128 + 128 * 256 + 512 * 512 + 512 * dims)


def _wide_pointnet(points: int, dims: int) -> int:
    return points * (3 * 256 + 256 * 512 + 512 * 1024 + 2048 * 2048 + 2048 * dims)


def _head(fan_in: int, classes: int) -> int:
    return fan_in * 256 + 256 * 256 + 256 * classes


def _recon_macs(groups: int, size: int, d: int = 384, depth: int = 12, classes: int = 15) -> int:
    patch_branch = groups * 12 * d * d  # qkv, proj, fc1, fc2 over the patch tokens only
    query_branch = groups * 2 * d * d + 3 * (d * d + d * d + 8 * d * d)  # kv over patches; q, proj, mlp on 3
    pos = groups * (3 * 128 + 128 * d)
    return _mini_pointnet(groups * size, d) + pos + depth * (patch_branch + query_branch) + _head(4 * d, classes)


def _pointgpt_macs(groups: int, size: int, d: int, depth: int, classes: int = 15) -> int:
    encoder = (_mini_pointnet if d <= 384 else _wide_pointnet)(groups * size, d)
    return encoder + depth * (groups + 2) * 12 * d * d + _head(2 * d, classes)  # no pos MLP; generator not run


@pytest.mark.parametrize(
    "name, sizes, points, expected",
    [
        ("recon", {}, 2048, _recon_macs(128, 32)),
        ("recon", {"num_group": 64}, 1024, _recon_macs(64, 32)),
        ("pointgpt_s", {}, 2048, _pointgpt_macs(128, 32, 384, 12)),
        ("pointgpt_l", {"depth": 2, "decoder_depth": 0, "num_group": 64}, 1024, _pointgpt_macs(64, 32, 1024, 2)),
    ],
)
def test_conv_linear_macs_equal_the_hand_formula(name, sizes, points, expected):
    torch.manual_seed(0)
    model = backbones.create_backbone(name, num_classes=15, **sizes).eval()
    count = count_compute(model, torch.rand(1, points, 3))
    assert count.macs_conv_linear == expected


def test_hand_formulas_at_the_official_sizes():
    """The figures docs/published.md and the README state (2048 points / 128 groups)."""
    assert _recon_macs(128, 32) == 5_245_619_968
    assert _pointgpt_macs(128, 32, 384, 12) == 4_775_481_088
    assert _pointgpt_macs(128, 32, 768, 12) == 37_351_788_288
    assert _pointgpt_macs(128, 32, 1024, 24) == 67_716_583_168  # PointGPT-L: published 67.7 G


def test_each_backbone_shows_only_its_own_published_rows():
    profile = {
        "method": "full",
        "params_total": 1,
        "params_trainable": 1,
        "macs_conv_linear": 1,
        "macs_with_attention": 1,
        "flops": 2,
        "merged": None,
    }
    mae = compute_table([profile], backbone="point_mae")
    assert "IDPT" in mae and "Point-MAE backbone, ScanObjectNN" in mae
    gpt = compute_table([profile], backbone="pointgpt_l")
    assert "IDPT" not in gpt and "360.5M" in gpt and "67.70" in gpt and "PointGPT-L" in gpt
    assert "published" not in compute_table([profile], backbone="point_bert")
    assert "published" not in compute_table([profile], published=False, backbone="pointgpt_l")
    for name in ("act", "recon", "pointgpt_s", "pointgpt_b", "pointgpt_l"):
        (row,) = published_rows(name)
        assert row.method == "full fine-tuning" and row.source


@pytest.mark.parametrize("name", ["act", "recon", "pointgpt_s", "pointgpt_b", "pointgpt_l"])
def test_published_parameter_counts_round_the_exact_counts(name):
    with torch.device("meta"):
        model = backbones.create_backbone(name, num_classes=15)
    exact = sum(p.numel() for p in model.parameters())
    (row,) = published_rows(name)
    assert round(exact / 1e5) == row.params_trainable / 1e5
