"""Named backbones and pre-training networks.

- Backbones (classifiers): ``list_backbones``, ``create_backbone``, ``register_backbone``,
  ``backbone_defaults``; ``create_backbone(name, pretrained=True)`` loads the weights shipped
  inside the package (:mod:`backbones.weights`) for the backbones that have them.
- Pre-training networks: ``list_pretrainers``, ``create_pretrainer``, ``register_pretrainer``,
  ``pretrainer_defaults``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from .act import ACT
from .checkpoint import load_checkpoint, read_checkpoint, stored_model_info
from .errors import ConfigError, UnknownNameError, did_you_mean, unknown_name_message
from .point_bert import PointBERT
from .point_gpt import PointGPTB, PointGPTL, PointGPTS
from .point_mae import PointMAE, PointMAETiny
from .point_mae_pretrain import PointMAEPretrainer, PointMAETinyPretrainer
from .point_mae_seg import PointMAESeg
from .recon import ReCon
from .weights import SHIPPED_WEIGHTS, shipped_weights_path

#: Keyword overrides every built-in backbone accepts besides its ``default_config`` keys.
EXTRA_OPTIONS = ("fused_attention", "tokenizer_backend")
#: Keyword overrides every built-in pre-training network accepts besides its ``default_config`` keys.
PRETRAINER_EXTRA_OPTIONS = ("fused_attention", "tokenizer_backend", "chamfer_backend")

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_PRETRAINERS: dict[str, Callable[..., nn.Module]] = {}


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


def backbone_target_modules(name: str) -> list[str] | None:
    """The default adapter targets a registered backbone declares (``peft_target_modules``), or
    None when it uses the toolkit's default (``attn.qkv``, ``attn.proj``, ``mlp.fc1``, ``mlp.fc2``)
    or the name is not registered."""
    targets = getattr(_REGISTRY.get(name), "peft_target_modules", None)
    return list(targets) if targets else None


def backbone_task(name: str) -> str:
    """The task a registered backbone's head serves: ``"classification"`` (logits per cloud) or
    ``"segmentation"`` (logits per point, ``point_mae_seg``).

    Raises:
        UnknownNameError: ``name`` is not registered.
    """
    backbone_defaults(name)
    return str(getattr(_REGISTRY[name], "task", "classification"))


def classification_backbones() -> list[str]:
    """The registered backbones with a classification head, sorted."""
    return [name for name in list_backbones() if backbone_task(name) == "classification"]


def backbone_trainable_extra(name: str) -> list[str] | None:
    """The default ``peft.trainable_extra`` a registered backbone declares (``peft_trainable_extra``;
    the part-segmentation model has no cls token: ``[]``), or None for the toolkit's default."""
    extra = getattr(_REGISTRY.get(name), "peft_trainable_extra", None)
    return list(extra) if extra is not None else None


def _check_overrides(
    name: str, factory: Callable[..., nn.Module], overrides: Mapping[str, Any], extra: tuple[str, ...] = EXTRA_OPTIONS
) -> None:
    defaults = getattr(factory, "default_config", None)
    if defaults is None:
        return
    aliases = getattr(factory, "option_aliases", {})
    valid = sorted(set(defaults) | set(extra) | set(aliases))
    for key in overrides:
        if key not in valid:
            raise UnknownNameError(
                f"{name!r} has no option {key!r}{did_you_mean(key, valid)}; valid options: {', '.join(valid)}"
            )


def _shipped_checkpoint(kind: str, name: str, checkpoint: Any, pretrained: bool) -> Any:
    """The checkpoint to load: ``checkpoint``, or with ``pretrained`` the shipped file of ``name``."""
    if not pretrained:
        return checkpoint
    if checkpoint is not None:
        raise ConfigError(f"create_{kind}({name!r}): give checkpoint=PATH or pretrained=True, not both")
    if name not in SHIPPED_WEIGHTS:
        shipped = ", ".join(sorted(SHIPPED_WEIGHTS)) or "none"
        raise ConfigError(
            f"{kind} {name!r} has no pre-trained weights shipped with pcclora (those that have: {shipped}); "
            "pass checkpoint=PATH to a pre-trained file instead (e.g. the official Point-MAE pretrain.pth)"
        )
    return shipped_weights_path(name)


