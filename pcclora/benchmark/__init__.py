"""Speed and memory of the fine-tuning methods, measured side by side in one run.

What :func:`run_benchmark` measures (``tools/benchmark.py`` is its command line):

- ``train``: one training step (forward + cross-entropy [+ the method's regularisers: λ·SADE,
  PointLoRA's entropy loss] + backward + AdamW step) per method, median over repeats after
  warm-up.  The methods are timed round-robin (one step of each, then the next round), so a
  load spike on a shared machine hits all of them alike and the ratios stay comparable.  Per
  method it also checks the lean path: frozen parameters get no gradient, optimizer state
  exists only for trained tensors, the patch embedding runs with autograd off when it is
  frozen, and how many bytes of activations autograd keeps.
- ``memory``: peak training memory, each method in a fresh Python process (CPU: peak resident
  set size; CUDA: ``max_memory_allocated``).
- ``infer``: forward latency (eval, inference mode) of the plain backbone and of every method's
  model, un-merged and (where something merges) after ``merge_adapters``, round-robin as well.
- ``tokenizer``: FPS + kNN grouping per available backend, and the torch backend with its FPS
  loop pinned to one thread and to all of them; with ``--contention N`` all of it a second time
  while N busy-loop processes spin, so that quiet and busy figures come from one run.
- ``sade``: the SADE regulariser through r×r Gram matrices (``pcclora.sade_loss``) against the
  dense O(p²·d³) reference from the same D, Q, U (``pcclora.peft.sade.sade_loss_dense``): FLOPs
  (counted with ``FlopCounterMode`` and analytically), time and value.

:func:`evaluate_targets` turns the figures into the performance targets (met / missed / n/a)
and :func:`format_report` prints everything as tables.  Timings are never asserted anywhere.

The modules, one job each: :mod:`.settings` (what to measure, at which size),
:mod:`.steps` (batch, models, optimizer, one training step), :mod:`.lean_path` (what a training
step keeps), :mod:`.memory` (peak memory in a fresh process), :mod:`.contention` (busy-loop processes),
:mod:`.sections` (one function per section, :func:`run_benchmark`), :mod:`.targets`,
:mod:`.report`.
"""

from .report import format_report
from .sections import run_benchmark
from .settings import METHODS, POINT_MAE_SCANOBJECTNN, SECTIONS, BenchmarkError, BenchmarkSettings
from .targets import evaluate_targets

__all__ = [
    "METHODS",
    "POINT_MAE_SCANOBJECTNN",
    "SECTIONS",
    "BenchmarkError",
    "BenchmarkSettings",
    "evaluate_targets",
    "format_report",
    "run_benchmark",
]
