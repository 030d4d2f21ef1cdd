"""Adapter checkpoints and the merged export: only trained tensors, exact reproduction, errors."""

from __future__ import annotations

import copy
import io

import pytest
import torch

from backbones.errors import CheckpointError
from pcclora.peft import (
    PeftStateError,
    adapter_state_dict,
    apply_peft,
    export_merged_state_dict,
    load_adapter_state_dict,
    merge_adapters,
    sade_loss,
)

CFG = {"rank": 2, "num_bases": 3}


@pytest.fixture
def fine_tuned(build_tiny, make_points, randomize_adapters):
    """``fine_tuned(...)`` as a factory (it needs the tiny-model fixtures)."""

    def make(method: str = "clora", dtype: torch.dtype = torch.float32):
        """A plain backbone and an adapted copy after one training step (head BN stats updated too)."""
        plain = build_tiny().to(dtype)
        model = apply_peft(copy.deepcopy(plain), {**CFG, "method": method})
        randomize_adapters(model)
        model.train()
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
        (model(make_points().to(dtype)).logsumexp(-1).mean() + 0.1 * sade_loss(model)).backward()
        optimizer.step()
        return plain, model.eval()

    return make


def test_adapter_state_holds_exactly_the_trained_tensors_and_the_config(fine_tuned):
    _, model = fine_tuned()
    state = adapter_state_dict(model)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    head_buffers = {f"cls_head_finetune.1.{leaf}" for leaf in ("running_mean", "running_var", "num_batches_tracked")}
    assert set(state) == trainable | head_buffers | {"peft_config"}
    assert state["peft_config"] == model.peft_config
    assert not any(key.startswith(("encoder.", "pos_embed.", "norm.")) for key in state)


def test_full_method_state_is_the_whole_model(fine_tuned):
    _, model = fine_tuned("full")
    state = adapter_state_dict(model)
    assert set(state) - {"peft_config"} == set(model.state_dict())


