"""The per-epoch cosine schedule with warm-up (timm CosineLRScheduler semantics) and the optimizer groups."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pcclora.config import load_config
from pcclora.engine.optim import build_optimizer, param_groups
from pcclora.engine.schedule import build_schedule, describe_schedule


def reference_lr(
    t: int,
    lr: float = 5e-4,
    lr_min: float = 1e-6,
    warmup_t: int = 10,
    warmup_lr_init: float = 1e-6,
    t_initial: int = 300,
) -> float:
    """timm CosineLRScheduler._get_lr for the reference's arguments, written out by hand."""
    if t < warmup_t:
        return warmup_lr_init + t * (lr - warmup_lr_init) / warmup_t
    if t >= t_initial:  # cycle_limit 1: past the first cycle the lr stays at lr_min
        return lr_min
    return lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * t / t_initial))


def test_lr_of_every_epoch_of_the_reference_recipe():
    config = load_config("scanobjectnn_hardest")
    schedule = build_schedule(config["scheduler"], config["optimizer"]["lr"])
    for t in range(0, 301):
        assert schedule.lr_at(t) == pytest.approx(reference_lr(t), rel=1e-12, abs=1e-15), t
    # The reference calls scheduler.step(epoch) after each epoch: epoch e trains with lr_at(e - 1),
    # epoch 0 with warmup_lr_init.
    assert schedule.lr_for_epoch(0) == pytest.approx(1e-6)
    for epoch in range(1, 301):
        assert schedule.lr_for_epoch(epoch) == pytest.approx(reference_lr(epoch - 1), rel=1e-12, abs=1e-15), epoch
    # landmarks: the warm-up is not a prefix (cosine at t = 10 is already below the peak), and
    # the last pass (epoch 300) trains with lr_at(299), just above lr_min
    assert schedule.lr_at(10) < 5e-4
    assert schedule.lr_at(10) == pytest.approx(1e-6 + 0.5 * (5e-4 - 1e-6) * (1 + math.cos(math.pi / 30)))
    assert schedule.lr_for_epoch(300) == pytest.approx(reference_lr(299)) and reference_lr(299) > 1e-6
    assert schedule.lr_at(300) == 1e-6


def test_lr_of_every_epoch_of_the_fewshot_recipe_and_without_warmup():
    config = load_config("modelnet40_fewshot", ["scheduler.warmup_epochs=0"])
    schedule = build_schedule(config["scheduler"], 1e-3)
    for t in range(0, 151):
        assert schedule.lr_at(t) == pytest.approx(reference_lr(t, lr=1e-3, warmup_t=0, t_initial=150), rel=1e-12)
    assert schedule.lr_for_epoch(0) == pytest.approx(1e-3)  # without warm-up timm starts at the base lr


def test_apply_sets_every_group():
    model = nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(param_groups(model, 0.05), lr=1.0)
    schedule = build_schedule(load_config("modelnet40")["scheduler"], 5e-4)
    lr = schedule.apply(optimizer, 11)
    assert lr == pytest.approx(reference_lr(10))
    assert [group["lr"] for group in optimizer.param_groups] == [lr, lr]


class _Tokened(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
        self.cls_pos = nn.Parameter(torch.zeros(1, 1, 4))
        self.linear = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)


def test_param_groups_follow_the_reference_rule_and_skip_frozen_parameters():
    model = _Tokened()
    no_decay, decay = param_groups(model, 0.05)
    ids = lambda params: {id(p) for p in params}  # noqa: E731
    assert ids(no_decay["params"]) == ids([model.cls_token, model.linear.bias, model.norm.weight, model.norm.bias])
    assert ids(decay["params"]) == ids([model.cls_pos, model.linear.weight])  # 3-D cls_pos has no 'token'
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.05
    optimizer = build_optimizer(model, {"name": "adamw", "lr": 5e-4, "weight_decay": 0.05})
    assert isinstance(optimizer, torch.optim.AdamW)
    assert sum(len(group["params"]) for group in optimizer.param_groups) == 6


def test_a_shortened_run_follows_its_length_and_trains_at_the_configured_lr():
    config = load_config("scanobjectnn_hardest", ["training.max_epoch=1"])
    assert (config["scheduler"]["epochs"], config["scheduler"]["warmup_epochs"]) == (1, 0)
    schedule = build_schedule(config["scheduler"], config["optimizer"]["lr"])
    assert [schedule.lr_for_epoch(epoch) for epoch in (0, 1)] == [5e-4, 5e-4]
    assert len(describe_schedule(schedule, 1)) == 1  # no warning


def test_the_official_length_keeps_the_official_schedule_and_a_set_value_stays():
    official = load_config("scanobjectnn_hardest")["scheduler"]
    assert (official["epochs"], official["warmup_epochs"]) == (300, 10)
    assert load_config("scanobjectnn_hardest", ["training.max_epoch=50"])["scheduler"]["warmup_epochs"] == 5
    kept = load_config("scanobjectnn_hardest", ["training.max_epoch=1", "scheduler.epochs=300"])["scheduler"]
    assert kept["epochs"] == 300
    lines = describe_schedule(build_schedule(kept, 5e-4), 1)
    assert len(lines) == 2 and lines[1].startswith("NOTE") and "leave both null" in lines[1]
