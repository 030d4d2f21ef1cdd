"""The dataset error: one class for every data mistake a user can make."""

from __future__ import annotations

from backbones.errors import ToolkitError


class DatasetError(ToolkitError):
    """A data file or folder is missing, unreadable, or holds data of the wrong shape or range.

    The message names the file, says what was expected and where the data comes from.
    """
