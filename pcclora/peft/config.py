"""The ``peft:`` config block: defaults, validation and the list of methods.

A config is a plain mapping (what YAML gives).  :func:`resolve_peft_config` fills the defaults
and checks every key, so the rest of the package can index the result without further checks.

Keys (all optional):

================  ==================================================  ===============================
key               default                                             used by
================  ==================================================  ===============================
method            ``"clora"``                                         all
rank              8 (r: rank of every base / LoRA factor)             clora, clora_shared, lora
num_bases         4 (p: shared base pairs per shape family)           clora, clora_shared
alpha             8 (scaling s = alpha / rank)                        clora, clora_shared, lora
dropout           0.0 (on the adapter branch input)                   clora, clora_shared, lora
sade_weight       0.1 (λ in CE + λ·SADE; the engine applies it)       clora, clora_shared
sade_normalized   True (CKA-normalised SADE; False = raw ‖B_hᵀB_k‖²)  clora, clora_shared
target_modules    qkv, proj, fc1, fc2 of every block (name suffixes)  clora, clora_shared, lora, vera
trainable_extra   ``["cls_token", "cls_pos"]`` (parameter names)      all but full
================  ==================================================  ===============================

Methods with options of their own (``idpt``, ``dapt``, ``ppt``, ``pointgst``, ``pointlora``,
``vera``) read them from a block named after the method, e.g.
``{"method": "idpt", "idpt": {"prompt_layer": 6}}``; its keys and defaults are the method's
:class:`~pcclora.peft.options.Option` list (:mod:`pcclora.peft.methods`). The resolved config
holds the block of its own method only; a block of another method is checked and dropped (so that
``--set peft.method=...`` can switch methods). These methods read only the common keys they name
(``trainable_extra``; ``target_modules`` too for ``vera``): a common key they do not read is an
error unless it keeps its default, so that ``rank`` meant for another method is not silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backbones.errors import ConfigError, UnknownNameError, unknown_name_message

from .methods import COMMON_KEYS, METHODS
from .options import resolve_options

#: Every ``peft.method`` value: the original five, then the point-cloud peers and VeRA.
PEFT_METHODS = tuple(METHODS)
#: Methods that have a ``peft.<method>:`` block of options.
OPTION_METHODS = tuple(name for name, spec in METHODS.items() if spec.options)

#: Methods that inject shared base spaces (and so have a SADE term).
BASE_SPACE_METHODS = ("clora", "clora_shared")
#: Methods that wrap the target linear layers.
INJECTING_METHODS = ("clora", "clora_shared", "lora")

DEFAULT_PEFT_CONFIG: dict[str, Any] = {
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


def resolve_peft_config(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return a complete, validated copy of a ``peft:`` config block.

    Args:
        cfg: the user's mapping (``None`` or ``{}`` gives the defaults).

    Raises:
        UnknownNameError: unknown ``method`` or key (a :class:`ConfigError`; the message
            suggests the nearest valid name and lists them all).
        ConfigError: a value of the wrong type or range.
    """
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, Mapping):
        raise ConfigError(
            f"the peft config must be a mapping of keys to values, got {type(cfg).__name__}; "
            f"valid keys: {', '.join(DEFAULT_PEFT_CONFIG)}"
        )
    valid_keys = [*DEFAULT_PEFT_CONFIG, *OPTION_METHODS]
    for key in cfg:
        if key not in valid_keys:
            raise UnknownNameError(unknown_name_message("peft config key", key, valid_keys, cutoff=0.6))
    resolved = {key: _copy_value(value) for key, value in DEFAULT_PEFT_CONFIG.items()}
    resolved.update({key: _copy_value(value) for key, value in cfg.items() if key in DEFAULT_PEFT_CONFIG})

    method = resolved["method"]
    if method not in PEFT_METHODS:
        raise UnknownNameError(unknown_name_message("peft method", method, PEFT_METHODS, cutoff=0.6))
    _check_positive_int(resolved, "rank")
    _check_positive_int(resolved, "num_bases")
    _check_number(resolved, "alpha", low=0.0, low_inclusive=False)
    _check_number(resolved, "dropout", low=0.0, high=1.0)
    _check_number(resolved, "sade_weight", low=0.0)
    if not isinstance(resolved["sade_normalized"], bool):
        raise ConfigError(f"peft.sade_normalized must be true or false, got {resolved['sade_normalized']!r}")
    resolved["target_modules"] = _string_list(resolved, "target_modules")
    resolved["trainable_extra"] = _string_list(resolved, "trainable_extra")
    spec = METHODS[method]
    if (method in INJECTING_METHODS or spec.wraps_targets) and not resolved["target_modules"]:
        raise ConfigError(
            f"peft.target_modules is empty, but method {method!r} adapts linear layers; "
            "name at least one, e.g. ['attn.qkv', 'attn.proj', 'mlp.fc1', 'mlp.fc2']"
        )
    for name in OPTION_METHODS:  # every block given is checked; only the method's own is kept
        if name in cfg or name == method:
            block = resolve_options(name, METHODS[name].options, cfg.get(name))
            if name == method:
                resolved[name] = block
    if spec.common_keys is not None:
        for key in COMMON_KEYS:
            if key not in spec.common_keys and key in cfg and resolved[key] != DEFAULT_PEFT_CONFIG[key]:
                own = f"; its own options are under peft.{method}: {', '.join(o.name for o in spec.options)}"
                raise ConfigError(
                    f"peft.{key} = {resolved[key]!r} is not used by method {method!r} (it reads "
                    f"{', '.join(f'peft.{k}' for k in spec.common_keys)}){own if spec.options else ''}; "
                    f"remove peft.{key} or leave it at its default {DEFAULT_PEFT_CONFIG[key]!r}"
                )
    return resolved


