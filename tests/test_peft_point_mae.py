"""CLoRA and its peers on the real Point-MAE (C = 15): parameter counts and checkpoint size.

Construction only (no forward at 2048 points), except small-override models for a training step
and the merged export.
"""

from __future__ import annotations

import copy
import io

import pytest
import torch

import backbones
from pcclora.peft import (
    adapter_state_dict,
    apply_peft,
    count_parameters,
    export_merged_state_dict,
    load_adapter_state_dict,
)

POINT_MAE_TOTAL = 22_093_327
HEAD = 267_535
EXTRAS = 768  # cls_token + cls_pos
D, DEPTH, RANK, BASES = 384, 12, 8, 4


@pytest.fixture(scope="module")
def point_mae() -> torch.nn.Module:
    torch.manual_seed(0)
    return backbones.create_backbone("point_mae", num_classes=15)


def _counts(model: torch.nn.Module, cfg: dict) -> dict:
    return count_parameters(apply_peft(copy.deepcopy(model), cfg))


def test_default_clora_trains_434_191_parameters(point_mae):
    counts = _counts(point_mae, {})
    families = [(D, D, 4 * DEPTH), (D, 4 * D, DEPTH), (4 * D, D, DEPTH)]  # (d_in, d_out, m)
    formula = sum(BASES * RANK * (d_in + d_out) + m * BASES * RANK**2 for d_in, d_out, m in families)
    groups = counts["groups"]
    assert groups["bases"] + groups["coefficients"] == formula == 165_888
    assert (groups["head"], groups["extras"]) == (HEAD, EXTRAS)
    assert counts["trainable"] == 434_191
    assert counts["total"] == POINT_MAE_TOTAL + 165_888


@pytest.mark.parametrize(
    "cfg, adapters",
    [
        # LoRA r=8, q/k/v as three layers: 2·d·r per (d, d) layer, r·(d + 4d) per fc layer
        ({"method": "lora"}, DEPTH * (4 * 2 * D * RANK + 2 * RANK * 5 * D)),
        # CLoRA#: the bases plus one coefficient set per family
        ({"method": "clora_shared"}, 147_456 + 3 * BASES * RANK**2),
        ({"method": "linear"}, 0),
    ],
)
def test_peer_method_counts(point_mae, cfg, adapters):
    counts = _counts(point_mae, cfg)
    assert counts["trainable"] == adapters + HEAD + EXTRAS
    assert counts["total"] == POINT_MAE_TOTAL + adapters


def test_lora_r8_count_is_931_855(point_mae):
    assert _counts(point_mae, {"method": "lora"})["trainable"] == 931_855


def test_full_fine_tuning_trains_every_parameter(point_mae):
    counts = _counts(point_mae, {"method": "full"})
    assert counts["trainable"] == counts["total"] == POINT_MAE_TOTAL


def test_default_clora_adapter_checkpoint_is_under_2_mb(point_mae):
    buffer = io.BytesIO()
    torch.save(adapter_state_dict(apply_peft(copy.deepcopy(point_mae), {})), buffer)
    assert buffer.tell() < 2_000_000


SMALL = {"trans_dim": 48, "depth": 2, "num_heads": 2, "encoder_dims": 48, "num_group": 8, "group_size": 8}


def test_training_step_leaves_the_frozen_encoder_untouched():
    torch.manual_seed(0)
    model = apply_peft(backbones.create_backbone("point_mae", num_classes=15, **SMALL), {}).train()
    frozen = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("encoder.")}
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.05)
    model(torch.randn(4, 128, 3)).logsumexp(-1).mean().backward()
    optimizer.step()
    assert not model.encoder.training and model.cls_head_finetune.training
    assert all(torch.equal(model.state_dict()[k], v) for k, v in frozen.items())
    assert model.blocks.blocks[0].attn.qkv.coefficients.abs().sum() > 0


def test_merged_export_has_the_official_keys_and_same_logits():
    torch.manual_seed(0)
    plain = backbones.create_backbone("point_mae", num_classes=15, **SMALL).double().eval()
    model = apply_peft(copy.deepcopy(plain), {"rank": 2, "num_bases": 2})
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("coefficients"):
                parameter.normal_(std=0.5)
    model.eval()
    points = torch.randn(2, 128, 3, dtype=torch.float64)
    exported = export_merged_state_dict(model)
    assert list(exported) == list(plain.state_dict())
    fresh = backbones.create_backbone("point_mae", num_classes=15, **SMALL).double().eval()
    fresh.load_state_dict(exported, strict=True)
    torch.testing.assert_close(fresh(points), model(points), rtol=1e-9, atol=1e-9)
    restored = load_adapter_state_dict(copy.deepcopy(plain), adapter_state_dict(model)).eval()
    assert torch.equal(restored(points), model(points))
