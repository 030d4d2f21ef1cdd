"""Build the model of a run: backbone (+ its checkpoint) and the peft method, reproducibly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from backbones import create_backbone, load_checkpoint
from backbones.errors import CheckpointError
from pcclora.config import size_overrides
from pcclora.engine.seeding import MODEL_INIT_STREAM, derive_seed
from pcclora.peft import apply_peft

CHECKPOINT_SOURCES = (
    "Point-MAE pretrain.pth: https://github.com/Pang-Yatian/Point-MAE (README, 'Pretrained Models'); "
    "Point-BERT.pth: https://github.com/Julie-tang00/Point-BERT (README)"
)


def backbone_checkpoint_path(path: str | None) -> Path | None:
    """The configured backbone checkpoint, checked to exist.

    Raises:
        CheckpointError: the file does not exist (names it and where the official files come from).
    """
    if path is None:
        return None
    resolved = Path(str(path)).expanduser()  # str(): YAML reads a bare number (--set ...=123) as an int
    if not resolved.is_file():
        raise CheckpointError(
            f"backbone checkpoint {resolved} not found; download the pre-trained weights ({CHECKPOINT_SOURCES}) "
            "and set backbone.checkpoint to the file (finetune.py: --ckpt PATH; test.py and predict.py: "
            "--set backbone.checkpoint=PATH), or leave it null for random initial weights"
        )
    return resolved


def build_model(config: dict[str, Any], num_classes: int, log: Callable[[str], None] = print) -> nn.Module:
    """The backbone of ``config['backbone']`` with ``config['peft']`` applied, on the CPU.

    The initial weights come from a generator seeded by ``training.seed``, so the same config
    always yields the same model (needed to rebuild a run without a backbone checkpoint).
    """
    backbone_cfg = config["backbone"]
    overrides = size_overrides(backbone_cfg)
    classes = backbone_cfg["num_classes"] or num_classes
    checkpoint = backbone_checkpoint_path(backbone_cfg["checkpoint"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(config["training"]["seed"], MODEL_INIT_STREAM))
        model = create_backbone(
            backbone_cfg["name"],
            num_classes=classes,
            checkpoint=checkpoint,
            pretrained=bool(backbone_cfg["pretrained"]),
            **overrides,
        )
        report = getattr(model, "checkpoint_report", None)
        if report is None:
            log(
                "backbone: NO pre-trained checkpoint given -- the backbone starts from RANDOM weights "
                "(pass --ckpt pretrain.pth for real fine-tuning)"
            )
        elif report is not None:
            log(f"backbone: {report.summary()}")
        model = apply_peft(model, config["peft"])
    return model


def starts_from_random_weights(config: dict[str, Any]) -> bool:
    """Whether a run's backbone starts from random weights (no checkpoint, no shipped weights)."""
    return not config["backbone"]["checkpoint"] and not config["backbone"]["pretrained"]


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def describe_trainable(model: nn.Module) -> str:
    """Top-level module names that hold trainable parameters, with their counts."""
    counts: dict[str, int] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            top = name.split(".")[0]
            counts[top] = counts.get(top, 0) + param.numel()
    return ", ".join(f"{name} {count:,}" for name, count in counts.items()) or "nothing"


def load_official_model(path: str | Path, config: dict[str, Any], num_classes: int) -> nn.Module:
    """A plain backbone (no peft) with an official fine-tuned checkpoint loaded strictly."""
    backbone_cfg = config["backbone"]
    classes = backbone_cfg["num_classes"] or num_classes
    model = create_backbone(backbone_cfg["name"], num_classes=classes, **size_overrides(backbone_cfg))
    load_checkpoint(model, str(path), strict=True)
    return model