@pytest.mark.parametrize("method", ("clora", "clora_shared", "lora", "linear", "full"))
def test_loading_into_the_plain_backbone_reproduces_outputs(method, make_points, fine_tuned):
    plain, model = fine_tuned(method)
    buffer = io.BytesIO()
    torch.save(adapter_state_dict(model), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    restored = load_adapter_state_dict(copy.deepcopy(plain), state).eval()
    points = make_points(seed=5)
    assert torch.equal(restored(points), model(points))
    assert restored.peft_config == model.peft_config


def test_loading_into_an_adapted_model_with_the_same_config(make_points, fine_tuned):
    plain, model = fine_tuned()
    target = apply_peft(copy.deepcopy(plain), CFG)
    load_adapter_state_dict(target, adapter_state_dict(model))
    points = make_points(seed=6)
    assert torch.equal(target.eval()(points), model(points))


def test_another_config_is_a_clear_error(fine_tuned):
    plain, model = fine_tuned()
    target = apply_peft(copy.deepcopy(plain), {**CFG, "rank": 4})
    with pytest.raises(CheckpointError, match="rank: checkpoint 2, model 4"):
        load_adapter_state_dict(target, adapter_state_dict(model))


def test_missing_or_foreign_tensors_are_named(fine_tuned):
    plain, model = fine_tuned()
    state = adapter_state_dict(model)
    del state["cls_token"]
    with pytest.raises(CheckpointError, match="missing 1 tensor.*cls_token"):
        load_adapter_state_dict(copy.deepcopy(plain), state)
    state = adapter_state_dict(model)
    state["encoder.first_conv.0.weight"] = plain.encoder.first_conv[0].weight
    with pytest.raises(CheckpointError, match="unexpected 1.*encoder.first_conv.0.weight"):
        load_adapter_state_dict(copy.deepcopy(plain), state)


def test_shape_mismatch_names_the_tensor(build_tiny, fine_tuned):
    _, model = fine_tuned()
    other_classes = build_tiny(num_classes=7)
    expected = r"cls_head_finetune.4.weight \(5, 16\) vs model \(7, 16\)"
    with pytest.raises(CheckpointError, match=expected):
        load_adapter_state_dict(other_classes, adapter_state_dict(model))


def _snapshot(model: torch.nn.Module) -> tuple:
    """Everything a failed load must leave alone: modules, tensors, trainable flags, modes, attributes."""
    return (
        [(name, type(module).__name__, module.training) for name, module in model.named_modules()],
        {key: value.clone() for key, value in model.state_dict().items()},
        [(name, param.requires_grad) for name, param in model.named_parameters()],
        hasattr(model, "peft_config"),
        sum(len(module._forward_pre_hooks) for module in model.modules()),
    )


def _assert_same(before: tuple, after: tuple) -> None:
    assert before[0] == after[0] and before[2:] == after[2:]
    assert before[1].keys() == after[1].keys()
    for key, value in before[1].items():
        assert torch.equal(value, after[1][key]), key


@pytest.mark.parametrize("damage", ["missing", "unexpected", "shape", "not a tensor", "rank"])
def test_a_failed_load_into_a_plain_backbone_leaves_it_exactly_as_it_was(build_tiny, make_points, fine_tuned, damage):
    _, model = fine_tuned()
    state = adapter_state_dict(model)
    target = build_tiny(num_classes=7) if damage == "shape" else build_tiny()
    if damage == "missing":
        del state["cls_token"]
    elif damage == "unexpected":
        state["encoder.first_conv.0.weight"] = torch.zeros(3)
    elif damage == "not a tensor":
        state["cls_token"] = "?"
    elif damage == "rank":
        state["peft_config"] = {**state["peft_config"], "rank": 0}
    points = make_points(seed=3)
    logits = target.eval()(points)
    before = _snapshot(target)
    rng = torch.get_rng_state()
    with pytest.raises(CheckpointError):
        load_adapter_state_dict(target, state)
    _assert_same(before, _snapshot(target))
    assert torch.equal(target.eval()(points), logits)
    assert torch.equal(torch.get_rng_state(), rng)  # the dry run draws no random numbers


def test_a_plain_state_dict_is_not_an_adapter_checkpoint(fine_tuned):
    plain, _ = fine_tuned()
    with pytest.raises(CheckpointError, match="no 'peft_config'"):
        load_adapter_state_dict(copy.deepcopy(plain), plain.state_dict())


def test_loading_into_a_merged_model_is_refused(randomize_adapters, fine_tuned):
    plain, model = fine_tuned()
    target = merge_adapters(apply_peft(copy.deepcopy(plain), CFG))
    randomize_adapters(target)
    merge_adapters(target)
    with pytest.raises(PeftStateError, match="unmerge_adapters"):
        load_adapter_state_dict(target, adapter_state_dict(model))


def test_adapter_state_of_a_plain_model_is_an_error(build_tiny):
    with pytest.raises(PeftStateError, match="apply_peft"):
        adapter_state_dict(build_tiny())


@pytest.mark.parametrize("method", ("clora", "clora_shared", "lora", "linear"))
def test_merged_export_loads_strictly_into_a_fresh_backbone(method, build_tiny, make_points, fine_tuned):
    plain, model = fine_tuned(method, torch.float64)
    exported = export_merged_state_dict(model)
    assert list(exported) == list(plain.state_dict())
    fresh = build_tiny(seed=123).double()
    fresh.load_state_dict(exported, strict=True)
    points = make_points(seed=7).double()
    torch.testing.assert_close(fresh.eval()(points), model(points), rtol=1e-10, atol=1e-10)


def test_merged_export_is_the_same_before_and_after_merging(fine_tuned):
    _, model = fine_tuned("clora", torch.float64)
    unmerged_export = export_merged_state_dict(model)
    assert not any(layer.merged for layer in model.modules() if hasattr(layer, "merged"))
    merged_export = export_merged_state_dict(merge_adapters(model))
    for key, value in unmerged_export.items():
        torch.testing.assert_close(merged_export[key], value, rtol=0, atol=1e-12)
