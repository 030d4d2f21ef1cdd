"""Point-MAE / Point-BERT models: official module tree, sizes, forward contract, input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import backbones
from backbones import (
    Attention,
    DropPath,
    InputShapeError,
    ModelConfigError,
    PointBERT,
    PointMAE,
    UnknownNameError,
    create_backbone,
    list_backbones,
)

TINY = dict(trans_dim=32, depth=2, num_heads=4, encoder_dims=32, num_group=8, group_size=8)


def _tiny(name: str = "point_mae", num_classes: int = 5, **kw) -> nn.Module:
    return create_backbone(name, num_classes=num_classes, **{**TINY, **kw})


# --------------------------------------------------------------------------------------------
# zoo and full-size module tree
# --------------------------------------------------------------------------------------------


def test_zoo_lists_both_official_backbones():
    assert {"point_mae", "point_bert"} <= set(list_backbones())


@pytest.mark.parametrize(
    "name, num_classes, expected",
    [
        ("point_mae", 15, 22_093_327),
        ("point_mae", 40, 22_099_752),
        ("point_bert", 15, 22_059_535),
        ("point_bert", 40, 22_065_960),
    ],
)
def test_full_size_parameter_counts_match_the_papers(name, num_classes, expected):
    with torch.device("meta"):  # shapes only: skips allocating and initialising 22M weights
        model = create_backbone(name, num_classes=num_classes)
    assert sum(p.numel() for p in model.parameters()) == expected


@pytest.mark.parametrize("name", ["point_mae", "point_bert"])
def test_state_dict_keys_and_shapes_equal_the_official_model(name, official_shapes):
    official = getattr(official_shapes, f"{name}_finetuned")(15)
    with torch.device("meta"):
        model = create_backbone(name, num_classes=15)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == official


def test_official_defaults_and_attributes():
    with torch.device("meta"):
        mae = PointMAE(num_classes=15)
        bert = PointBERT(num_classes=40)
    assert (mae.num_group, mae.group_size, mae.trans_dim, mae.encoder_dims) == (128, 32, 384, 384)
    assert (bert.num_group, bert.group_size, bert.trans_dim, bert.encoder_dims) == (64, 32, 384, 256)
    assert mae.num_classes == 15 and bert.num_classes == 40
    assert PointMAE.head_module_names == PointBERT.head_module_names == ("cls_head_finetune",)
    block = mae.blocks.blocks[3]
    assert isinstance(block.attn.qkv, nn.Linear) and block.attn.qkv.bias is None
    assert all(isinstance(m, nn.Linear) for m in (block.attn.proj, block.mlp.fc1, block.mlp.fc2))
    assert isinstance(bert.reduce_dim, nn.Linear) and not hasattr(mae, "reduce_dim")


def test_drop_path_rises_linearly_from_zero_to_the_rate():
    model = _tiny(depth=5, drop_path_rate=0.2)
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for b in model.blocks.blocks]
    assert rates == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert isinstance(model.blocks.blocks[0].drop_path, nn.Identity)


def test_backbone_init_follows_the_official_recipe():
    torch.manual_seed(0)
    model = create_backbone("point_bert", num_classes=15, depth=2)
    for token in (model.cls_token.detach(), model.cls_pos.detach()):
        assert float(token.std()) == pytest.approx(0.02, rel=0.3)
    qkv = model.blocks.blocks[0].attn.qkv.weight.detach()
    assert float(qkv.std()) == pytest.approx(0.02, rel=0.05) and abs(float(qkv.mean())) < 1e-3
    assert torch.all(model.blocks.blocks[0].mlp.fc1.bias == 0)
    assert torch.all(model.norm.weight == 1) and torch.all(model.norm.bias == 0)


# --------------------------------------------------------------------------------------------
# forward contract
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["point_mae", "point_bert"])
def test_forward_gives_logits_and_features(name):
    torch.manual_seed(0)
    model = _tiny(name, num_classes=7).eval()
    points = torch.randn(3, 40, 3)
    with torch.no_grad():
        logits = model(points)
        features = model.forward_features(points)
    assert logits.shape == (3, 7) and features.shape == (3, 64)
    assert torch.allclose(model.cls_head_finetune(features), logits)


def test_pooled_feature_is_cls_token_and_max_over_patches():
    torch.manual_seed(0)
    model = _tiny().eval()
    points = torch.randn(2, 30, 3)
    captured = {}
    model.norm.register_forward_hook(lambda mod, inp, out: captured.setdefault("tokens", out))
    with torch.no_grad():
        features = model.forward_features(points)
    tokens = captured["tokens"]  # (B, 1 + G, C)
    assert tokens.shape == (2, 1 + model.num_group, 32)
    assert torch.equal(features, torch.cat([tokens[:, 0], tokens[:, 1:].max(dim=1).values], dim=-1))


def test_fused_and_explicit_attention_give_the_same_logits():
    torch.manual_seed(0)
    model = _tiny(depth=3).eval()
    points = torch.randn(2, 50, 3)
    with torch.no_grad():
        fused = model(points)
        model.set_fused_attention(False)
        explicit = model(points)
    assert all(not b.attn.fused for b in model.blocks.blocks)
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-5)


def test_explicit_attention_is_softmax_of_scaled_dot_products():
    torch.manual_seed(0)
    attn = Attention(8, num_heads=2, fused=False)
    x = torch.randn(1, 5, 8)
    q, k, v = attn.qkv(x).reshape(1, 5, 3, 2, 4).permute(2, 0, 3, 1, 4)
    weights = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1)  # head dim 4 → scale 1/2
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(1, 5, 8))
    torch.testing.assert_close(attn(x), expected)


def test_drop_path_drops_whole_samples_in_training_only():
    torch.manual_seed(0)
    layer = DropPath(0.5)
    x = torch.ones(400, 3)
    out = layer.train()(x)
    kept = out[:, 0] != 0
    assert torch.all(out[kept] == 2.0) and 100 < int(kept.sum()) < 300
    assert torch.equal(layer.eval()(x), x)


def _records_grad_mode_of_encoder(model: nn.Module) -> list[bool]:
    seen: list[bool] = []
    model.encoder.register_forward_hook(lambda mod, inp, out: seen.append(torch.is_grad_enabled()))
    return seen


@pytest.mark.parametrize("name", ["point_mae", "point_bert"])
def test_frozen_patch_embedding_runs_without_autograd(name):
    model = _tiny(name).train()
    for module_name in model.patch_embedding_names:
        getattr(model, module_name).requires_grad_(False)
    seen = _records_grad_mode_of_encoder(model)
    model(torch.randn(2, 30, 3)).sum().backward()
    assert seen == [False]
    assert model.cls_token.grad is not None and model.blocks.blocks[0].attn.qkv.weight.grad is not None


def test_trainable_patch_embedding_keeps_autograd():
    model = _tiny("point_bert").train()
    model.encoder.requires_grad_(False)
    model.pos_embed.requires_grad_(False)  # reduce_dim is still trainable
    seen = _records_grad_mode_of_encoder(model)
    model(torch.randn(2, 30, 3)).sum().backward()
    assert seen == [True] and model.reduce_dim.weight.grad is not None


# --------------------------------------------------------------------------------------------
# user mistakes
# --------------------------------------------------------------------------------------------


def test_unknown_backbone_name_suggests_the_nearest():
    with pytest.raises(UnknownNameError, match="unknown backbone 'point_mea'.*did you mean 'point_mae'"):
        create_backbone("point_mea", num_classes=15)


def test_unknown_override_suggests_the_nearest():
    with pytest.raises(UnknownNameError, match="no option 'trans_dims'.*did you mean 'trans_dim'"):
        create_backbone("point_mae", num_classes=15, trans_dims=384)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(trans_dim=100, num_heads=6, encoder_dims=100), "not divisible by num_heads"),
        (dict(num_classes=0), "num_classes must be a positive integer"),
        (dict(drop_path_rate=1.5), "drop_path_rate"),
        (dict(encoder_dims=256), "encoder_dims == trans_dim"),
    ],
)
def test_impossible_sizes_are_config_errors(overrides, message):
    kwargs = {"num_classes": 15, **overrides}
    with pytest.raises(ModelConfigError, match=message):
        create_backbone("point_mae", **{**dict(depth=1), **kwargs})


@pytest.mark.parametrize(
    "points, message",
    [
        (torch.randn(2, 40, 2), r"shape \(B, N, 3\), got \(2, 40, 2\)"),
        (torch.randn(40, 3), r"shape \(B, N, 3\), got \(40, 3\)"),
        (torch.randint(0, 5, (2, 40, 3)), "floating-point"),
        ([[0.0, 0.0, 0.0]], "torch.Tensor"),
    ],
)
def test_wrong_input_is_an_input_shape_error(points, message):
    with pytest.raises(InputShapeError, match=message):
        _tiny()(points)


def test_fewer_points_than_groups_is_an_input_shape_error():
    model = _tiny(num_group=16, group_size=4)
    with pytest.raises(InputShapeError, match="10 points but this model's num_group is 16"):
        model(torch.randn(2, 10, 3))


def test_fewer_points_than_group_size_is_an_input_shape_error():
    model = _tiny(num_group=4, group_size=16)
    with pytest.raises(InputShapeError, match="10 points but this model's group_size is 16"):
        model(torch.randn(2, 10, 3))


def test_non_finite_points_are_an_input_shape_error():
    points = torch.randn(2, 40, 3)
    points[1, 5, 2] = float("nan")
    with pytest.raises(InputShapeError, match="1 NaN or infinite"):
        _tiny()(points)


def test_errors_share_the_toolkit_base_class():
    assert issubclass(InputShapeError, backbones.ToolkitError)
    assert issubclass(ModelConfigError, backbones.ToolkitError)


def test_numpy_integer_sizes_are_accepted_as_ints():
    model = _tiny(num_classes=np.int64(3), num_group=np.int32(8))
    assert type(model.num_classes) is int and type(model.num_group) is int
    assert model.cls_head_finetune[-1].out_features == 3
