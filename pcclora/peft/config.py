"""The ``peft:`` config block: defaults, validation and the list of methods.

A config is a plain mapping (what YAML gives).  :func:`resolve_peft_config` fills the defaults
and checks every key, so the rest of the package can index the result without further checks.

Keys (all optional):

================  ==================================================  =========================
key               default                                             used by
================  ==================================================  =========================
method            ``"clora"``                                         all
rank              8 (r: rank of every base / LoRA factor)             clora, clora_shared, lora
num_bases         4 (p: shared base pairs per shape family)           clora, clora_shared
alpha             8 (scaling s = alpha / rank)                        clora, clora_shared, lora
dropout           0.0 (on the adapter branch input)                   clora, clora_shared, lora
sade_weight       0.1 (λ in CE + λ·SADE; the engine applies it)       clora, clora_shared
sade_normalized   True (CKA-normalised SADE; False = raw ‖B_hᵀB_k‖²)  clora, clora_shared
target_modules    qkv, proj, fc1, fc2 of every block (name suffixes)  clora, clora_shared, lora
trainable_extra   ``["cls_token", "cls_pos"]`` (parameter names)      all but full
================  ==================================================  =========================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from backbones.errors import ConfigError, UnknownNameError, unknown_name_message

PEFT_METHODS = ("clora", "clora_shared", "lora", "full", "linear")

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
    for key in cfg:
        if key not in DEFAULT_PEFT_CONFIG:
            raise UnknownNameError(unknown_name_message("peft config key", key, DEFAULT_PEFT_CONFIG, cutoff=0.6))
    resolved = {key: _copy_value(value) for key, value in DEFAULT_PEFT_CONFIG.items()}
    resolved.update({key: _copy_value(value) for key, value in cfg.items()})

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
    if method in INJECTING_METHODS and not resolved["target_modules"]:
        raise ConfigError(
            f"peft.target_modules is empty, but method {method!r} adapts linear layers; "
            "name at least one, e.g. ['attn.qkv', 'attn.proj', 'mlp.fc1', 'mlp.fc2']"
        )
    return resolved


def _copy_value(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


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
