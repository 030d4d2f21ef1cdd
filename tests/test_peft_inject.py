"""apply_peft: what is wrapped, what trains, frozen modules stay frozen, clear errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from pcclora.peft import (
    PeftConfigError,
    PeftStateError,
    apply_peft,
    count_parameters,
    merge_adapters,
    sade_loss,
)
from pcclora.peft.layers import CLoRALinear, LoRALinear

TARGETS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")
HEAD_AND_EXTRAS = {"cls_token", "cls_pos"} | {
    f"cls_head_finetune.{i}.{leaf}" for i in (0, 1, 4) for leaf in ("weight", "bias")
}


def _trainable(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def test_clora_wraps_every_target_and_owns_bases_once(build_tiny):
    model = apply_peft(build_tiny(depth=2), {"rank": 2, "num_bases": 3})
    for i in range(2):
        block = model.blocks.blocks[i]
        for layer, splits in ((block.attn.qkv, 3), (block.attn.proj, 1), (block.mlp.fc1, 1), (block.mlp.fc2, 1)):
            assert isinstance(layer, CLoRALinear) and layer.num_splits == splits
    assert set(model.clora_bases.families) == {"32x32", "32x128", "128x32"}
    assert model.blocks.blocks[0].attn.qkv.family is model.blocks.blocks[1].attn.proj.family
    bank_keys = [k for k in model.state_dict() if "families" in k]
    assert sorted(bank_keys) == sorted(
        f"clora_bases.families.{f}.{p}" for f in ("32x32", "32x128", "128x32") for p in ("down", "up")
    )
    coefficient_keys = {k for k in _trainable(model) if k.endswith("coefficients")}
    assert _trainable(model) == HEAD_AND_EXTRAS | set(bank_keys) | coefficient_keys
    assert len(coefficient_keys) == 2 * len(TARGETS)


@pytest.mark.parametrize(
    "method, adapter_suffixes",
    [
        ("clora_shared", ("down", "up", "shared_coefficients")),
        ("lora", ("lora_down", "lora_up")),
        ("linear", ()),
    ],
)
def test_trainable_sets_of_the_other_methods(method, adapter_suffixes, build_tiny):
    model = apply_peft(build_tiny(), {"method": method, "rank": 2, "num_bases": 3})
    adapters = _trainable(model) - HEAD_AND_EXTRAS
    assert {name.rpartition(".")[2] for name in adapters} == set(adapter_suffixes)
    assert HEAD_AND_EXTRAS <= _trainable(model)


def test_full_trains_everything_and_wraps_nothing(build_tiny):
    model = apply_peft(build_tiny(), {"method": "full"})
    assert all(p.requires_grad for p in model.parameters())
    assert not any(isinstance(m, (CLoRALinear, LoRALinear)) for m in model.modules())


def test_parameter_counts_follow_the_formula_and_partition_the_total(build_tiny):
    rank, bases, dim, depth = 2, 3, 32, 2
    plain_total = sum(p.numel() for p in build_tiny().parameters())
    model = apply_peft(build_tiny(), {"rank": rank, "num_bases": bases})
    counts = count_parameters(model)
    families = [(dim, dim, 4 * depth), (dim, 4 * dim, depth), (4 * dim, dim, depth)]
    groups = counts["groups"]
    assert groups["bases"] == sum(bases * rank * (d_in + d_out) for d_in, d_out, _ in families)
    assert groups["coefficients"] == sum(m * bases * rank**2 for *_, m in families)
    head = sum(p.numel() for p in model.cls_head_finetune.parameters())
    assert (groups["head"], groups["extras"], groups["lora"]) == (head, 2 * dim, 0)
    assert counts["total"] == plain_total + groups["bases"] + groups["coefficients"]
    assert sum(groups.values()) == counts["total"]
    assert (
        counts["trainable"]
        == counts["total"] - groups["frozen"]
        == sum(p.numel() for p in model.parameters() if p.requires_grad)
    )
    full = count_parameters(apply_peft(build_tiny(), {"method": "full"}))
    assert full["trainable"] == full["total"] == plain_total
    assert full["groups"]["backbone_trainable"] == plain_total - head - 2 * dim


@pytest.mark.parametrize("method", ("clora", "lora", "linear"))
def test_one_optimizer_step_changes_no_frozen_parameter(method, build_tiny, make_points, randomize_adapters):
    model = apply_peft(build_tiny(), {"method": method, "rank": 2, "num_bases": 3}).train()
    randomize_adapters(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # every parameter handed to the optimizer, with weight decay: frozen ones must still not move
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    loss = model(make_points()).logsumexp(-1).mean() + 0.1 * sade_loss(model)
    loss.backward()
    optimizer.step()
    trainable = _trainable(model)
    for name, parameter in model.named_parameters():
        moved = not torch.equal(parameter, before[name])
        assert moved == (name in trainable), name


def test_frozen_batchnorm_statistics_do_not_drift_in_training_mode(build_tiny, make_points):
    model = apply_peft(build_tiny(), {"rank": 2, "num_bases": 3})
    encoder_bn = model.encoder.first_conv[1]
    head_bn = model.cls_head_finetune[1]
    frozen_state = {k: v.clone() for k, v in encoder_bn.state_dict().items()}
    head_mean = head_bn.running_mean.clone()
    model.train()
    for seed in range(3):
        model(make_points(seed=seed) * 3 + 1)
    assert not model.encoder.training and not model.pos_embed.training
    for key, value in encoder_bn.state_dict().items():
        assert torch.equal(value, frozen_state[key]), key
    assert model.training and model.cls_head_finetune.training and model.blocks.training
    assert not torch.equal(head_bn.running_mean, head_mean)  # the trained head does update


def test_frozen_modules_follow_a_later_unfreeze(build_tiny, make_points):
    model = apply_peft(build_tiny(), {"rank": 2, "num_bases": 3})
    model.encoder.requires_grad_(True)
    model.train()
    model(make_points())
    assert model.encoder.training


def test_linear_probe_runs_the_frozen_blocks_deterministically(build_tiny, make_points):
    model = apply_peft(build_tiny(), {"method": "linear"}).train()
    model.cls_head_finetune.eval()  # head dropout off: only the backbone's dropout could differ
    points = make_points()
    torch.testing.assert_close(model(points), model(points), rtol=0, atol=0)
    assert not model.blocks.training


def test_a_plain_image_vit_is_adapted_too(randomize_adapters, tiny_image_vit):
    torch.manual_seed(0)
    plain = tiny_image_vit().eval()
    model = apply_peft(
        copy.deepcopy(plain),
        {"rank": 2, "num_bases": 2, "trainable_extra": ["cls_token", "pos_embed"]},
    ).eval()
    images = torch.randn(2, 3, 16, 16)
    assert torch.equal(model(images), plain(images))
    assert isinstance(model.blocks[1].attn.qkv, CLoRALinear)
    assert {"head.weight", "head.bias", "cls_token", "pos_embed"} <= _trainable(model)
    assert not model.patch_embed.weight.requires_grad
    randomize_adapters(model)
    adapted_logits = model(images)
    assert not torch.allclose(adapted_logits, plain(images))
    merge_adapters(model)
    torch.testing.assert_close(model(images), adapted_logits, rtol=1e-4, atol=1e-5)


def test_bases_follow_the_model_dtype_and_survive_deepcopy(build_tiny):
    model = apply_peft(build_tiny().double(), {"rank": 2, "num_bases": 3})
    assert model.clora_bases.families["32x32"].down.dtype == torch.float64
    clone = copy.deepcopy(model)
    assert clone.blocks.blocks[0].attn.qkv.family is clone.clora_bases.families["32x32"]
    assert clone.blocks.blocks[0].attn.qkv.family is not model.clora_bases.families["32x32"]


def test_target_matching_nothing_is_an_error_that_lists_linear_layers(build_tiny):
    model = build_tiny()
    with pytest.raises(PeftConfigError) as error:
        apply_peft(model, {"target_modules": ["attn.qkv", "attn.query"]})
    assert "attn.query" in str(error.value) and "mlp.fc1" in str(error.value)
    assert all(p.requires_grad for p in model.parameters())  # a failed call changes nothing


def test_target_that_is_not_linear_is_an_error(build_tiny):
    with pytest.raises(PeftConfigError, match="only nn.Linear"):
        apply_peft(build_tiny(), {"target_modules": ["norm1"]})


def test_unknown_trainable_extra_suggests_parameter_names(build_tiny):
    with pytest.raises(PeftConfigError, match="cls_token"):
        apply_peft(build_tiny(), {"trainable_extra": ["cls_tokn"]})


def test_applying_twice_is_an_error(build_tiny):
    model = apply_peft(build_tiny(), {"rank": 2})
    with pytest.raises(PeftStateError, match="already adapted"):
        apply_peft(model, {"method": "lora"})


def test_model_without_head_or_extras_cannot_be_linear_probed():
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(PeftConfigError, match="train nothing"):
        apply_peft(model, {"method": "linear", "trainable_extra": []})


def test_clora_shared_layers_count_as_trained_and_keep_their_dropout(build_tiny, make_points):
    # CLoRA# layers own no trainable tensor (the bank does) but must still train with dropout
    model = apply_peft(build_tiny(), {"method": "clora_shared", "rank": 2, "dropout": 0.5}).train()
    model(make_points())
    layer = model.blocks.blocks[0].attn.qkv
    assert layer.training and layer.dropout.training and model.blocks.blocks[0].training
    assert not layer.base_layer.training and not model.encoder.training