def create_backbone(
    name: str,
    *,
    num_classes: int | None = None,
    checkpoint: str | os.PathLike | Mapping[str, Any] | None = None,
    pretrained: bool = False,
    **overrides: Any,
) -> nn.Module:
    """Build a registered backbone, optionally loading a checkpoint.

    Args:
        name: one of :func:`list_backbones` (``"point_mae"``, ``"point_bert"``, ``"act"``,
            ``"recon"``, ``"pointgpt_s"``, ``"pointgpt_b"``, ``"pointgpt_l"``; part segmentation:
            ``"point_mae_seg"``, which also takes ``num_shape_classes``).
        num_classes: outputs of the classification head; may be left out when ``checkpoint`` is
            an export of this toolkit, which stores it.
        checkpoint: a path or an already loaded dict of any layout :func:`load_checkpoint`
            understands (official pre-trained or fine-tuned files, plain state dicts, this
            toolkit's exports). Its :class:`LoadReport` is logged and kept as
            ``model.checkpoint_report`` (``None`` without a checkpoint). An export of this
            toolkit also stores the model's sizes and class names: sizes not given in
            ``overrides`` are taken from it, and its class names are kept as
            ``model.class_names``.
        pretrained: load the pre-trained weights shipped inside the package (only backbones
            listed in ``backbones.weights.SHIPPED_WEIGHTS``, e.g. ``"point_mae_tiny"``); their
            SHA-256 is checked first.
        **overrides: official config names (``trans_dim``, ``depth``, ``num_heads``,
            ``num_group``, ``group_size``, ``encoder_dims``, ``drop_path_rate``, ``mlp_ratio``;
            PointGPT: ``decoder_depth`` and no ``mlp_ratio``; ACT also takes ``embed_dim`` for
            ``trans_dim``) and ``fused_attention``, ``tokenizer_backend``.

    Returns:
        The model; ``forward(points (B, N, 3)) -> logits (B, num_classes)``.

    Raises:
        UnknownNameError: unknown backbone or option name.
        ConfigError: no ``num_classes`` and none stored in the checkpoint; ``pretrained`` for a
            backbone without shipped weights, or together with ``checkpoint``.
        CheckpointError: from :func:`load_checkpoint`; a shipped file that is missing or damaged.
    """
    backbone_defaults(name)  # an unknown name fails here, with a suggestion
    factory = _REGISTRY[name]
    checkpoint = _shipped_checkpoint("backbone", name, checkpoint, pretrained)
    source_name = None
    info = None
    if checkpoint is not None and not isinstance(checkpoint, Mapping):
        source_name = str(checkpoint)
        checkpoint = read_checkpoint(checkpoint)
    if checkpoint is not None:
        info = stored_model_info(checkpoint)
    if info is not None and info.get("backbone") == name:
        overrides = {**info.get("sizes", {}), **overrides}
        num_classes = info.get("num_classes") if num_classes is None else num_classes
    if num_classes is None:
        raise ConfigError(f"create_backbone({name!r}) needs num_classes (the checkpoint does not store it)")
    _check_overrides(name, factory, overrides)
    model = factory(num_classes, **overrides)
    model.checkpoint_report = None
    model.class_names = list(info["class_names"]) if info and info.get("class_names") else None
    if checkpoint is not None:
        model.checkpoint_report = load_checkpoint(model, checkpoint, source_name=source_name)
    return model


register_backbone("point_mae")(PointMAE)
register_backbone("point_mae_seg")(PointMAESeg)
register_backbone("point_mae_tiny")(PointMAETiny)
register_backbone("point_bert")(PointBERT)
register_backbone("act")(ACT)
register_backbone("recon")(ReCon)
register_backbone("pointgpt_s")(PointGPTS)
register_backbone("pointgpt_b")(PointGPTB)
register_backbone("pointgpt_l")(PointGPTL)


