"""The ``peft:`` config block: defaults, validation, clear errors."""

from __future__ import annotations

import pytest

import pcclora
from backbones.errors import ToolkitError, UnknownNameError
from pcclora.peft import PeftConfigError, resolve_peft_config
from pcclora.peft.config import DEFAULT_PEFT_CONFIG


def test_defaults_are_filled_in():
    config = resolve_peft_config(None)
    assert config == {
        "method": "clora",
        "rank": 8,
        "num_bases": 4,
        "alpha": 8,
        "dropout": 0.0,
        "sade_weight": 0.1,
        "sade_normalized": True,
        "target_modules": ["attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"],
        "trainable_extra": ["cls_token", "cls_pos"],
    }
    assert resolve_peft_config({}) == config


def test_resolved_config_does_not_alias_the_defaults():
    config = resolve_peft_config({"method": "lora"})
    config["target_modules"].append("head")
    assert DEFAULT_PEFT_CONFIG["target_modules"] == ["attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"]


def test_user_values_override_defaults_and_single_target_becomes_a_list():
    config = resolve_peft_config({"method": "lora", "rank": 4, "target_modules": "attn.qkv"})
    assert (config["method"], config["rank"], config["target_modules"]) == ("lora", 4, ["attn.qkv"])


def test_unknown_key_suggests_the_nearest_and_lists_valid_keys():
    with pytest.raises(PeftConfigError) as error:
        resolve_peft_config({"rnak": 4})
    message = str(error.value)
    assert "'rnak'" in message and "did you mean 'rank'" in message and "num_bases" in message
    assert isinstance(error.value, ToolkitError)


def test_unknown_method_lists_the_valid_methods():
    with pytest.raises(UnknownNameError) as error:
        resolve_peft_config({"method": "clor"})
    message = str(error.value)
    assert "did you mean 'clora'" in message
    assert all(method in message for method in pcclora.PEFT_METHODS)


@pytest.mark.parametrize(
    "bad",
    [
        {"rank": 0},
        {"rank": 2.5},
        {"rank": True},
        {"num_bases": -1},
        {"alpha": 0},
        {"dropout": 1.0},
        {"dropout": -0.1},
        {"sade_weight": -1},
        {"sade_normalized": "yes"},
        {"target_modules": []},
        {"target_modules": ["attn.qkv", 3]},
        {"trainable_extra": None},
    ],
)
def test_bad_values_are_rejected_with_the_key_named(bad):
    with pytest.raises(PeftConfigError) as error:
        resolve_peft_config(bad)
    assert f"peft.{next(iter(bad))}" in str(error.value)


def test_linear_and_full_need_no_targets():
    assert resolve_peft_config({"method": "linear", "target_modules": []})["target_modules"] == []


def test_config_must_be_a_mapping():
    with pytest.raises(PeftConfigError, match="mapping"):
        resolve_peft_config(["clora"])


def test_lazy_package_exports_resolve():
    for name in (
        "apply_peft",
        "sade_loss",
        "merge_adapters",
        "unmerge_adapters",
        "adapter_state_dict",
        "load_adapter_state_dict",
        "export_merged_state_dict",
        "count_parameters",
        "resolve_peft_config",
        "PEFT_METHODS",
    ):
        assert getattr(pcclora, name) is getattr(pcclora.peft, name)
