"""The packaged configs of ACT, ReCon and PointGPT (one folder per backbone), ReCon's 10× head
learning rate, and short runs of the engine on the new backbones."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pcclora.config import backbone_configs, check_run_numbers, load_config, resolve_config_path
from pcclora.engine import finetune
from pcclora.engine.optim import build_optimizer, param_groups
from pcclora.engine.schedule import build_schedule

#: config: (backbone, npoints, num_group, lr, max_epoch, warm-up, batch, rotation only, cls lr scale, lr floor)
RECIPES = {
    "act/scanobjectnn_hardest": ("act", 2048, 128, 5e-4, 300, 10, 32, True, 1.0, 1e-7),
    "act/modelnet40": ("act", 1024, 64, 5e-4, 300, 10, 32, True, 1.0, 1e-7),
    "recon/scanobjectnn_hardest": ("recon", 2048, 128, 2e-5, 300, 10, 32, True, 10.0, 1e-6),
    "recon/modelnet40": ("recon", 1024, 64, 1e-5, 300, 10, 32, False, 10.0, 1e-6),
    "pointgpt_s/scanobjectnn_hardest": ("pointgpt_s", 2048, 128, 1e-4, 300, 30, 64, False, 1.0, 1e-6),
    "pointgpt_s/modelnet40": ("pointgpt_s", 1024, 64, 1e-4, 300, 10, 128, False, 1.0, 1e-6),
    "pointgpt_b/scanobjectnn_hardest": ("pointgpt_b", 2048, 128, 1e-4, 30, 10, 64, False, 1.0, 1e-6),
    "pointgpt_b/modelnet40": ("pointgpt_b", 1024, 64, 1e-4, 50, 10, 128, False, 1.0, 1e-6),
    "pointgpt_l/scanobjectnn_hardest": ("pointgpt_l", 2048, 128, 1e-4, 50, 10, 64, False, 1.0, 1e-6),
    "pointgpt_l/modelnet40": ("pointgpt_l", 1024, 64, 1e-4, 50, 10, 128, False, 1.0, 1e-6),
}


def test_every_backbone_folder_config_is_listed_and_has_the_official_recipe():
    assert set(backbone_configs()) == set(RECIPES)
    for name, (backbone, npoints, groups, lr, max_epoch, warmup, batch, rotation, cls_scale, floor) in RECIPES.items():
        config = load_config(name)
        check_run_numbers(config)
        assert config["name"] == name.replace("/", "_")
        assert config["backbone"]["name"] == backbone and config["backbone"]["group_size"] == 32
        assert config["backbone"]["num_group"] == groups and config["dataset"]["npoints"] == npoints
        assert config["dataset"]["name"] == ("scanobjectnn" if "scanobjectnn" in name else "modelnet40")
        assert config["optimizer"] == {"name": "adamw", "lr": pytest.approx(lr), "weight_decay": 0.05}
        assert config["training"]["max_epoch"] == max_epoch == config["scheduler"]["epochs"]
        assert config["scheduler"]["warmup_epochs"] == warmup and config["scheduler"]["lr_min"] == floor
        assert config["training"]["batch_size"] == batch and config["training"]["grad_clip"] == 10.0
        assert config["training"]["label_smoothing"] == 0.0
        assert config["dataset"]["augment"]["rotate_y"] is rotation
        assert config["training"]["cls_lr_scale"] == cls_scale
        assert resolve_config_path(name) == resolve_config_path(f"{name}.yaml")


def test_backbone_folder_configs_are_suggested_when_a_name_is_wrong():
    with pytest.raises(Exception, match="did you mean 'recon/scanobjectnn_hardest'") as error:
        load_config("recon/scanobjectnn_hardst")
    assert "pointgpt_l/modelnet40" in str(error.value)


def test_pointgpt_configs_adapt_the_extractor_unless_targets_are_set():
    config = load_config("pointgpt_l/scanobjectnn_hardest")
    assert config["peft"]["target_modules"] == [
        "blocks.layers.*.attn.out_proj",
        "blocks.layers.*.mlp.0",
        "blocks.layers.*.mlp.2",
    ]
    mine = load_config("pointgpt_l/scanobjectnn_hardest", ["peft.target_modules=[blocks.layers.*.mlp.0]"])
    assert mine["peft"]["target_modules"] == ["blocks.layers.*.mlp.0"]
    switched = load_config("scanobjectnn_hardest", ["backbone.name=pointgpt_s", "backbone.encoder_dims=384"])
    assert switched["peft"]["target_modules"][0] == "blocks.layers.*.attn.out_proj"


# --------------------------------------------------------------------------------------------
# ReCon's 10x learning rate of the cls parameters
# --------------------------------------------------------------------------------------------


class _Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
        self.linear = nn.Linear(4, 4)
        self.cls_head_finetune = nn.Sequential(nn.Linear(4, 2), nn.BatchNorm1d(2))


def test_cls_parameters_get_their_own_group_with_scaled_lr_and_full_weight_decay():
    model = _Model()
    scaled, no_decay, decay = param_groups(model, 0.05, cls_lr_scale=10.0)
    ids = lambda params: {id(p) for p in params}  # noqa: E731
    cls = [model.cls_token, *model.cls_head_finetune.parameters()]
    assert ids(scaled["params"]) == ids(cls) and scaled["weight_decay"] == 0.05 and scaled["lr_scale"] == 10.0
    assert ids(no_decay["params"]) == {id(model.linear.bias)} and ids(decay["params"]) == {id(model.linear.weight)}
    optimizer = build_optimizer(model, {"name": "adamw", "lr": 2e-5, "weight_decay": 0.05}, cls_lr_scale=10.0)
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([2e-4, 2e-5, 2e-5])
    assert len(param_groups(model, 0.05)) == 2  # scale 1: the two reference groups


def test_scaled_group_follows_timm_from_its_own_base_lr():
    """timm's CosineLRScheduler schedules each group from its initial lr, same floor and warm-up start."""
    config = load_config("recon/scanobjectnn_hardest")
    schedule = build_schedule(config["scheduler"], config["optimizer"]["lr"])
    optimizer = build_optimizer(_Model(), config["optimizer"], cls_lr_scale=10.0)

    def timm(t: int, base: float) -> float:
        if t < 10:
            return 1e-6 + t * (base - 1e-6) / 10
        return 1e-6 + 0.5 * (base - 1e-6) * (1 + math.cos(math.pi * t / 300))

    for epoch in (0, 3, 11, 150, 300):
        lr = schedule.apply(optimizer, epoch)
        t = max(epoch - 1, 0)
        assert lr == pytest.approx(timm(t, 2e-5), rel=1e-12)
        expected = [timm(t, 2e-4), timm(t, 2e-5), timm(t, 2e-5)]
        assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------------------------
# short runs of the new backbones' packaged configs
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scan_root(tmp_path_factory, write_scanobjectnn):
    return write_scanobjectnn(tmp_path_factory.mktemp("scan") / "ScanObjectNN")


@pytest.mark.parametrize("name", ["recon/scanobjectnn_hardest", "pointgpt_s/scanobjectnn_hardest"])
def test_a_packaged_zoo_config_runs_one_epoch(name, scan_root, tmp_path, tiny_overrides, tiny_sizes):
    backbone = RECIPES[name][0]
    sizes = [f"backbone.{key}={value}" for key, value in tiny_sizes(backbone).items()]
    overrides = [*tiny_overrides(scan_root), *sizes, "scheduler.warmup_epochs=0", "scheduler.epochs=1"]
    summary = finetune(load_config(name, overrides), output=tmp_path / "run")
    assert summary["status"] == "finished" and summary["epochs_run"] == 1
    assert 0.0 <= summary["last_oa"] <= 100.0
