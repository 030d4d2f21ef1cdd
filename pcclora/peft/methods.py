"""The registry of PEFT methods: what each ``peft.method`` value is and what it needs.

A method is one :class:`MethodSpec`: its options (the ``peft.<method>:`` block), which of the
``peft:`` block's common keys it reads, how it changes the model (``check`` first, so that a
refused model stays untouched, then ``install``), whether it wraps the ``peft.target_modules``
Linears, how much of it merges, and how frozen sub-trees behave under ``model.train()``.

The original five methods (``clora``, ``clora_shared``, ``lora``, ``full``, ``linear``) are
built by :func:`pcclora.peft.inject.apply_peft` itself; the peers of the point-cloud field each
live in their own module (:mod:`.idpt`, :mod:`.dapt`, :mod:`.ppt`, :mod:`.pointgst`,
:mod:`.pointlora`, :mod:`.vera`). A new method is one module plus one entry in :data:`METHODS`;
the tests parametrised over :data:`METHODS` then cover it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backbones.errors import UnknownNameError, unknown_name_message

from . import dapt, idpt, pointgst, pointlora, ppt, vera
from .options import Option

#: The ``peft:`` block's keys besides ``method`` (the CLoRA/LoRA keys, kept flat as before).
COMMON_KEYS = (
    "rank",
    "num_bases",
    "alpha",
    "dropout",
    "sade_weight",
    "sade_normalized",
    "target_modules",
    "trainable_extra",
)


@dataclass(frozen=True)
class MethodSpec:
    """One PEFT method.

    Attributes:
        name: the ``peft.method`` value.
        summary: one line for listings.
        options: the keys of its ``peft.<name>:`` block (empty: it has none).
        common_keys: the ``peft:`` keys it reads; a non-default value of any other common key is
            an error (``None``: it reads or tolerates all of them, as the original methods).
        check: ``check(model, config)`` raises :class:`ConfigError` for a model or options the
            method cannot use, before anything changes.
        install: ``install(model, config)`` (or ``install(model, config, targets)`` when
            ``wraps_targets``) adds the method's modules to the frozen model.
        wraps_targets: it wraps the Linears of ``peft.target_modules``.
        merge: ``"full"`` (after merging, inference costs the backbone), ``"partial"`` (some
            parts merge, others keep running), ``"none"`` (nothing to merge) or ``"n/a"``
            (nothing added).
        frozen_blocks_train_mode: frozen sub-trees without BatchNorm follow ``model.train()``
            (stochastic depth active in frozen blocks, as the official runner trains with the
            whole model in train mode); otherwise every frozen sub-tree runs in eval mode.
        paper: reference and official code.
    """

    name: str
    summary: str
    options: tuple[Option, ...] = ()
    common_keys: tuple[str, ...] | None = None
    check: Callable[..., None] | None = None
    install: Callable[..., None] | None = None
    wraps_targets: bool = False
    merge: str = "none"
    frozen_blocks_train_mode: bool = False
    paper: str = ""


_ALWAYS = ("trainable_extra",)

METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec(
            "clora",
            "CLoRA: shared bases per shape family, per-layer coefficients, SADE",
            merge="full",
            paper="Liu, Zhu, Huang, arXiv 2512.24603",
        ),
        MethodSpec(
            "clora_shared",
            "CLoRA#: the coefficients shared across layers too",
            merge="full",
            paper="Liu, Zhu, Huang, arXiv 2512.24603 (ablation)",
        ),
        MethodSpec("lora", "LoRA on the target Linears", merge="full", paper="Hu et al., ICLR 2022"),
        MethodSpec("full", "full fine-tuning", merge="n/a"),
        MethodSpec("linear", "linear probe: head (and trainable_extra) only", merge="n/a"),
        MethodSpec(
            "idpt",
            "IDPT: a DGCNN over the patch tokens makes one prompt token before a chosen block",
            options=idpt.OPTIONS,
            common_keys=_ALWAYS,
            check=idpt.check,
            install=idpt.install,
            merge="none",
            frozen_blocks_train_mode=True,
            paper="Zha et al., ICCV 2023; github.com/zyh16143998882/ICCV23-IDPT",
        ),
        MethodSpec(
            "dapt",
            "DAPT: dynamic adapters beside the MLPs, internal prompts, scale-and-shift factors",
            options=dapt.OPTIONS,
            common_keys=_ALWAYS,
            check=dapt.check,
            install=dapt.install,
            merge="partial",
            paper="Zhou et al., CVPR 2024; github.com/LMD0311/DAPT",
        ),
        MethodSpec(
            "ppt",
            "PPT: extra grouped tokens, shared prompt MLPs, trained first conv and pos_embed",
            options=ppt.OPTIONS,
            common_keys=_ALWAYS,
            check=ppt.check,
            install=ppt.install,
            merge="none",
            frozen_blocks_train_mode=True,
            paper="Zhang et al., arXiv 2408.11567; github.com/zsc000722/PPT",
        ),
        MethodSpec(
            "pointgst",
            "PointGST: spectral adapters on global and local graph Fourier bases of the centres",
            options=pointgst.OPTIONS,
            common_keys=_ALWAYS,
            check=pointgst.check,
            install=pointgst.install,
            merge="none",
            frozen_blocks_train_mode=True,
            paper="Liang et al., arXiv 2410.08114; github.com/jerryfeng2003/PointGST",
        ),
        MethodSpec(
            "pointlora",
            "PointLoRA: LoRA on qkv/proj with shared branches, multi-scale token selection",
            options=pointlora.OPTIONS,
            common_keys=_ALWAYS,
            check=pointlora.check,
            install=pointlora.install,
            merge="partial",
            paper="Wang et al., CVPR 2025; github.com/songw-zju/PointLoRA",
        ),
        MethodSpec(
            "vera",
            "VeRA: frozen shared random bases, trained per-layer scaling vectors",
            options=vera.OPTIONS,
            common_keys=("target_modules", "trainable_extra"),
            check=vera.check,
            install=vera.install,
            wraps_targets=True,
            merge="full",
            paper="Kopiczko et al., ICLR 2024; github.com/huggingface/peft (tuners/vera)",
        ),
    )
}


def method_spec(name: str) -> MethodSpec:
    """The :class:`MethodSpec` of ``name``.

    Raises:
        UnknownNameError: not a method (the nearest is suggested).
    """
    spec = METHODS.get(name)
    if spec is None:
        raise UnknownNameError(unknown_name_message("peft method", name, METHODS, cutoff=0.6))
    return spec


def method_options(name: str) -> tuple[Option, ...]:
    """The options of method ``name`` (empty for the original five)."""
    return method_spec(name).options


def option_defaults(name: str) -> dict[str, Any]:
    """``{option: default}`` of method ``name``."""
    return {option.name: option.default for option in method_options(name)}
