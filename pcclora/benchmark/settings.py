"""What a benchmark run measures and at which size: methods, sections, the default model shape.

Everything here is plain data; :class:`BenchmarkSettings` is also what the memory subprocesses
receive (as JSON) to rebuild the run's setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from backbones import PointMAE
from backbones.errors import ConfigError

#: Method names of the benchmark and the ``peft:`` block each one trains with: the original
#: methods, then every peer with its own defaults (the official Point-MAE / ScanObjectNN ones).
METHOD_CONFIGS: dict[str, dict[str, Any]] = {
    "full": {"method": "full"},
    "linear": {"method": "linear"},
    "lora": {"method": "lora", "rank": 8},
    "clora": {"method": "clora", "sade_weight": 0.0},
    "clora+sade": {"method": "clora"},
    "clora_shared": {"method": "clora_shared", "sade_weight": 0.0},
    **{name: {"method": name} for name in ("vera", "idpt", "dapt", "ppt", "pointgst", "pointlora")},
}
#: The benchmark's methods, in report order.
METHODS = tuple(METHOD_CONFIGS)
#: The sections a run can measure, in the order they run (:mod:`pcclora.benchmark.sections`).
SECTIONS = ("train", "memory", "infer", "tokenizer", "sade")

#: Point-MAE at the ScanObjectNN setting of the published figures (docs/published.md): 12 × 384,
#: 128 groups of 32 — the backbone's own defaults, so the two cannot drift apart.
POINT_MAE_SCANOBJECTNN: dict[str, Any] = dict(PointMAE.default_config)

#: Bytes per MiB, the unit of every memory figure.
MIB = float(1 << 20)


class BenchmarkError(ConfigError):
    """A benchmark setting that cannot run (unknown method or section, no CUDA, bad size)."""


@dataclass
class BenchmarkSettings:
    """What to measure and at which size.

    Attributes:
        device: ``"cpu"`` or ``"cuda"``.
        batch_size: clouds per training step / forward pass.
        num_points: N, points per cloud.
        repeats: timed repetitions; every figure is the median over them.
        infer_repeats: timed forward passes per model in ``infer`` (cheaper than a training
            step, and its targets are 2% apart, so it gets more); ``None``: 3 × ``repeats``.
        warmup: untimed repetitions before timing.
        methods: subset of :data:`METHODS`.
        sections: subset of :data:`SECTIONS`.
        model: backbone overrides (official config names) for ``create_backbone("point_mae")``.
        num_classes: C of the classification head.
        sade_weight: λ of the ``clora+sade`` method.
        threads: ``torch.set_num_threads`` value (``None``: leave torch's default).
        memory_steps: training steps each memory subprocess runs (≥ 2, so that AdamW state exists).
        seed: seed of the models, the data and the random adapter values.
        contention: busy-loop processes (one core each) that spin while the ``tokenizer``
            section measures a second time; 0: quiet figures only.
        backbone: the registered backbone ``model`` sizes (``"point_mae"``).
        peft: per method name, a ``peft:`` block to train with instead of
            :data:`METHOD_CONFIGS` (``tools/compare.py`` passes each run's own); a name that is
            not in :data:`METHOD_CONFIGS` is a method given this way.
    """

    device: str = "cpu"
    batch_size: int = 8
    num_points: int = 2048
    repeats: int = 5
    infer_repeats: int | None = None
    warmup: int = 1
    methods: tuple[str, ...] = METHODS
    sections: tuple[str, ...] = SECTIONS
    model: dict[str, Any] = field(default_factory=lambda: dict(POINT_MAE_SCANOBJECTNN))
    num_classes: int = 15
    sade_weight: float = 0.1
    threads: int | None = None
    memory_steps: int = 2
    seed: int = 0
    contention: int = 0
    backbone: str = "point_mae"
    peft: dict[str, dict[str, Any]] = field(default_factory=dict)

    def peft_config(self, method: str) -> dict[str, Any]:
        """The ``peft:`` block ``method`` trains with (``sade_weight`` of ``clora+sade`` from the settings)."""
        if method in self.peft:
            return dict(self.peft[method])
        raw = dict(METHOD_CONFIGS[method])
        if method == "clora+sade":
            raw["sade_weight"] = self.sade_weight
        return raw

    def check(self) -> None:
        """Raise :class:`BenchmarkError` for settings that cannot run."""
        unknown = [m for m in self.methods if m not in METHOD_CONFIGS and m not in self.peft]
        if unknown or not self.methods:
            raise BenchmarkError(f"unknown or no benchmark method(s) {unknown}; choose among {', '.join(METHODS)}")
        bad = [s for s in self.sections if s not in SECTIONS]
        if bad or not self.sections:
            raise BenchmarkError(f"unknown or no section(s) {bad}; choose among {', '.join(SECTIONS)}")
        if self.device not in ("cpu", "cuda"):
            raise BenchmarkError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise BenchmarkError("--device cuda was asked for but no CUDA device is visible; use --device cpu")
        for name in ("batch_size", "num_points", "repeats", "memory_steps"):
            if getattr(self, name) < 1:
                raise BenchmarkError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.memory_steps < 2:
            raise BenchmarkError("memory_steps must be at least 2 (AdamW allocates its state in the first step)")
        if self.infer_repeats is not None and self.infer_repeats < 1:
            raise BenchmarkError(f"infer_repeats must be at least 1, got {self.infer_repeats}")
        if self.warmup < 0:
            raise BenchmarkError(f"warmup must be at least 0, got {self.warmup}")
        if self.contention < 0:
            raise BenchmarkError(f"contention must be at least 0 (busy processes), got {self.contention}")
        if self.contention and "tokenizer" not in self.sections:
            raise BenchmarkError(
                "--contention applies to the tokenizer section, which is not selected; add it "
                "(--only tokenizer ...) or leave --contention out"
            )
        if self.threads is not None and self.threads < 1:
            raise BenchmarkError(f"threads must be at least 1 (or left out for torch's default), got {self.threads}")
