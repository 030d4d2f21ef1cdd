"""Errors of the profiler that a user can cause."""

from __future__ import annotations

from backbones.errors import ToolkitError


class ProfilerError(ToolkitError):
    """A profiling request that cannot run as asked (e.g. CUDA asked for but absent)."""
