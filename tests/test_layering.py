"""The package layers import without cycles, each in a fresh interpreter, and only downwards.

backbones ← datasets ← pcclora (peft ← config ← profiling, engine ← benchmark) ← tools: a lower
layer never loads a higher one, and a building block loads without what it does not need (the
adapters load the toolkit's error classes and nothing else of the zoo).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: module imported first in a fresh interpreter → prefixes of modules it must not load.
NOT_LOADED = {
    "backbones": ("datasets", "pcclora"),
    "backbones.registry": ("datasets", "pcclora"),
    "datasets": ("pcclora",),
    # the adapters are model-agnostic: the error classes are all they take from the zoo
    "pcclora.peft": (
        "pcclora.engine",
        "pcclora.profiling",
        "pcclora.benchmark",
        "pcclora.config",
        "datasets",
        "backbones.registry",
        "backbones.point_transformer",
        "backbones.tokenizer",
    ),
    "pcclora.profiling": ("pcclora.engine", "pcclora.benchmark"),
    "pcclora.engine.optim": ("pcclora.engine.runner", "matplotlib"),
    "pcclora.benchmark": ("pcclora.engine.runner",),
    "pcclora.engine": ("pcclora.benchmark",),
}


@pytest.mark.parametrize("module", sorted(NOT_LOADED))
def test_module_imports_alone_and_loads_no_higher_layer(module):
    code = (
        "import sys\n"
        f"import {module}\n"
        f"loaded = sorted(m for m in sys.modules if m.startswith({NOT_LOADED[module]!r}))\n"
        "print(' '.join(loaded))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"importing {module} loaded {done.stdout.strip()}"


@pytest.mark.parametrize(
    "modules",
    [
        "pcclora.benchmark, pcclora.engine.runner, pcclora.profiling, pcclora.peft",
        "pcclora.peft, pcclora.profiling, pcclora.engine.runner, pcclora.benchmark",
    ],
)
def test_the_layers_import_together_top_down_and_bottom_up(modules):
    done = subprocess.run(
        [sys.executable, "-c", f"import {modules}"], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
