"""Peak training memory of one method, measured in a fresh Python process.

:func:`measure_in_fresh_process` starts ``python -c`` with :data:`_CHILD_CODE`, which rebuilds the
:class:`~pcclora.benchmark.settings.BenchmarkSettings` from JSON, runs
:func:`measure_training_memory` and prints its figures as one JSON line.  A fresh process per
method means no other model's memory is counted.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from .settings import MIB, BenchmarkSettings
from .steps import build_model, make_optimizer, synthetic_batch, train_step

#: The repository root (it holds ``backbones``, ``datasets`` and ``pcclora``), put on the child's path.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _proc_status_kib(key: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``); ``None`` off Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False where Linux does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _current_rss_mib() -> float:
    """Resident set size of this process now, MiB."""
    kib = _proc_status_kib("VmRSS")
    if kib is None:  # not Linux: ru_maxrss is the closest portable figure
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return kib / 1024.0


def _peak_rss_mib() -> float:
    """Peak resident set size of this process (since the last :func:`_reset_peak_rss`), MiB."""
    kib = _proc_status_kib("VmHWM")
    if kib is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return kib / 1024.0


def measure_training_memory(settings: BenchmarkSettings, method: str) -> dict[str, Any]:
    """Peak memory of ``settings.memory_steps`` training steps of ``method`` in this process.

    Meant to run in a fresh process (:func:`measure_in_fresh_process`) so that no other
    model's memory is counted.  Figures in MiB:

    - CPU: ``after_imports`` and ``after_build`` (resident set after importing torch and the
      toolkit, and after building model + optimizer + batch), ``peak_absolute`` (the kernel's
      peak-RSS mark, reset after the build), ``peak`` = peak_absolute − after_imports (what the
      method's training holds: weights, gradients, optimizer state, activations) and
      ``peak_above_build`` = peak_absolute − after_build.
    - CUDA: the same keys from ``torch.cuda.memory_allocated`` / ``max_memory_allocated``
      (after_imports is 0).
    """
    if settings.threads:
        torch.set_num_threads(settings.threads)
    cuda = settings.device == "cuda"
    after_imports = torch.cuda.memory_allocated() / MIB if cuda else _current_rss_mib()
    points, labels = synthetic_batch(settings)
    model, _ = build_model(settings, method)
    optimizer = make_optimizer(model)
    if cuda:
        torch.cuda.synchronize()
        after_build = torch.cuda.memory_allocated() / MIB
        torch.cuda.reset_peak_memory_stats()
        peak_reset = True
    else:
        after_build = _current_rss_mib()
        peak_reset = _reset_peak_rss()
    for _ in range(settings.memory_steps):
        train_step(model, optimizer, points, labels)
    if cuda:
        torch.cuda.synchronize()
        peak_absolute = torch.cuda.max_memory_allocated() / MIB
    else:
        peak_absolute = _peak_rss_mib()
    return {
        "kind": "cuda_max_memory_allocated" if cuda else "cpu_peak_rss",
        "peak_mark_reset_after_build": peak_reset,
        "after_imports_mib": after_imports,
        "after_build_mib": after_build,
        "peak_absolute_mib": peak_absolute,
        "peak_mib": peak_absolute - after_imports,
        "peak_above_build_mib": peak_absolute - after_build,
    }


_CHILD_CODE = (
    "import json, sys\n"
    "from pcclora.benchmark.memory import measure_training_memory\n"
    "from pcclora.benchmark.settings import BenchmarkSettings\n"
    "request = json.loads(sys.argv[1])\n"
    "settings = BenchmarkSettings(**request['settings'])\n"
    "print(json.dumps(measure_training_memory(settings, request['method'])))\n"
)

#: glibc setting for the "live" CPU figure: a fixed mmap threshold, so that every tensor of
#: 64 KiB or more is its own mapping and goes back to the system when freed; the resident set
#: then follows the live tensors instead of what glibc's heap keeps after a free.
LIVE_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def measure_in_fresh_process(settings: BenchmarkSettings, method: str, extra_env: Mapping[str, str]) -> dict[str, Any]:
    """:func:`measure_training_memory` of ``method`` in a new Python process; its figures.

    The child gets this environment without any ``MALLOC_*`` variable, plus ``extra_env``
    (e.g. :data:`LIVE_MALLOC_ENV`), and the repository root first on ``PYTHONPATH``.

    Raises:
        RuntimeError: the child failed (the end of its stderr is in the message).
    """
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    env.update(extra_env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    payload = asdict(settings)
    payload["methods"], payload["sections"] = list(settings.methods), list(settings.sections)
    request = json.dumps({"settings": payload, "method": method})
    done = subprocess.run([sys.executable, "-c", _CHILD_CODE, request], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"memory measurement of {method!r} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
