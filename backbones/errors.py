"""Errors for mistakes a user can make.

Every package of the toolkit raises a subclass of :class:`ToolkitError` for an expected user
mistake (a missing file, a wrong shape, an unknown name).  The command-line tools catch this one
class and print its message without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ToolkitError(Exception):
    """Base class of the errors whose message is meant for the user as it stands."""


class InputShapeError(ToolkitError, ValueError):
    """A tensor handed to a model or tokenizer has the wrong shape, dtype or size."""


class CheckpointError(ToolkitError):
    """A checkpoint file is unreadable, of an unknown layout, or does not fit the model."""


class ModelConfigError(ToolkitError, ValueError):
    """A model size or option that cannot be built (e.g. a width not divisible by the heads)."""


def closest_name(word: str, choices: Iterable[str], cutoff: float = 0.5) -> str | None:
    """The choice most like ``word`` (for a "did you mean" hint), or None when none is close."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=cutoff)
    return match[0] if match else None


class UnknownNameError(ToolkitError, KeyError):
    """A backbone, method, dataset or config name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