# --------------------------------------------------------------------------------------------
# pre-training networks
# --------------------------------------------------------------------------------------------


def register_pretrainer(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator that registers a pre-training network class or factory under ``name``.

    The factory is called as ``factory(**overrides)``; its ``default_config`` keys and
    :data:`PRETRAINER_EXTRA_OPTIONS` are the valid overrides.
    """

    def add(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _PRETRAINERS:
            raise ValueError(f"a pre-training network named {name!r} is already registered")
        _PRETRAINERS[name] = factory
        return factory

    return add


def list_pretrainers() -> list[str]:
    """The registered pre-training network names, sorted."""
    return sorted(_PRETRAINERS)


def pretrainer_defaults(name: str) -> dict[str, Any]:
    """The default sizes and objective of a registered pre-training network (official config names).

    Raises:
        UnknownNameError: ``name`` is not registered (the nearest name is suggested).
    """
    factory = _PRETRAINERS.get(name)
    if factory is None:
        raise UnknownNameError(unknown_name_message("pre-training network", name, list_pretrainers()))
    return dict(getattr(factory, "default_config", {}))


def create_pretrainer(
    name: str,
    *,
    checkpoint: str | os.PathLike | Mapping[str, Any] | None = None,
    pretrained: bool = False,
    **overrides: Any,
) -> nn.Module:
    """Build a registered pre-training network, optionally loading a checkpoint.

    Args:
        name: one of :func:`list_pretrainers` (``"point_mae"``: the official Point-MAE
            pre-training network and sizes; ``"point_mae_tiny"``: the small one whose
            pre-trained weights ship with pcclora).
        checkpoint: a pre-training file of the whole network: the official Point-MAE
            ``pretrain.pth`` or a file ``tools/pretrain.py`` wrote (``checkpoints/last.pth``,
            ``--export``); it loads strictly (layout ``point_mae_pretrainer``), so pre-training
            continues from it. A file of this toolkit also stores the network's sizes: sizes
            not given in ``overrides`` are taken from it.
        pretrained: load the shipped weights (``"point_mae_tiny"``).
        **overrides: official config names: ``trans_dim``, ``depth``, ``num_heads``,
            ``num_group``, ``group_size``, ``encoder_dims``, ``drop_path_rate``, ``mlp_ratio``,
            ``decoder_depth``, ``decoder_num_heads``, ``mask_ratio``, ``mask_type``
            (``rand``/``block``), ``loss`` (``cdl2``/``cdl1``); and ``fused_attention``,
            ``tokenizer_backend``, ``chamfer_backend``.

    Returns:
        The network; ``forward(points (B, N, 3), mask=None) -> loss``; its report as
        ``model.checkpoint_report`` (``None`` without a checkpoint).

    Raises:
        UnknownNameError: unknown name or option.
        ModelConfigError: sizes that cannot be built.
        CheckpointError: an unreadable file, or one that does not match the network exactly.
    """
    pretrainer_defaults(name)  # an unknown name fails here, with a suggestion
    factory = _PRETRAINERS[name]
    checkpoint = _shipped_checkpoint("pretrainer", name, checkpoint, pretrained)
    source_name = None
    if checkpoint is not None and not isinstance(checkpoint, Mapping):
        source_name = str(checkpoint)
        checkpoint = read_checkpoint(checkpoint)
    info = stored_model_info(checkpoint) if checkpoint is not None else None
    if info is not None and isinstance(info.get("pretrainer_sizes"), Mapping):
        known = getattr(factory, "default_config", {})
        overrides = {**{k: v for k, v in info["pretrainer_sizes"].items() if k in known}, **overrides}
    _check_overrides(name, factory, overrides, PRETRAINER_EXTRA_OPTIONS)
    model = factory(**overrides)
    model.checkpoint_report = None
    if checkpoint is not None:
        model.checkpoint_report = load_checkpoint(model, checkpoint, source_name=source_name)
    return model


register_pretrainer("point_mae")(PointMAEPretrainer)
register_pretrainer("point_mae_tiny")(PointMAETinyPretrainer)
