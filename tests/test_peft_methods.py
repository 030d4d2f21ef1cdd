"""The point-cloud peers and VeRA: every method of ``pcclora.peft.methods`` that has options.

Parametrised over the registry, so that a new method is tested by registering it (with small
options in ``TINY_OPTIONS`` when its defaults do not fit the tiny backbone):

- output equal to the frozen backbone at initialisation where the official method is
  zero-initialised, and the documented difference where it is not (the non-zero parts set to
  the identity give exactly the structural change docs/method.md describes);
- the trained set (names) and its size for Point-MAE with 15 classes (the figures of the README,
  derived from the official code), gradients only there;
- adapter state dict round trip, merge equivalence where something merges;
- CPU only, no compiled extension; clear errors for bad options and unsuitable models.
"""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
from torch import nn

import backbones
from backbones.errors import ConfigError, StateError, UnknownNameError
from pcclora.config import load_config, method_recipe
from pcclora.peft import (
    METHODS,
    adapter_state_dict,
    apply_peft,
    count_parameters,
    export_merged_state_dict,
    load_adapter_state_dict,
    merge_adapters,
    regularization_loss,
    regularization_terms,
    resolve_peft_config,
    unmerge_adapters,
)
from pcclora.peft.merge import merged_parameter_count

PEERS = [name for name, spec in METHODS.items() if spec.options]
#: Options that fit the tiny backbone (trans_dim 32, depth 2, 8 groups of 8, 64 points).
TINY_OPTIONS = {
    "idpt": {"prompt_layer": 1, "dgcnn_k": 4},
    "dapt": {"bottleneck": 4},
    "ppt": {"prompt_hidden": 8, "prompt_num_group": 6, "prompt_group_size": 8},
    "pointgst": {"rank": 4, "local": 4},
    "pointlora": {"rank": 2, "prompt_hidden": 8, "scales": [[8, 8, 3], [4, 16, 2]]},
    "vera": {"rank": 8},
}
ZERO_INITIALISED = {"pointgst", "vera"}
#: Trainable parameters on Point-MAE, 15 classes, official defaults (README, docs/method.md).
POINT_MAE_TRAINABLE = {
    "idpt": 1_696_783,
    "dapt": 1_087_771,
    "ppt": 1_042_191,
    "pointgst": 622_831,
    "pointlora": 772_752,
    "vera": 322_063,
}
#: Name prefixes / parts of what each method trains (besides the head and the cls token/position).
TRAINED_NAMES = {
    "idpt": ("idpt.prompt_generator.",),
    "dapt": ("dapt.", ".ssf_", ".mlp.adapter."),
    "ppt": ("ppt.", "encoder.first_conv.", "pos_embed."),
    "pointgst": ("pointgst.adapters.",),
    "pointlora": ("pointlora.", ".lora_down", ".lora_up", "encoder.first_conv.", "pos_embed."),
    "vera": (".vera_lambda_",),
}
MERGE = {name: METHODS[name].merge for name in PEERS}


def _cfg(method: str, **extra) -> dict:
    return {"method": method, method: {**TINY_OPTIONS.get(method, {}), **extra}}


def _points(batch: int = 3, num_points: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, num_points, 3, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def plain(tiny_backbone):
    torch.manual_seed(0)
    return tiny_backbone("point_mae").eval()


def _adapted(plain: nn.Module, method: str, **extra) -> nn.Module:
    torch.manual_seed(1)
    return apply_peft(copy.deepcopy(plain), _cfg(method, **extra)).eval()


def _randomize(model: nn.Module, seed: int = 3, std: float = 0.2) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * std)


