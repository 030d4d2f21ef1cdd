"""Errors of the adapter package for mistakes a user can make."""

from __future__ import annotations

from backbones.errors import ToolkitError


class PeftConfigError(ToolkitError, ValueError):
    """A ``peft:`` config block has an unknown key or a value of the wrong type or range."""


class PeftStateError(ToolkitError):
    """The model is in the wrong state for the call (not adapted, adapted twice, merged)."""
