"""Devices: turn a device name into a checked ``torch.device``; bf16 autocast where it applies.

Used by the engine, the profiler and the benchmark, so every tool reads ``--device`` the same way.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch

from backbones.errors import ConfigError


def resolve_device(name: str, allow_auto: bool = True) -> torch.device:
    """``auto`` -> cuda when available, else cpu; otherwise the named device, checked to exist here.

    Args:
        name: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        allow_auto: accept ``"auto"``.

    Raises:
        ConfigError: a name torch cannot parse, a device type other than cpu/cuda, or CUDA asked
            for where this PyTorch has no usable CUDA device.
    """
    choices = "auto, cpu, cuda or cuda:N" if allow_auto else "cpu, cuda or cuda:N"
    if name == "auto" and allow_auto:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):  # torch rejects a device string it cannot parse
        raise ConfigError(f"unknown device {name!r}; use {choices}") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {name!r}; use {choices}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available here; use --device cpu")
    return device


def autocast(device: torch.device, enabled: bool) -> Any:
    """bf16 autocast on CUDA when ``enabled``; a context that does nothing otherwise."""
    if enabled and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()