def peft_schema() -> dict[str, Any]:
    """Every key a ``peft:`` block may hold, with its default: the common keys and every
    method's option block (the schema ``pcclora.config`` checks types against)."""
    schema = {key: _copy_value(value) for key, value in DEFAULT_PEFT_CONFIG.items()}
    for name in OPTION_METHODS:
        schema[name] = {option.name: _copy_value(option.default) for option in METHODS[name].options}
    return schema


def structural_config(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of a resolved config that decide the model's tensors and outputs.

    An adapter checkpoint fits a model only when these agree (``method``, ``rank``,
    ``num_bases``, ``alpha``, ``target_modules``, ``trainable_extra`` and the structural options
    of the method's block).
    """
    keys = ("method", "rank", "num_bases", "alpha", "target_modules", "trainable_extra")
    result = {key: config[key] for key in keys}
    method = config["method"]
    if method in OPTION_METHODS:
        block = config.get(method) or {}
        for option in METHODS[method].options:
            if option.structural:
                result[f"{method}.{option.name}"] = block.get(option.name, option.default)
    return result


def _copy_value(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_copy_value(item) for item in value]
    return dict(value) if isinstance(value, Mapping) else value


def _check_positive_int(cfg: dict[str, Any], key: str) -> None:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"peft.{key} must be a positive integer, got {value!r}")


def _check_number(
    cfg: dict[str, Any],
    key: str,
    *,
    low: float,
    high: float | None = None,
    low_inclusive: bool = True,
) -> None:
    value = cfg[key]
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    too_low = is_number and (value < low if low_inclusive else value <= low)
    too_high = is_number and high is not None and value >= high
    if not is_number or too_low or too_high:
        bracket = "[" if low_inclusive else "("
        upper = f"{high})" if high is not None else "inf)"
        raise ConfigError(f"peft.{key} must be a number in {bracket}{low}, {upper}, got {value!r}")


def _string_list(cfg: dict[str, Any], key: str) -> list[str]:
    value = cfg[key]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ConfigError(f"peft.{key} must be a list of non-empty names, got {cfg[key]!r}")
    return list(value)
