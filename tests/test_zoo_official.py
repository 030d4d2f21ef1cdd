"""ACT, ReCon and PointGPT against their official definitions: key names and shapes, parameter
counts, strict loading of fine-tuned files, the loaded / missing / unexpected / ignored sets of
the pre-training layouts, and forward semantics checked against independent references.

The official code needs CUDA extensions and cannot run here; the key → shape tables
(``official_shapes`` in conftest) are written from the official model definitions, and the
references below follow the official forward code (sequence-first ``nn.MultiheadAttention``,
explicit masks, the official block formulas, the token and position order, the pooling),
written in this file independently of ``backbones``; they reuse the model's tokenizer, patch
encoder and position embedding, which are checked on their own (patch order on hand-made
centres, the sine formula; the mini-PointNets by the Point-MAE tests).
Full-size PointGPT-B/L are checked on the ``meta`` device (shapes, names, layouts, strictness);
the value copy is checked at full size on ACT, ReCon and PointGPT-S.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import backbones
from backbones import CheckpointError, create_backbone, load_checkpoint
from backbones.point_gpt import GPTAttention, SinePositionEmbedding, sort_patches

pytestmark = pytest.mark.filterwarnings("ignore:for .*num_batches_tracked.*meta:UserWarning")

#: Parameters of the official fine-tuning models (sum of p.numel(), BatchNorm statistics not
#: counted), for 15 and 40 classes.
OFFICIAL_PARAMETERS = {
    ("act", 15): 22_093_327,
    ("act", 40): 22_099_752,
    ("recon", 15): 43_571_215,
    ("recon", 40): 43_577_640,
    ("pointgpt_s", 15): 29_232_335,
    ("pointgpt_s", 40): 29_238_760,
    ("pointgpt_b", 15): 120_461_263,
    ("pointgpt_b", 40): 120_467_688,
    ("pointgpt_l", 15): 360_457_679,
    ("pointgpt_l", 40): 360_464_104,
}


def _official_finetuned(official_shapes, name: str, num_classes: int) -> dict[str, tuple[int, ...]]:
    if name == "act":
        return official_shapes.point_mae_finetuned(num_classes)
    if name == "recon":
        return official_shapes.recon_finetuned(num_classes)
    return official_shapes.pointgpt_finetuned(name[-1], num_classes)


def _meta_model(name: str, num_classes: int = 15) -> nn.Module:
    with torch.device("meta"):
        return create_backbone(name, num_classes=num_classes)


def _meta_state(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    return {key: torch.empty(shape, device="meta") for key, shape in shapes.items()}


def _points(batch: int = 2, num_points: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, num_points, 3, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------
# module tree and parameter counts
# --------------------------------------------------------------------------------------------

NEW_BACKBONES = ("act", "recon", "pointgpt_s", "pointgpt_b", "pointgpt_l")


def test_list_backbones_returns_the_new_entries():
    assert set(NEW_BACKBONES) <= set(backbones.list_backbones())


@pytest.mark.parametrize("name", NEW_BACKBONES)
def test_state_dict_keys_and_shapes_equal_the_official_fine_tuning_model(name, official_shapes):
    official = _official_finetuned(official_shapes, name, 15)
    model = _meta_model(name)
    assert {key: tuple(value.shape) for key, value in model.state_dict().items()} == official
    expected_entries = {"act": 174, "recon": 322, "pointgpt_s": 243, "pointgpt_b": 250, "pointgpt_l": 394}
    assert len(official) == expected_entries[name]


@pytest.mark.parametrize("name, num_classes", sorted(OFFICIAL_PARAMETERS))
def test_parameter_counts_equal_the_official_models(name, num_classes, official_shapes):
    model = _meta_model(name, num_classes)
    counted = sum(p.numel() for p in model.parameters())
    by_hand = official_shapes.parameter_count(_official_finetuned(official_shapes, name, num_classes))
    assert counted == by_hand == OFFICIAL_PARAMETERS[(name, num_classes)]


def test_official_default_sizes():
    expected = {
        "act": dict(trans_dim=384, depth=12, num_heads=6, num_group=128, group_size=32, drop_path_rate=0.1),
        "recon": dict(trans_dim=384, depth=12, num_heads=6, num_group=128, group_size=32, drop_path_rate=0.2),
        "pointgpt_s": dict(trans_dim=384, depth=12, num_heads=6, encoder_dims=384, decoder_depth=4),
        "pointgpt_b": dict(trans_dim=768, depth=12, num_heads=12, encoder_dims=768, decoder_depth=4),
        "pointgpt_l": dict(trans_dim=1024, depth=24, num_heads=16, encoder_dims=1024, decoder_depth=4),
    }
    for name, sizes in expected.items():
        defaults = backbones.backbone_defaults(name)
        assert {key: defaults[key] for key in sizes} == sizes, name


def test_pointgpt_b_and_l_use_the_wide_mini_pointnet(official_shapes):
    from backbones.patch_encoder import LargePatchEncoder, PatchEncoder

    assert isinstance(_meta_model("pointgpt_s").encoder, PatchEncoder)
    for name in ("pointgpt_b", "pointgpt_l"):
        model = _meta_model(name)
        assert isinstance(model.encoder, LargePatchEncoder)
        shapes = {f"encoder.{k}": tuple(v.shape) for k, v in model.encoder.state_dict().items()}
        assert shapes == official_shapes.large_pointnet("encoder.", model.encoder_dims)


def test_act_takes_its_embed_dim_name_for_trans_dim(tiny_sizes):
    sizes = {key: value for key, value in tiny_sizes("act").items() if key != "trans_dim"}
    model = create_backbone("act", num_classes=3, embed_dim=32, **sizes)
    assert model.trans_dim == 32
    with pytest.raises(backbones.ModelConfigError, match="embed_dim=32 and trans_dim=64 name the same size"):
        create_backbone("act", num_classes=3, embed_dim=32, trans_dim=64)


def test_pointgpt_size_errors():
    with pytest.raises(backbones.ModelConfigError, match="encoder_dims == trans_dim"):
        create_backbone("pointgpt_s", num_classes=3, trans_dim=64, encoder_dims=32)
    with pytest.raises(backbones.UnknownNameError, match="'pointgpt_s' has no option 'mlp_ratio'"):
        create_backbone("pointgpt_s", num_classes=3, mlp_ratio=2.0)


# --------------------------------------------------------------------------------------------
# fine-tuned files load strictly
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["act", "recon", "pointgpt_s"])
def test_official_fine_tuned_files_load_strictly_with_their_values(name, official_shapes, make_state_dict):
    official = make_state_dict(_official_finetuned(official_shapes, name, 15), seed=3)
    model = create_backbone(name, num_classes=15)
    report = load_checkpoint(model, {"base_model": {f"module.{k}": v for k, v in official.items()}, "epoch": 1})
    assert (report.layout, len(report.loaded), report.missing, report.unexpected) == (
        "finetuned",
        len(official),
        [],
        [],
    )
    state = model.state_dict()
    assert all(torch.equal(state[key], value) for key, value in official.items())


@pytest.mark.parametrize("name", ["pointgpt_b", "pointgpt_l"])
def test_official_fine_tuned_pointgpt_b_and_l_load_strictly(name, official_shapes):
    official = _official_finetuned(official_shapes, name, 15)
    report = load_checkpoint(_meta_model(name), {"base_model": _meta_state(official)})
    assert (report.layout, len(report.loaded), report.missing, report.unexpected) == (
        "finetuned",
        len(official),
        [],
        [],
    )


# --------------------------------------------------------------------------------------------
# pre-training layouts
# --------------------------------------------------------------------------------------------


def _head_keys(shapes, prefix="cls_head_finetune."):
    return {key for key in shapes if key.startswith(prefix)}


def test_act_pretrain_loads_the_student_and_ignores_the_teacher(official_shapes, make_state_dict):
    shapes = official_shapes.act_pretrain()
    pretrain = make_state_dict(shapes, seed=5)
    model = create_backbone("act", num_classes=15)
    report = load_checkpoint(model, {"base_model": pretrain, "epoch": 300})

    student = {k[len("module.ACT_encoder.") :] for k in shapes if k.startswith("module.ACT_encoder.")}
    assert report.layout == "act_pretrain"
    assert len(report.loaded) == 158 and set(report.loaded) == student - {k for k in student if "head" in k}
    assert {"cls_token", "cls_pos"} <= set(report.loaded)
    assert set(report.missing) == _head_keys(official_shapes.point_mae_finetuned(15))
    unexpected = {"lm_head.weight", "lm_head.bias", "mask_token"}
    unexpected |= {f"cls_head.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}
    unexpected |= {"proj_head.weight", "proj_head.bias"}
    unexpected |= {
        k[len("module.") :] for k in shapes if k.startswith(("module.decoder_pos_embed", "module.ACT_decoder"))
    }
    assert set(report.unexpected) == unexpected and len(unexpected) == 37
    assert set(report.ignored) == {k[len("module.") :] for k in shapes if ".dvae_tokenizer." in f".{k}"}
    state = model.state_dict()
    assert all(torch.equal(state[key], pretrain[f"module.ACT_encoder.{key}"]) for key in report.loaded)


def test_recon_pretrain_loads_the_encoder_with_its_queries_and_ignores_the_teachers(official_shapes, make_state_dict):
    shapes = official_shapes.recon_pretrain()
    pretrain = make_state_dict(shapes, seed=6)
    model = create_backbone("recon", num_classes=15)
    report = load_checkpoint(model, {"base_model": pretrain})

    assert report.layout == "recon_pretrain"
    assert set(report.loaded) == set(official_shapes.recon_encoder()) and len(report.loaded) == 306
    assert set(report.missing) == _head_keys(official_shapes.recon_finetuned(15))
    decoder_side = ("mask_token", "decoder_pos_embed.", "MAE_decoder.", "increase_dim.", "img_proj.", "text_proj.")
    expected_unexpected = {k[len("module.") :] for k in shapes if k[len("module.") :].startswith(decoder_side)}
    assert set(report.unexpected) == expected_unexpected and len(expected_unexpected) == 57
    assert set(report.ignored) == {k[len("module.") :] for k in shapes if ("_encoder." in k and "MAE" not in k)}
    state = model.state_dict()
    assert all(torch.equal(state[key], pretrain[f"module.MAE_encoder.{key}"]) for key in report.loaded)
    assert "unexpected (not used): mask_token, decoder_pos_embed.* (4), MAE_decoder.* (46)" in report.summary()


def test_recon_and_point_mae_files_are_told_apart_by_their_keys(official_shapes):
    """Both use ``MAE_encoder.``; the layout follows the file, whatever model it goes into."""
    recon_file = {"base_model": _meta_state(official_shapes.recon_pretrain())}
    mae_file = {"base_model": _meta_state(official_shapes.point_mae_pretrain())}
    into_mae = load_checkpoint(_meta_model("point_mae"), recon_file)
    assert into_mae.layout == "recon_pretrain"
    assert {"img_token", "blocks.blocks.0.attn_contrast.kv.weight"} <= set(into_mae.unexpected)
    into_recon = load_checkpoint(_meta_model("recon"), mae_file)
    assert into_recon.layout == "point_mae_pretrain"
    assert {"img_token", "cls_token", "blocks.blocks.11.mlp_contrast.fc2.bias"} <= set(into_recon.missing)
    assert len(into_recon.loaded) == 156


@pytest.mark.parametrize("size", ["s", "b", "l"])
def test_pointgpt_pretrain_loads_everything_but_the_classification_parts(size, official_shapes):
    shapes = official_shapes.pointgpt_pretrain(size)
    report = load_checkpoint(_meta_model(f"pointgpt_{size}"), {"base_model": _meta_state(shapes)})
    finetuned = official_shapes.pointgpt_finetuned(size, 15)
    assert report.layout == "pointgpt_pretrain"
    assert set(report.loaded) == {k[len("module.GPT_Transformer.") :] for k in shapes}
    expected_missing = {"cls_token", "cls_pos"} | {
        k for k in finetuned if k.startswith(("blocks.cls_head", "blocks.cls_norm"))
    }
    assert set(report.missing) == expected_missing and len(expected_missing) == 20
    assert report.unexpected == [] and report.ignored == []


def test_pointgpt_s_pretrain_values_land_in_place(official_shapes, make_state_dict):
    pretrain = make_state_dict(official_shapes.pointgpt_pretrain("s"), seed=7)
    model = create_backbone("pointgpt_s", num_classes=40)
    report = load_checkpoint(model, {"base_model": pretrain})
    state = model.state_dict()
    assert all(torch.equal(state[key], pretrain[f"module.GPT_Transformer.{key}"]) for key in report.loaded)


@pytest.mark.parametrize("size", ["b", "l"])
def test_pointgpt_post_pretrain_drops_the_87_way_head(size, official_shapes):
    shapes = official_shapes.pointgpt_post_pretrain(size)
    report = load_checkpoint(_meta_model(f"pointgpt_{size}"), {"base_model": _meta_state(shapes), "epoch": 100})
    head = {k for k in official_shapes.pointgpt_finetuned(size, 15) if k.startswith("blocks.cls_head_finetune.")}
    assert report.layout == "pointgpt_post_pretrain"
    assert set(report.missing) == head and len(head) == 16
    assert set(report.ignored) == head and report.unexpected == []
    assert len(report.loaded) == len(shapes) - 16


def test_post_pretrain_rule_is_for_pointgpt_only_and_not_for_an_87_class_model(official_shapes):
    shapes = official_shapes.pointgpt_post_pretrain("b")
    as_87 = load_checkpoint(_meta_model("pointgpt_b", num_classes=87), {"base_model": _meta_state(shapes)})
    assert (as_87.layout, as_87.missing, as_87.unexpected) == ("finetuned", [], [])
    mae_87 = {"base_model": _meta_state(official_shapes.point_mae_finetuned(87))}
    with pytest.raises(CheckpointError, match=r"cls_head_finetune\.8\.weight: checkpoint \(87, 256\)"):
        load_checkpoint(_meta_model("point_mae", num_classes=15), mae_87)


# --------------------------------------------------------------------------------------------
# PointGPT forward semantics
# --------------------------------------------------------------------------------------------


def test_patch_order_follows_the_nearest_unvisited_centre_from_centre_zero():
    # centres on the x axis at these positions; index 0 is where the sequence starts
    xs = torch.tensor([0.0, 5.0, 1.0, 4.0, 2.5, 3.0, -1.5])
    center = torch.stack([xs, torch.zeros(7), torch.zeros(7)], dim=-1).unsqueeze(0)
    # from 0: nearest 1.0 (idx 2), then 2.5 (4), 3.0 (5), 4.0 (3), 5.0 (1), then -1.5 (6)
    assert sort_patches(center).tolist() == [[0, 2, 4, 5, 3, 1, 6]]


def test_patch_order_breaks_ties_by_the_lowest_index_and_is_per_cloud():
    # centres 1 and 2 are both at distance 1 from centre 0: the lower index comes first
    first = torch.tensor([[0.0, 0, 0], [1, 0, 0], [-1, 0, 0], [3, 0, 0]])
    second = torch.tensor([[0.0, 0, 0], [0, 0, 9], [0, 0, 1], [0, 0, 2]])
    assert sort_patches(torch.stack([first, second])).tolist() == [[0, 1, 2, 3], [0, 2, 3, 1]]


def test_sorted_patches_are_the_fps_knn_patches_reordered(tiny_backbone):
    model = tiny_backbone("pointgpt_s")
    points = _points()
    neighborhood, center = model.group_divider(points)
    sorted_neighborhood, sorted_center = model.sorted_patches(points)
    order = sort_patches(center)
    for b in range(points.shape[0]):
        assert torch.equal(sorted_center[b], center[b, order[b]])
        assert torch.equal(sorted_neighborhood[b], neighborhood[b, order[b]])
    assert order[:, 0].eq(0).all()


def test_sine_position_embedding_matches_its_formula():
    embedding = SinePositionEmbedding(3, 32)  # F = 10 features per coordinate, 2 zeros of padding
    xyz = torch.tensor([[0.3, -0.7, 1.2]])
    out = embedding(xyz)[0]
    expected = []
    for coordinate in xyz[0].tolist():
        for i in range(10):
            angle = coordinate * 2 * math.pi / 10000 ** (2 * (i // 2) / 10)
            expected.append(math.sin(angle) if i % 2 == 0 else math.cos(angle))
    assert out.shape == (32,)
    torch.testing.assert_close(out[:30], torch.tensor(expected))
    assert out[30:].eq(0).all()
    assert SinePositionEmbedding(3, 1024).num_pos_feats == 340  # official: 1020 features + 4 zeros


def test_gpt_attention_equals_torch_multihead_attention_with_the_causal_mask():
    torch.manual_seed(0)
    ours = GPTAttention(16, 4).eval()
    reference = nn.MultiheadAttention(16, 4).eval()
    reference.load_state_dict(ours.state_dict())  # same parameter names as the official module
    x = torch.randn(3, 7, 16)
    mask = torch.full((7, 7), True).triu(1)
    expected, _ = reference(x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1), attn_mask=mask, need_weights=False)
    torch.testing.assert_close(ours(x), expected.transpose(0, 1), rtol=1e-5, atol=1e-6)
    ours.fused = False
    torch.testing.assert_close(ours(x), expected.transpose(0, 1), rtol=1e-5, atol=1e-6)


def _reference_gpt_layers(layers, h, pos, mask):
    """The official GPT Block loop, sequence-first: ``x = ln_1(x + pos); x = x + attn(x); x = x + mlp(ln_2(x))``."""
    for layer in layers:
        mha = nn.MultiheadAttention(h.shape[-1], layer.attn.num_heads)
        mha.load_state_dict(layer.attn.state_dict())
        x = layer.ln_1(h + pos)
        a, _ = mha(x, x, x, attn_mask=mask, need_weights=False)
        x = x + a
        h = x + layer.mlp(layer.ln_2(x))
    return h


def _reference_pointgpt_logits(model, points):
    """The official ``PointTransformer.forward`` (classification part), sequence-first."""
    neighborhood, center = model.sorted_patches(points)
    tokens = model.encoder(neighborhood)
    batch, length, _ = tokens.shape
    pos = torch.cat([model.sos_pos.expand(batch, -1, -1), model.pos_embed(center)], dim=1)
    x = torch.cat([model.cls_token.expand(batch, -1, -1), tokens], dim=1)
    pos = torch.cat([model.cls_pos.expand(batch, -1, -1), pos], dim=1)
    mask = torch.full((length + 2, length + 2), True).triu(1)
    h, pos = x.transpose(0, 1), pos.transpose(0, 1)
    h = torch.cat([torch.ones(1, batch, h.shape[-1]) * model.blocks.sos, h], dim=0)
    h = model.blocks.ln_f(_reference_gpt_layers(model.blocks.layers, h, pos, mask))
    h = model.blocks.cls_norm(h.transpose(0, 1))
    return model.blocks.cls_head_finetune(torch.cat([h[:, 1], h[:, 2:].max(1)[0]], dim=-1)), h


@pytest.mark.parametrize("name", ["pointgpt_s", "pointgpt_b"])
def test_pointgpt_logits_equal_the_official_forward_written_independently(name, tiny_backbone):
    torch.manual_seed(0)
    model = tiny_backbone(name, num_classes=6).eval()
    points = _points()
    with torch.no_grad():
        expected, _ = _reference_pointgpt_logits(model, points)
        torch.testing.assert_close(model(points), expected, rtol=1e-4, atol=1e-5)


def test_pointgpt_is_causal_and_its_cls_feature_does_not_depend_on_the_points(tiny_backbone):
    torch.manual_seed(0)
    model = tiny_backbone("pointgpt_s").eval()
    width = model.trans_dim
    with torch.no_grad():
        first = model.forward_features(_points(seed=1))
        second = model.forward_features(_points(seed=2) * 2)
        torch.testing.assert_close(first[:, :width], second[:, :width])
        assert not torch.allclose(first[:, width:], second[:, width:])
        tokens = torch.randn(1, 8, width)
        pos = torch.randn(1, 8, width)
        changed = tokens.clone()
        changed[:, 5:] += torch.randn(1, 3, width)  # patch tokens 5.. are sequence positions 7..
        before, after = model.extract(tokens, pos), model.extract(changed, pos)
        torch.testing.assert_close(before[:, :7], after[:, :7])
        assert (before[:, 7:] - after[:, 7:]).abs().amax() > 1e-2


def test_pointgpt_generation_branch_predicts_every_sorted_patch(tiny_backbone):
    torch.manual_seed(0)
    model = tiny_backbone("pointgpt_s").eval()
    points = _points()
    with torch.no_grad():
        logits, generated, target = model.forward_generation(points)
        neighborhood, center = model.sorted_patches(points)
    batch, groups, size = points.shape[0], model.num_group, model.group_size
    assert generated.shape == target.shape == (batch * groups, size, 3)
    torch.testing.assert_close(target, (neighborhood + center.unsqueeze(2)).reshape(-1, size, 3))
    torch.testing.assert_close(logits, model(points))


# --------------------------------------------------------------------------------------------
# ReCon forward semantics
# --------------------------------------------------------------------------------------------


def _reference_recon_block(block, x):
    """The official ReCon ``Block.forward`` with ``with_contrast=True``, explicit attention."""

    def attention(q, k, v, heads):
        batch, tq, width = q.shape
        split = lambda t: t.reshape(batch, t.shape[1], heads, width // heads).transpose(1, 2)  # noqa: E731
        weights = (split(q) @ split(k).transpose(-2, -1) * (width // heads) ** -0.5).softmax(-1)
        return (weights @ split(v)).transpose(1, 2).reshape(batch, tq, width)

    heads = block.attn.num_heads
    cls, vis = block.norm1_contrast(x[:, :3]), block.norm1(x[:, 3:])
    k, v = block.attn_contrast.kv(vis).chunk(2, dim=-1)
    cls = cls + block.attn_contrast.proj(attention(block.attn_contrast.q(cls), k, v, heads))
    q, k, v = block.attn.qkv(vis).chunk(3, dim=-1)
    vis = vis + block.attn.proj(attention(q, k, v, heads))
    cls, vis = block.norm2_contrast(cls), block.norm2(vis)
    cls = cls + block.mlp_contrast(cls)
    vis = vis + block.mlp(vis)
    return torch.cat([cls, vis], dim=1)


def test_recon_logits_equal_the_official_forward_written_independently(tiny_backbone):
    torch.manual_seed(0)
    model = tiny_backbone("recon", num_classes=6).eval()
    points = _points()
    with torch.no_grad():
        neighborhood, center = model.group_divider(points)
        tokens = model.encoder(neighborhood)
        batch = tokens.shape[0]
        expand = lambda t: t.expand(batch, -1, -1)  # noqa: E731
        x = torch.cat([expand(model.cls_token), expand(model.img_token), expand(model.text_token), tokens], 1)
        pos = torch.cat(
            [expand(model.cls_pos), expand(model.img_pos), expand(model.text_pos), model.pos_embed(center)], 1
        )
        for block in model.blocks.blocks:
            x = _reference_recon_block(block, x + pos)
        x = model.norm(x)
        expected = model.cls_head_finetune(torch.cat([x[:, 0], x[:, 1], x[:, 2], x[:, 3:].max(1)[0]], dim=-1))
        torch.testing.assert_close(model(points), expected, rtol=1e-4, atol=1e-5)
        model.set_fused_attention(False)
        torch.testing.assert_close(model(points), expected, rtol=1e-4, atol=1e-5)


def test_recon_patch_tokens_do_not_see_the_global_queries(tiny_backbone):
    torch.manual_seed(0)
    block = tiny_backbone("recon").blocks.blocks[0].eval()
    x = torch.randn(2, 11, block.norm1.normalized_shape[0])
    changed = x.clone()
    changed[:, :3] += torch.randn(2, 3, x.shape[-1])
    with torch.no_grad():
        torch.testing.assert_close(block(x)[:, 3:], block(changed)[:, 3:])
        assert (block(x)[:, :3] - block(changed)[:, :3]).abs().amax() > 1e-2


# --------------------------------------------------------------------------------------------
# adapters on the new backbones
# --------------------------------------------------------------------------------------------


def test_pointgpt_default_targets_are_the_extractor_linears_not_the_generator(tiny_backbone):
    from pcclora.peft import apply_peft
    from pcclora.peft.layers import AdapterLinear

    model = apply_peft(tiny_backbone("pointgpt_s"), {"method": "lora", "rank": 2})
    adapted = sorted(name for name, module in model.named_modules() if isinstance(module, AdapterLinear))
    depth = model.depth
    expected = sorted(f"blocks.layers.{i}.{leaf}" for i in range(depth) for leaf in ("attn.out_proj", "mlp.0", "mlp.2"))
    assert adapted == expected
    assert model.peft_config["target_modules"] == list(model.peft_target_modules)


def test_recon_contrast_branch_can_be_targeted_too(tiny_backbone):
    from pcclora.peft import apply_peft
    from pcclora.peft.layers import AdapterLinear

    targets = ["attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2", "attn_contrast.q", "attn_contrast.kv", "mlp_contrast.fc1"]
    model = apply_peft(
        tiny_backbone("recon"), {"method": "clora", "rank": 2, "num_bases": 2, "target_modules": targets}
    )
    adapted = {name.split(".", 3)[3] for name, m in model.named_modules() if isinstance(m, AdapterLinear)}
    assert adapted == set(targets)
    default = apply_peft(tiny_backbone("recon"), {"method": "lora", "rank": 2})
    leaves = {name.split(".", 3)[3] for name, m in default.named_modules() if isinstance(m, AdapterLinear)}
    assert leaves == {"attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"}


def test_glob_targets_match_whole_names_or_dotted_suffixes():
    from pcclora.peft.inject import target_matches

    assert target_matches("blocks.layers.3.mlp.0", "blocks.layers.*.mlp.0")
    assert not target_matches("generator_blocks.layers.3.mlp.0", "blocks.layers.*.mlp.0")
    assert target_matches("a.b.attn.qkv", "attn.qkv") and not target_matches("a.b.xattn.qkv", "attn.qkv")
    assert not target_matches("blocks.0.attn_contrast.proj", "attn.proj")
