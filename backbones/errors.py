"""The toolkit's errors: one base class, the shared kinds, one "did you mean" helper.

Every layer of the toolkit (``backbones``, ``datasets``, ``pcclora``, the tools) raises these for
an expected user mistake — a missing file, a wrong shape, an unknown name, a value out of range.
The command-line tools catch :class:`ToolkitError` and print its message without a traceback;
anything else is a bug and keeps its traceback. This module sits at the bottom of the import
graph (it imports nothing of the toolkit), so every package can use it.

Message style, for every error of the toolkit:

- start lower-case (unless the first word is a name), no final full stop;
- say what was found, then what was expected, then what to do, separated by ``"; "``;
- quote names with ``repr`` (``'point_mae'``); name the file or the config key involved;
- an unknown name reads ``unknown <kind> 'x' (did you mean 'y'?); choose one of a, b, c``
  (:func:`unknown_name_message`).

Kinds (catch the base class to catch them all):

=========================  =======================================================================
:class:`ConfigError`       a config file, key, value, command-line option or model size that cannot be used
:class:`UnknownNameError`  a backbone, method, dataset, backend or option name that is not registered
:class:`DataError`         a data file or folder that is missing, unreadable or holds wrong data
:class:`CheckpointError`   a checkpoint that is unreadable, of an unknown layout or does not fit
:class:`InputShapeError`   a tensor handed to a model or tokenizer of the wrong shape or dtype
:class:`StateError`        an object in the wrong state for the call (adapted twice, merged, ...)
:class:`NonFiniteError`    a run produced NaN/Inf (loss, weights or logits)
=========================  =======================================================================

Older names stay importable from their packages: ``datasets.DatasetError`` (= :class:`DataError`),
``pcclora.peft.PeftConfigError`` (= :class:`ConfigError`), ``pcclora.peft.PeftStateError``
(= :class:`StateError`), ``backbones.ModelConfigError`` (a :class:`ConfigError`),
``pcclora.engine.trainer.NonFiniteLossError`` (= :class:`NonFiniteError`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DatasetError",
    "InputShapeError",
    "ModelConfigError",
    "NonFiniteError",
    "StateError",
    "ToolkitError",
    "UnknownNameError",
    "closest_name",
    "did_you_mean",
    "unknown_name_message",
]


class ToolkitError(Exception):
    """Base class of the errors whose message is meant for the user as it stands."""


class ConfigError(ToolkitError, ValueError):
    """A config file, key or value, a command-line option or a model size that cannot be used."""


class ModelConfigError(ConfigError):
    """A model size or option that cannot be built (e.g. a width not divisible by the heads)."""


class UnknownNameError(ConfigError, KeyError):
    """A backbone, method, dataset, backend or option name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(ToolkitError):
    """A data file or folder is missing, unreadable, or holds data of the wrong shape or range.

    The message names the file, says what was expected and where the data comes from.
    """


#: The name the datasets package has always used.
DatasetError = DataError


class CheckpointError(ToolkitError):
    """A checkpoint file is unreadable, of an unknown layout, or does not fit the model."""


class InputShapeError(ToolkitError, ValueError):
    """A tensor handed to a model or tokenizer has the wrong shape, dtype or size."""


class StateError(ToolkitError):
    """An object is in the wrong state for the call (a model not adapted, adapted twice, merged)."""


class NonFiniteError(ToolkitError):
    """A run produced NaN or Inf: its loss, its trained tensors or its evaluation logits."""


def closest_name(word: str, choices: Iterable[str], cutoff: float = 0.5) -> str | None:
    """The choice most like ``word``, or None when none is close enough."""
    match = difflib.get_close_matches(str(word), [str(choice) for choice in choices], n=1, cutoff=cutoff)
    return match[0] if match else None


def did_you_mean(word: str, choices: Iterable[str], cutoff: float = 0.5) -> str:
    """``" (did you mean 'x'?)"`` for the choice closest to ``word``, or ``""`` when none is close."""
    match = closest_name(word, choices, cutoff)
    return f" (did you mean {match!r}?)" if match else ""


def unknown_name_message(kind: str, name: object, choices: Iterable[str], cutoff: float = 0.5) -> str:
    """``"unknown <kind> 'x' (did you mean 'y'?); choose one of a, b, c"``.

    Args:
        kind: what the name names (``"backbone"``, ``"peft method"``, ``"config key"``).
        name: what the user wrote.
        choices: the valid names, in the order to list them.
        cutoff: how close (0..1, difflib ratio) a choice must be to be suggested.
    """
    choices = [str(choice) for choice in choices]
    return f"unknown {kind} {name!r}{did_you_mean(str(name), choices, cutoff)}; choose one of {', '.join(choices)}"