# --------------------------------------------------------------------------------------------
# outputs at initialisation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(ZERO_INITIALISED))
def test_zero_initialised_methods_start_at_the_frozen_backbone(method, plain):
    adapted = _adapted(plain, method)
    points = _points()
    with torch.no_grad():
        torch.testing.assert_close(adapted(points), plain(points), rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", sorted(set(PEERS) - ZERO_INITIALISED))
def test_methods_that_are_not_zero_initialised_change_the_outputs_at_once(method, plain):
    adapted = _adapted(plain, method)
    points = _points()
    head = adapted.cls_head_finetune
    with torch.no_grad():
        features = adapted.forward_features(points)
        assert torch.equal(head(features), adapted(points))
        if features.shape[-1] == 2 * plain.trans_dim:  # same head width: compare the logits too
            plain_head = copy.deepcopy(plain.cls_head_finetune)
            assert not torch.allclose(plain_head(features), plain(points))
        assert not torch.allclose(features[:, : plain.trans_dim], plain.forward_features(points)[:, : plain.trans_dim])


def _zero_last_linears(*mlps: nn.Sequential) -> None:
    with torch.no_grad():
        for mlp in mlps:
            mlp[-1].weight.zero_()
            mlp[-1].bias.zero_()


def _start(model: nn.Module, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    tokens, pos, _ = model.embed_group(points)
    batch = tokens.shape[0]
    x = torch.cat([model.cls_token.expand(batch, -1, -1), tokens], dim=1)
    return x, torch.cat([model.cls_pos.expand(batch, -1, -1), pos], dim=1), tokens.shape[1]


def test_idpt_inserts_one_prompt_before_the_prompt_layer_and_pools_cls_prompt_max(plain):
    adapted = _adapted(plain, "idpt")
    hook = adapted.idpt
    points = _points()
    with torch.no_grad():
        x, pos, groups = _start(plain, points)
        for index, block in enumerate(plain.blocks.blocks):
            if index == hook.prompt_layer:
                prompt = hook.prompt_generator(x[:, 1:])
                x = torch.cat([x[:, :1], prompt, x[:, 1:]], dim=1)
                pos = torch.cat([pos[:, :1], hook.prompt_pos.expand(3, -1, -1), pos[:, 1:]], dim=1)
            x = block(x + pos)
        x = plain.norm(x)
        expected = adapted.cls_head_finetune(torch.cat([x[:, 0], x[:, 1], x[:, 2:].amax(dim=1)], dim=-1))
        torch.testing.assert_close(adapted(points), expected)
    assert adapted.cls_head_finetune[0].in_features == 3 * plain.trans_dim


def test_dapt_with_identity_scale_shift_is_positions_once_and_zero_prompts(plain):
    adapted = _adapted(plain, "dapt")
    with torch.no_grad():
        for name, parameter in adapted.named_parameters():
            if name.endswith(("ssf_scale", ".scale")) and "adapter" not in name:
                parameter.fill_(1.0)
            elif name.endswith(("ssf_shift", ".shift")):
                parameter.zero_()
    points = _points()
    depth = len(plain.blocks.blocks)
    with torch.no_grad():
        x, pos, groups = _start(plain, points)
        x = x + pos  # once
        for block in plain.blocks.blocks:
            x = block(x)
            x = torch.cat([x[:, :1], torch.zeros_like(x[:, :1]), x[:, 1:]], dim=1)
        x = plain.norm(x)
        pooled = torch.cat([x[:, 0], x[:, 1 : 1 + depth].mean(dim=1), x[:, 1 + depth :].amax(dim=1)], dim=-1)
        torch.testing.assert_close(adapted(points), adapted.cls_head_finetune(pooled))


def test_ppt_with_zero_prompt_mlps_is_the_extra_group_and_mean_pooling(plain):
    adapted = _adapted(plain, "ppt")
    hook = adapted.ppt
    _zero_last_linears(hook.prompt_mlp, hook.prompt_pos_mlp, hook.prompt_all_mlp)
    points = _points()
    with torch.no_grad():
        x, pos, groups = _start(plain, points)
        extra, extra_pos, _ = plain.embed_group(points, hook.num_group, hook.group_size)
        x, pos = torch.cat([x, extra], dim=1), torch.cat([pos, extra_pos], dim=1)
        for block in plain.blocks.blocks:
            x = block(x + pos)
        x = plain.norm(x)
        pooled = torch.cat([x[:, 0], x[:, 1 : 1 + groups].mean(dim=1), x[:, -hook.num_group :].mean(dim=1)], dim=-1)
        torch.testing.assert_close(adapted(points), adapted.cls_head_finetune(pooled))
    assert not any(isinstance(m, nn.ReLU) for m in adapted.cls_head_finetune.modules())


def test_pointlora_with_zero_branches_is_the_backbone_with_the_selected_tokens(plain):
    adapted = _adapted(plain, "pointlora")
    hook = adapted.pointlora
    _zero_last_linears(hook.prompt_mlp, hook.prompt_pos_mlp, hook.prompt_proj_mlp, hook.prompt_qkv_mlp)
    points = _points()
    with torch.no_grad():
        x, pos, _ = _start(plain, points)
        for num_group, group_size, keep in hook.scales:
            tokens, token_pos, _ = plain.embed_group(points, num_group, group_size)
            index = hook.mask_predictor(tokens).topk(keep, dim=1).indices[..., None].expand(-1, -1, tokens.shape[-1])
            x = torch.cat([x, torch.gather(tokens, 1, index)], dim=1)
            pos = torch.cat([pos, torch.gather(token_pos, 1, index)], dim=1)
        for block in plain.blocks.blocks:
            x = block(x + pos)
        x = plain.norm(x)
        expected = plain.cls_head_finetune(torch.cat([x[:, 0], x[:, 1:].amax(dim=1)], dim=-1))
        torch.testing.assert_close(adapted(points), expected)


# --------------------------------------------------------------------------------------------
# what trains
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def meta_point_mae():
    with torch.device("meta"):
        return backbones.create_backbone("point_mae", num_classes=15)


@pytest.mark.parametrize("method", PEERS)
def test_trainable_count_on_point_mae_with_15_classes_is_the_official_one(method, meta_point_mae):
    model = apply_peft(copy.deepcopy(meta_point_mae), {"method": method})
    counts = count_parameters(model)
    assert counts["trainable"] == POINT_MAE_TRAINABLE[method]
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == counts["trainable"]
    assert sum(counts["groups"].values()) == counts["total"]


@pytest.mark.parametrize("method", PEERS)
def test_the_trained_set_is_the_method_plus_head_and_cls(method, plain):
    adapted = _adapted(plain, method)
    trained = {name for name, p in adapted.named_parameters() if p.requires_grad}
    own = {name for name in trained if any(part in name for part in TRAINED_NAMES[method])}
    head = {name for name in trained if name.startswith("cls_head_finetune.")}
    assert own and head and {"cls_token", "cls_pos"} <= trained
    assert trained == own | head | {"cls_token", "cls_pos"}
    frozen = {name for name, p in adapted.named_parameters() if not p.requires_grad}
    assert any(name.startswith("blocks.") for name in frozen)
    assert any(name.startswith("encoder.second_conv.") for name in frozen)


@pytest.mark.parametrize("method", PEERS)
def test_gradients_reach_exactly_the_trained_set(method, plain):
    adapted = _adapted(plain, method).train()
    _randomize(adapted)
    loss = adapted(_points()).logsumexp(-1).mean() + regularization_loss(adapted)
    loss.backward()
    for name, parameter in adapted.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None, name
        else:
            assert parameter.grad is None, name


def test_only_pointlora_and_clora_add_a_regulariser(plain):
    adapted = _adapted(plain, "pointlora").train()
    assert regularization_terms(adapted) == {}  # nothing before the first forward
    adapted(_points())
    ((weight, value),) = regularization_terms(adapted).values()
    # a negative entropy per scale, in [-ln 2, 0], weighted 1 and 0.25
    assert weight == 0.004 and -1.25 * 0.6932 < float(value.detach()) <= 0
    for method in set(PEERS) - {"pointlora"}:
        model = _adapted(plain, method)
        model(_points())
        assert regularization_terms(model) == {}


@pytest.mark.parametrize("method", ("idpt", "ppt", "pointgst"))
def test_frozen_blocks_keep_stochastic_depth_and_frozen_batch_norm_stays_in_eval(method, tiny_backbone):
    torch.manual_seed(0)
    model = apply_peft(tiny_backbone("point_mae", drop_path_rate=0.5), _cfg(method)).train()
    model(_points())
    assert all(block.training for block in model.blocks.blocks)
    assert not model.encoder.second_conv.training


# --------------------------------------------------------------------------------------------
# checkpoints and merging
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", PEERS)
def test_adapter_state_dict_round_trip_reproduces_the_outputs(method, plain):
    adapted = _adapted(plain, method).train()
    _randomize(adapted)
    adapted(_points(seed=5))  # trained BatchNorm statistics move
    adapted.eval()
    state = adapter_state_dict(adapted)
    assert state["peft_config"][method] == resolve_peft_config(_cfg(method))[method]
    torch.manual_seed(123)  # other random draws for the fresh model's new modules
    restored = load_adapter_state_dict(copy.deepcopy(plain), state).eval()
    points = _points(seed=7)
    with torch.no_grad():
        torch.testing.assert_close(restored(points), adapted(points), rtol=0, atol=0)


@pytest.mark.parametrize("method", PEERS)
def test_a_checkpoint_with_other_structural_options_is_refused(method, plain):
    adapted = _adapted(plain, method)
    state = adapter_state_dict(adapted)
    option = next(o for o in METHODS[method].options if o.structural)
    other = copy.deepcopy(state)
    value = other["peft_config"][method][option.name]
    other["peft_config"][method][option.name] = _another_value(method, option.name, value)
    with pytest.raises(Exception, match=f"{method}.{option.name}"):
        load_adapter_state_dict(_adapted(plain, method), other)


def _another_value(method: str, name: str, value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1 if not (method == "idpt" and name == "prompt_layer") else 0
    return value


@pytest.mark.parametrize("method", PEERS)
def test_merging_keeps_the_outputs_and_unmerging_restores_the_weights(method, plain):
    adapted = _adapted(plain, method)
    _randomize(adapted)
    points = _points()
    before = {k: v.clone() for k, v in adapted.state_dict().items()}
    with torch.no_grad():
        unmerged = adapted(points)
        merge_adapters(adapted)
        torch.testing.assert_close(adapted(points), unmerged, rtol=1e-4, atol=1e-5)
        unmerge_adapters(adapted)
    after = adapted.state_dict()
    for key, value in before.items():
        torch.testing.assert_close(after[key], value, rtol=1e-5, atol=1e-6)
    total = sum(p.numel() for p in adapted.parameters())
    gone = total - merged_parameter_count(adapted)
    if MERGE[method] == "full":
        assert merged_parameter_count(adapted) == sum(p.numel() for p in plain.parameters())
    elif MERGE[method] == "partial":
        assert 0 < gone < count_parameters(adapted)["trainable"]
    else:
        assert gone == 0


@pytest.mark.parametrize("method", PEERS)
def test_only_fully_merging_methods_export_a_plain_backbone(method, plain):
    adapted = _adapted(plain, method)
    _randomize(adapted)
    if MERGE[method] != "full":
        with pytest.raises(StateError, match=f"method '{method}' cannot be exported as a plain backbone"):
            export_merged_state_dict(adapted)
        return
    exported = export_merged_state_dict(adapted)
    fresh = copy.deepcopy(plain)
    fresh.load_state_dict(exported, strict=True)
    points = _points()
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(points), adapted(points), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------
# models, options, errors
# --------------------------------------------------------------------------------------------


_POINTGPT = ("pointgpt_s", "pointgpt_b", "pointgpt_l")
#: Backbones a method refuses, and why (test below); every other pair trains.
REFUSED = {
    "idpt": _POINTGPT,
    "dapt": (*_POINTGPT, "recon"),
    "ppt": (*_POINTGPT, "recon"),
    "pointgst": (*_POINTGPT, "recon"),
    "pointlora": _POINTGPT,
}


@pytest.mark.parametrize("name", backbones.classification_backbones())
@pytest.mark.parametrize("method", PEERS)
def test_every_method_trains_on_every_backbone_that_offers_what_it_needs(method, name, tiny_backbone):
    torch.manual_seed(0)
    if name in REFUSED.get(method, ()):
        # PointGPT has no token hooks (its own sorted, causal extractor); ReCon's blocks have no
        # two halves to put a branch between: one clear error, the model untouched
        model = tiny_backbone(name)
        with pytest.raises(ConfigError, match=f"method '{method}' changes the backbone's forward and needs"):
            apply_peft(model, _cfg(method))
        assert not hasattr(model, "peft_config")
        return
    model = apply_peft(tiny_backbone(name), _cfg(method)).train()
    logits = model(_points())
    assert logits.shape == (3, 5)
    (logits.sum() + regularization_loss(model)).backward()


def test_vera_works_on_any_model_and_the_others_need_the_token_hooks(tiny_image_vit):
    images = torch.randn(2, 3, 16, 16)
    torch.manual_seed(0)
    vit = tiny_image_vit().eval()
    extras = {"trainable_extra": ["cls_token"]}  # the image ViT has no cls_pos
    adapted = apply_peft(copy.deepcopy(vit), {"method": "vera", "vera": {"rank": 4}, **extras}).eval()
    with torch.no_grad():
        torch.testing.assert_close(adapted(images), vit(images))
    for method in set(PEERS) - {"vera"}:
        model = tiny_image_vit()
        state = copy.deepcopy(model.state_dict())
        with pytest.raises(ConfigError, match=f"method '{method}' changes the backbone's forward and needs"):
            apply_peft(model, {**_cfg(method), **extras})
        assert not hasattr(model, "peft_config")
        for key, value in model.state_dict().items():  # the refused model is untouched
            assert torch.equal(value, state[key])


def test_the_methods_run_on_the_cpu_without_compiled_extensions():
    code = (
        "import sys, torch, backbones, pcclora\n"
        "from pcclora.peft import apply_peft\n"
        "m = backbones.create_backbone('point_mae', num_classes=3, trans_dim=32, depth=2, num_heads=2, "
        "encoder_dims=32, num_group=8, group_size=8)\n"
        "opts = {'idpt': {'prompt_layer': 1, 'dgcnn_k': 4}, 'ppt': {'prompt_num_group': 8, 'prompt_group_size': 8},"
        " 'pointgst': {'rank': 4, 'local': 4}, 'pointlora': {'scales': [[8, 8, 3], [4, 16, 2]]}}\n"
        "import copy\n"
        "for method in ['idpt', 'dapt', 'ppt', 'pointgst', 'pointlora', 'vera']:\n"
        "    cfg = {'method': method, **({method: opts[method]} if method in opts else {})}\n"
        "    apply_peft(copy.deepcopy(m), cfg)(torch.randn(2, 64, 3))\n"
        "bad = [n for n in sys.modules if n.split('.')[0] in "
        "('knn_cuda', 'pointnet2_ops', 'pointnet2_utils', 'chamfer', 'emd', 'pytorch3d')]\n"
        "print(bad, torch.cuda.is_initialized())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] False"


@pytest.mark.parametrize(
    ("cfg", "error", "message"),
    [
        ({"method": "pointlroa"}, UnknownNameError, r"unknown peft method 'pointlroa' \(did you mean 'pointlora'\?\)"),
        ({"method": "vera", "vera": {"rank": 0}}, ConfigError, r"peft.vera.rank must be an integer >= 1, got 0"),
        ({"method": "pointgst", "pointgst": {"rank": 0}}, ConfigError, r"peft.pointgst.rank must be an integer >= 1"),
        ({"method": "dapt", "dapt": {"bottleneck": 0}}, ConfigError, r"peft.dapt.bottleneck must be an integer >= 1"),
        ({"method": "pointlora", "pointlora": {"rank": -1}}, ConfigError, r"peft.pointlora.rank must be an integer"),
        ({"method": "idpt", "idpt": {"prompt_layr": 3}}, UnknownNameError, r"did you mean 'prompt_layer'"),
        ({"method": "idpt", "idpt": {"cls_type": "al"}}, UnknownNameError, r"value of peft.idpt.cls_type 'al'"),
        ({"method": "idpt", "idpt": 3}, ConfigError, r"peft.idpt must be a mapping"),
        (
            {"method": "dapt", "dapt": {"adapter_dropout": 1.0}},
            ConfigError,
            r"adapter_dropout must be a number in \[0, 1\)",
        ),
        ({"method": "pointlora", "pointlora": {"scales": [[8, 8, 9]]}}, ConfigError, r"keep <= num_group"),
        ({"method": "vera", "rank": 16}, ConfigError, r"peft.rank = 16 is not used by method 'vera'.*peft.vera"),
        ({"method": "idpt", "target_modules": ["attn.qkv"]}, ConfigError, r"peft.target_modules .* not used"),
        ({"method": "clora", "idpt": {"prompt_layer": -1}}, ConfigError, r"peft.idpt.prompt_layer must be"),
        (
            {"method": "clora", "idtp": {}},
            UnknownNameError,
            r"unknown peft config key 'idtp' \(did you mean 'idpt'\?\)",
        ),
    ],
)
def test_bad_options_are_clear_errors(cfg, error, message):
    with pytest.raises(error, match=message):
        resolve_peft_config(cfg)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (
            _cfg("idpt", prompt_layer=2),
            r"peft.idpt.prompt_layer 2 is out of range: .* has 2 blocks, so it must be in 0..1",
        ),
        (_cfg("idpt", dgcnn_k=20), r"peft.idpt.dgcnn_k 20 exceeds the model's num_group 8"),
        (_cfg("pointgst", local=3), r"peft.pointgst.local 3 does not divide the model's num_group 8"),
        (_cfg("ppt", train_modules=["encoder.first_cnv"]), r"trains the backbone modules \['encoder.first_cnv'\]"),
        (_cfg("pointlora", scale_weights=[1.0]), r"scale_weights has 1 entries but scales has 2"),
    ],
)
def test_options_that_do_not_fit_the_model_are_refused_before_it_changes(cfg, message, plain):
    model = copy.deepcopy(plain)
    with pytest.raises(ConfigError, match=message):
        apply_peft(model, cfg)
    assert not hasattr(model, "peft_config") and model.token_hooks() == []


def test_the_resolved_config_keeps_only_the_own_block_and_other_blocks_are_checked():
    resolved = resolve_peft_config({"method": "dapt", "idpt": {"prompt_layer": 3}})
    assert "dapt" in resolved and "idpt" not in resolved
    assert resolved["dapt"] == {o.name: o.default for o in METHODS["dapt"].options}
    assert "idpt" not in resolve_peft_config({"method": "clora"})


def test_config_overrides_reach_the_method_blocks_and_recipes_merge(tmp_path):
    config = load_config("scanobjectnn_hardest", ["peft.method=idpt", "peft.idpt.prompt_layer=6"])
    assert config["peft"]["idpt"]["prompt_layer"] == 6 and config["peft"]["method"] == "idpt"
    with pytest.raises(UnknownNameError, match=r"peft.idpt.prompt_layr.*did you mean 'peft.idpt.prompt_layer'"):
        load_config("scanobjectnn_hardest", ["peft.idpt.prompt_layr=6"])
    with pytest.raises(ConfigError, match=r"peft.idpt.prompt_layer='x': expected an int"):
        load_config("scanobjectnn_hardest", ["peft.idpt.prompt_layer=x"])
    recipe = load_config("scanobjectnn_hardest", method="ppt")
    assert recipe["peft"]["method"] == "ppt" and recipe["dataset"]["augment"]["rotate_y"]
    assert recipe["backbone"]["drop_path_rate"] == 0.3
    # the config's own value survives the recipe (the synthetic segmentation config trains pos_embed)
    assert load_config("shapenetpart_synthetic", method="vera")["peft"]["trainable_extra"] == ["pos_embed"]
    for method in METHODS:
        assert method_recipe(method)["peft"]["method"] == method
    with pytest.raises(UnknownNameError, match="did you mean 'pointgst'"):
        method_recipe("pointgts")
