"""Method options: one :class:`Option` per key of a method's ``peft.<method>:`` block.

Each method that has options of its own declares them as a tuple of :class:`Option` next to its
code (e.g. ``pcclora/peft/idpt.py``); :func:`resolve_options` fills the defaults and checks a
block against them, with the toolkit's messages (``peft.idpt.prompt_layer must be ...``, an
unknown key suggests the nearest one).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from backbones.errors import ConfigError, UnknownNameError, unknown_name_message

Check = Callable[[Any, str], Any]


@dataclass(frozen=True)
class Option:
    """One key of a method block.

    Attributes:
        name: the key, e.g. ``"prompt_layer"``.
        default: its value when the block does not set it (what the official code uses for
            Point-MAE on ScanObjectNN PB_T50_RS).
        check: ``check(value, dotted_key)`` returns the value (converted, e.g. an int to a
            float) or raises :class:`ConfigError`.
        doc: one line for the documentation.
        structural: the option changes the model's tensors or outputs, so an adapter checkpoint
            saved with one value does not fit a model built with another (False: a training
            setting, e.g. a loss weight or a dropout rate).
    """

    name: str
    default: Any
    check: Check
    doc: str
    structural: bool = True


def resolve_options(method: str, options: Sequence[Option], block: Any) -> dict[str, Any]:
    """The complete, checked ``peft.<method>`` block: defaults filled, every value checked.

    Raises:
        UnknownNameError: a key that is not an option of the method (the nearest is suggested).
        ConfigError: the block is not a mapping, or a value of the wrong type or range.
    """
    if block is None:
        block = {}
    names = [option.name for option in options]
    if not isinstance(block, Mapping):
        raise ConfigError(
            f"peft.{method} must be a mapping of option names to values, got {type(block).__name__}; "
            f"options of {method!r}: {', '.join(names) or 'none'}"
        )
    for key in block:
        if key not in names:
            raise UnknownNameError(unknown_name_message(f"option of peft.{method}", key, names, cutoff=0.6))
    resolved = {}
    for option in options:
        value = block.get(option.name, option.default)
        value = list(value) if isinstance(value, tuple) else value
        resolved[option.name] = option.check(value, f"peft.{method}.{option.name}")
    return resolved


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def int_at_least(low: int) -> Check:
    """An integer ≥ ``low``."""

    def check(value: Any, key: str) -> int:
        if not _is_int(value) or value < low:
            raise ConfigError(f"{key} must be an integer >= {low}, got {value!r}")
        return value

    return check


def number_in(
    low: float, high: float | None = None, *, low_inclusive: bool = True, high_inclusive: bool = False
) -> Check:
    """A finite number in the interval (ints are accepted and returned as floats)."""

    def check(value: Any, key: str) -> float:
        ok = _is_number(value)
        if ok:
            ok = value >= low if low_inclusive else value > low
        if ok and high is not None:
            ok = value <= high if high_inclusive else value < high
        if not ok:
            left = "[" if low_inclusive else "("
            right = ("]" if high_inclusive else ")") if high is not None else ")"
            upper = "inf" if high is None else f"{high:g}"
            raise ConfigError(f"{key} must be a number in {left}{low:g}, {upper}{right}, got {value!r}")
        return float(value)

    return check


def boolean(value: Any, key: str) -> bool:
    """``true`` or ``false``."""
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return value


def one_of(*choices: str) -> Check:
    """One of the given names."""

    def check(value: Any, key: str) -> str:
        if value not in choices:
            raise UnknownNameError(unknown_name_message(f"value of {key}", value, choices, cutoff=0.5))
        return value

    return check


def names_from(*choices: str, allow_empty: bool = False) -> Check:
    """A list of distinct names among ``choices`` (one name alone counts as a list of one)."""

    def check(value: Any, key: str) -> list[str]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or (not items and not allow_empty):
            raise ConfigError(
                f"{key} must be a {'' if allow_empty else 'non-empty '}list of names among "
                f"{', '.join(choices)}, got {value!r}"
            )
        for item in items:
            if item not in choices:
                raise UnknownNameError(unknown_name_message(f"entry of {key}", item, choices, cutoff=0.5))
        if len(set(items)) != len(items):
            raise ConfigError(f"{key} names an entry twice: {items!r}")
        return list(items)

    return check


def name_list(value: Any, key: str) -> list[str]:
    """A list of non-empty names (module prefixes); one name alone counts as a list of one."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) and item for item in items):
        raise ConfigError(f"{key} must be a list of non-empty names, got {value!r}")
    return list(items)
