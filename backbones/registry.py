"""Named backbones: ``list_backbones``, ``create_backbone``, ``register_backbone``."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from .checkpoint import load_checkpoint
from .errors import UnknownNameError, did_you_mean, unknown_name_message
from .point_bert import PointBERT
from .point_mae import PointMAE

#: Keyword overrides every built-in backbone accepts besides its ``default_config`` keys.
EXTRA_OPTIONS = ("fused_attention", "tokenizer_backend")

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a model class or factory under ``name``.

    The factory is called as ``factory(num_classes, **overrides)``. A class with a
    ``default_config`` dict has its overrides checked against those keys and ``EXTRA_OPTIONS``.
    """

    def add(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"a backbone named {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return add


def list_backbones() -> list[str]:
    """The registered backbone names, sorted."""
    return sorted(_REGISTRY)


def backbone_defaults(name: str) -> dict[str, Any]:
    """The default sizes of a registered backbone under their official config names.

    Raises:
        UnknownNameError: ``name`` is not registered (the nearest name is suggested).
    """
    factory = _REGISTRY.get(name)
    if factory is None:
        raise UnknownNameError(unknown_name_message("backbone", name, list_backbones()))
    return dict(getattr(factory, "default_config", {}))


def _check_overrides(name: str, factory: Callable[..., nn.Module], overrides: Mapping[str, Any]) -> None:
    defaults = getattr(factory, "default_config", None)
    if defaults is None:
        return
    valid = sorted(set(defaults) | set(EXTRA_OPTIONS))
    for key in overrides:
        if key not in valid:
            raise UnknownNameError(
                f"{name!r} has no option {key!r}{did_you_mean(key, valid)}; valid options: {', '.join(valid)}"
            )


def create_backbone(
    name: str,
    *,
    num_classes: int,
    checkpoint: str | os.PathLike | Mapping[str, Any] | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build a registered backbone, optionally loading a checkpoint.

    Args:
        name: one of :func:`list_backbones` (``"point_mae"``, ``"point_bert"``).
        num_classes: outputs of the classification head.
        checkpoint: a path or an already loaded dict of any layout :func:`load_checkpoint`
            understands (official pre-trained or fine-tuned files, plain state dicts, this
            toolkit's exports). Its :class:`LoadReport` is logged and kept as
            ``model.checkpoint_report`` (``None`` without a checkpoint).
        **overrides: official config names (``trans_dim``, ``depth``, ``num_heads``,
            ``num_group``, ``group_size``, ``encoder_dims``, ``drop_path_rate``, ``mlp_ratio``)
            and ``fused_attention``, ``tokenizer_backend``.

    Returns:
        The model; ``forward(points (B, N, 3)) -> logits (B, num_classes)``.
    """
    backbone_defaults(name)  # an unknown name fails here, with a suggestion
    factory = _REGISTRY[name]
    _check_overrides(name, factory, overrides)
    model = factory(num_classes, **overrides)
    model.checkpoint_report = None
    if checkpoint is not None:
        model.checkpoint_report = load_checkpoint(model, checkpoint)
    return model


register_backbone("point_mae")(PointMAE)
register_backbone("point_bert")(PointBERT)
