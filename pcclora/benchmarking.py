"""Speed and memory of the fine-tuning methods, measured side by side in one run.

What :func:`run_benchmark` measures (``tools/benchmark.py`` is its command line):

- ``train``: one training step (forward + cross-entropy [+ λ·SADE] + backward + AdamW step) per
  method, median over repeats after warm-up.  The methods are timed round-robin (one step of
  each, then the next round), so a load spike on a shared machine hits all of them alike and
  the ratios stay comparable.  Per method it also checks the lean path: frozen parameters get
  no gradient, optimizer state exists only for trained tensors, the patch embedding runs with
  autograd off when it is frozen, and how many bytes of activations autograd keeps.
- ``memory``: peak training memory, each method in a fresh Python process (CPU: peak resident
  set size; CUDA: ``max_memory_allocated``).
- ``infer``: forward latency (eval, no grad) of the plain backbone, CLoRA with un-merged
  adapters and CLoRA after ``merge_adapters``, round-robin as well.
- ``tokenizer``: FPS + kNN grouping per available backend.
- ``sade``: the SADE regulariser through r×r Gram matrices (``pcclora.sade_loss``) against the
  dense O(p²·d³) reference from the same D, Q, U (``pcclora.peft.sade.sade_loss_dense``): FLOPs
  (counted with ``FlopCounterMode`` and analytically), time and value.

:func:`evaluate_targets` turns the figures into the targets of issue 7 (met / missed / n/a) and
:func:`format_report` prints everything as tables.  Timings are never asserted anywhere.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from backbones import Attention, PointMAE, create_backbone
from backbones.errors import ConfigError
from backbones.tokenizer import BACKENDS, available_backends, group_points
from pcclora.config import config_from_dict
from pcclora.engine.optim import build_optimizer
from pcclora.peft import apply_peft, merge_adapters, resolve_peft_config, sade_loss
from pcclora.peft.bases import CLoRABaseBank
from pcclora.peft.config import BASE_SPACE_METHODS
from pcclora.peft.layers import AdapterLinear
from pcclora.peft.sade import sade_loss_dense, sade_loss_dense_macs
from pcclora.profiling.latency import forward_times, round_robin_times
from pcclora.tables import render_table

#: Method names of the benchmark and the ``peft:`` block each one trains with.
METHOD_CONFIGS: dict[str, dict[str, Any]] = {
    "full": {"method": "full"},
    "linear": {"method": "linear"},
    "lora": {"method": "lora", "rank": 8},
    "clora": {"method": "clora", "sade_weight": 0.0},
    "clora+sade": {"method": "clora"},
}
METHODS = tuple(METHOD_CONFIGS)
SECTIONS = ("train", "memory", "infer", "tokenizer", "sade")

#: Point-MAE at the ScanObjectNN setting (REFERENCE.md §1): 12 × 384, 128 groups of 32 —
#: the backbone's own defaults, so the two cannot drift apart.
POINT_MAE_SCANOBJECTNN: dict[str, Any] = dict(PointMAE.default_config)

_MIB = float(1 << 20)


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

    def check(self) -> None:
        """Raise :class:`BenchmarkError` for settings that cannot run."""
        unknown = [m for m in self.methods if m not in METHOD_CONFIGS]
        if unknown or not self.methods:
            raise BenchmarkError(
                f"unknown or no benchmark method(s) {unknown}; choose among {', '.join(METHODS)}"
            )
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
        if self.threads is not None and self.threads < 1:
            raise BenchmarkError(f"threads must be at least 1 (or left out for torch's default), got {self.threads}")


# ----------------------------------------------------------------------------------------------
# building blocks
# ----------------------------------------------------------------------------------------------

def synthetic_batch(settings: BenchmarkSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """Random clouds in the unit cube and labels: points (B, N, 3) float32, labels (B,) long."""
    generator = torch.Generator().manual_seed(settings.seed)
    points = torch.rand(settings.batch_size, settings.num_points, 3, generator=generator) * 2 - 1
    labels = torch.randint(settings.num_classes, (settings.batch_size,), generator=generator)
    return points.to(settings.device), labels.to(settings.device)


def build_model(settings: BenchmarkSettings, method: str | None) -> tuple[nn.Module, dict[str, Any] | None]:
    """Point-MAE of ``settings.model`` on ``settings.device``, adapted by ``method``.

    ``method=None`` gives the plain backbone.  Returns the model (train mode) and the resolved
    ``peft:`` config (``None`` for the plain backbone).
    """
    torch.manual_seed(settings.seed)
    model = create_backbone("point_mae", num_classes=settings.num_classes, **settings.model)
    cfg = None
    if method is not None:
        raw = dict(METHOD_CONFIGS[method])
        if method == "clora+sade":
            raw["sade_weight"] = settings.sade_weight
        cfg = resolve_peft_config(raw)
        model = apply_peft(model, cfg)
    return model.to(settings.device).train(), cfg


def training_sade_weight(cfg: Mapping[str, Any]) -> float:
    """λ the training step applies: the config's ``sade_weight`` for methods with base spaces, else 0."""
    return float(cfg["sade_weight"]) if cfg["method"] in BASE_SPACE_METHODS else 0.0


def default_optimizer_config() -> dict[str, Any]:
    """The ``optimizer:`` section of the packaged defaults (``pcclora/configs/_base_/defaults.yaml``)."""
    return config_from_dict({}, name="defaults")["optimizer"]


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """The engine's optimizer with the packaged defaults, over the trainable parameters only.

    AdamW; no weight decay for 1-D tensors, biases and names containing ``token``
    (:func:`pcclora.engine.optim.param_groups`).
    """
    return build_optimizer(model, default_optimizer_config())


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    points: torch.Tensor,
    labels: torch.Tensor,
    sade_weight: float,
) -> torch.Tensor:
    """One step: forward, CE (+ λ·SADE when λ > 0), backward, optimizer step, gradients freed."""
    loss = F.cross_entropy(model(points), labels)
    if sade_weight > 0:
        loss = loss + sade_weight * sade_loss(model)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def _timing(seconds: Sequence[float]) -> dict[str, Any]:
    return {"median_s": statistics.median(seconds), "min_s": min(seconds), "runs_s": list(seconds)}


def randomize_adapters(model: nn.Module, seed: int, std: float = 0.1) -> None:
    """Give every all-zero adapter tensor (CLoRA coefficients, LoRA up factors) random values.

    Freshly initialised adapters have a zero branch, so SADE and the merge would be trivially
    equal to their references; random values make those comparisons meaningful.
    """
    generator = torch.Generator().manual_seed(seed)
    for param in adapter_parameters(model):
        if not bool((param == 0).all()):
            continue
        with torch.no_grad():
            noise = torch.randn(param.shape, generator=generator, dtype=torch.float64) * std
            param.copy_(noise.to(param.device, param.dtype))


def adapter_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of the adapters: those of ``AdapterLinear`` wrappers and of the CLoRA base bank."""
    params: list[nn.Parameter] = []
    for module in model.modules():
        if isinstance(module, AdapterLinear):
            params.extend(p for name, p in module.named_parameters() if not name.startswith("base_layer."))
        elif isinstance(module, CLoRABaseBank):
            params.extend(module.parameters())
    return params


# ----------------------------------------------------------------------------------------------
# lean-path checks
# ----------------------------------------------------------------------------------------------

class _SavedTensorMeter:
    """Sum the bytes of distinct activation tensors autograd saves for backward (parameters excluded)."""

    def __init__(self, model: nn.Module) -> None:
        self.parameter_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.storages: dict[int, int] = {}

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self.parameter_storages:
            self.storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    @property
    def mib(self) -> float:
        return sum(self.storages.values()) / _MIB


def lean_path_report(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    points: torch.Tensor,
    labels: torch.Tensor,
    sade_weight: float,
) -> dict[str, Any]:
    """Inspect one training step of ``model`` for the savings a frozen backbone allows.

    Returns:
        ``frozen_params_with_grad`` (should be 0), ``trainable_params``, ``optimizer_state_numel``
        (AdamW keeps 2 per trained value), ``patch_embedding_grad_enabled`` (whether autograd
        was on while the patch encoder ran), ``saved_activations_mib`` (distinct tensors autograd
        keeps for backward), ``sdpa_attention`` (every block uses fused attention).
    """
    grad_mode_in_encoder: list[bool] = []
    hook = model.encoder.register_forward_hook(
        lambda *_: grad_mode_in_encoder.append(torch.is_grad_enabled())
    )
    meter = _SavedTensorMeter(model)
    try:
        with torch.autograd.graph.saved_tensors_hooks(meter.pack, lambda t: t):
            loss = F.cross_entropy(model(points), labels)
            if sade_weight > 0:
                loss = loss + sade_weight * sade_loss(model)
        loss.backward()
    finally:
        hook.remove()
    frozen_with_grad = sum(1 for p in model.parameters() if not p.requires_grad and p.grad is not None)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    state_numel = sum(
        value.numel() for state in optimizer.state.values() for value in state.values()
        if torch.is_tensor(value) and value.ndim > 0
    )
    attentions = [m for m in model.modules() if isinstance(m, Attention)]
    return {
        "frozen_params_with_grad": frozen_with_grad,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "optimizer_state_numel": state_numel,
        "patch_embedding_grad_enabled": any(grad_mode_in_encoder),
        "saved_activations_mib": meter.mib,
        "sdpa_attention": bool(attentions) and all(bool(m.fused) for m in attentions),
    }


# ----------------------------------------------------------------------------------------------
# sections
# ----------------------------------------------------------------------------------------------

def bench_train(settings: BenchmarkSettings) -> dict[str, Any]:
    """Training-step time of every method (round-robin, median) and its lean-path report."""
    points, labels = synthetic_batch(settings)
    runs: dict[str, tuple[nn.Module, torch.optim.Optimizer, float]] = {}
    for method in settings.methods:
        model, cfg = build_model(settings, method)
        runs[method] = (model, make_optimizer(model), training_sade_weight(cfg))
    calls = {
        method: (lambda m=model, o=opt, w=weight: train_step(m, o, points, labels, w))
        for method, (model, opt, weight) in runs.items()
    }
    times = round_robin_times(calls, warmup=settings.warmup, repeats=settings.repeats, device=settings.device)
    result = {}
    for method, (model, opt, weight) in runs.items():
        result[method] = {
            "step": _timing(times[method]),
            "sade_weight": weight,
            "lean": lean_path_report(model, opt, points, labels, weight),
        }
    return result


def bench_inference(settings: BenchmarkSettings) -> dict[str, Any]:
    """Forward latency (eval, no grad) of the plain backbone and of CLoRA un-merged and merged."""
    points, _ = synthetic_batch(settings)
    plain, _ = build_model(settings, None)
    unmerged, _ = build_model(settings, "clora")
    randomize_adapters(unmerged, settings.seed)
    merged = copy.deepcopy(unmerged)
    merge_adapters(merged)
    models = {"plain": plain.eval(), "clora_unmerged": unmerged.eval(), "clora_merged": merged.eval()}
    repeats = settings.infer_repeats or 3 * settings.repeats
    times = forward_times(models, points, warmup=settings.warmup, repeats=repeats)
    with torch.no_grad():
        diff = (models["clora_unmerged"](points) - models["clora_merged"](points)).abs().max().item()
    result: dict[str, Any] = {name: _timing(times[name]) for name in models}
    result["merged_vs_unmerged_max_abs_logit_diff"] = diff
    return result


def bench_tokenizer(settings: BenchmarkSettings) -> dict[str, Any]:
    """FPS + kNN grouping time per backend at the model's G and k (unavailable ones say so)."""
    points, _ = synthetic_batch(settings)
    usable = available_backends()
    num_group, group_size = settings.model["num_group"], settings.model["group_size"]
    calls = {
        backend: (lambda b=backend: group_points(points, num_group, group_size, backend=b))
        for backend in BACKENDS if backend in usable
    }
    times = round_robin_times(calls, warmup=settings.warmup, repeats=settings.repeats, device=settings.device)
    result: dict[str, Any] = {}
    for backend in BACKENDS:
        if backend in times:
            result[backend] = {"available": True, **_timing(times[backend])}
        else:
            result[backend] = {"available": False, "note": f"{backend} is not importable here"}
    return result


def _count_flops(fn: Callable[[], Any]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def bench_sade(settings: BenchmarkSettings) -> dict[str, Any]:
    """SADE through Gram matrices (``pcclora.sade_loss``) versus the dense reference ``sade_loss_dense``."""
    model, _ = build_model(settings, "clora")
    randomize_adapters(model, settings.seed)
    gram_value = sade_loss(model).item()
    with torch.no_grad():
        dense_value = sade_loss_dense(model)
    model64 = copy.deepcopy(model).double()
    with torch.no_grad():
        gram64 = float(sade_loss(model64))
        dense64 = float(sade_loss_dense(model64))

    def gram_forward_backward() -> None:
        sade_loss(model).backward()
        for p in adapter_parameters(model):
            p.grad = None

    gram_calls = {
        "gram_forward": lambda: sade_loss(model),
        "gram_forward_backward": gram_forward_backward,
    }
    times = round_robin_times(gram_calls, warmup=settings.warmup, repeats=settings.repeats, device=settings.device)
    with torch.no_grad():
        dense_times = round_robin_times(
            {"dense_forward": lambda: sade_loss_dense(model)}, warmup=0, repeats=1, device=settings.device
        )
        gram_flops = _count_flops(lambda: sade_loss(model))
        dense_flops = _count_flops(lambda: sade_loss_dense(model))
    return {
        "value_gram": gram_value,
        "value_dense": float(dense_value),
        "rel_diff_float32": _rel_diff(gram_value, float(dense_value)),
        "value_gram_float64": gram64,
        "value_dense_float64": dense64,
        "rel_diff_float64": _rel_diff(gram64, dense64),
        "flops_gram": gram_flops,
        "flops_dense": dense_flops,
        "flops_dense_analytic": 2 * sade_loss_dense_macs(model),
        "gram_forward": _timing(times["gram_forward"]),
        "gram_forward_backward": _timing(times["gram_forward_backward"]),
        "dense_forward": _timing(dense_times["dense_forward"]),
    }


def _rel_diff(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-30)


# ----------------------------------------------------------------------------------------------
# peak memory in a fresh process per method
# ----------------------------------------------------------------------------------------------

def _proc_status_kib(key: str) -> int | None:
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
    kib = _proc_status_kib("VmRSS")
    if kib is None:  # not Linux: ru_maxrss is the closest portable figure
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return kib / 1024.0


def _peak_rss_mib() -> float:
    kib = _proc_status_kib("VmHWM")
    if kib is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return kib / 1024.0


def measure_training_memory(settings: BenchmarkSettings, method: str) -> dict[str, Any]:
    """Peak memory of ``settings.memory_steps`` training steps of ``method`` in this process.

    Meant to run in a fresh process (:func:`bench_memory` spawns one per method) so that no other
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
    after_imports = torch.cuda.memory_allocated() / _MIB if cuda else _current_rss_mib()
    points, labels = synthetic_batch(settings)
    model, cfg = build_model(settings, method)
    sade_weight = training_sade_weight(cfg)
    optimizer = make_optimizer(model)
    if cuda:
        torch.cuda.synchronize()
        after_build = torch.cuda.memory_allocated() / _MIB
        torch.cuda.reset_peak_memory_stats()
        peak_reset = True
    else:
        after_build = _current_rss_mib()
        peak_reset = _reset_peak_rss()
    for _ in range(settings.memory_steps):
        train_step(model, optimizer, points, labels, sade_weight)
    if cuda:
        torch.cuda.synchronize()
        peak_absolute = torch.cuda.max_memory_allocated() / _MIB
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
    "from pcclora.benchmarking import BenchmarkSettings, measure_training_memory\n"
    "request = json.loads(sys.argv[1])\n"
    "settings = BenchmarkSettings(**request['settings'])\n"
    "print(json.dumps(measure_training_memory(settings, request['method'])))\n"
)

#: glibc setting for the "live" CPU figure: a fixed mmap threshold, so that every tensor of
#: 64 KiB or more is its own mapping and goes back to the system when freed; the resident set
#: then follows the live tensors instead of what glibc's heap keeps after a free.
LIVE_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


def _spawn_memory_child(settings: BenchmarkSettings, method: str, extra_env: Mapping[str, str]) -> dict[str, Any]:
    project_root = str(Path(__file__).resolve().parents[1])
    env = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    env.update(extra_env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [project_root, env.get("PYTHONPATH")]))
    payload = asdict(settings)
    payload["methods"], payload["sections"] = list(settings.methods), list(settings.sections)
    request = json.dumps({"settings": payload, "method": method})
    done = subprocess.run([sys.executable, "-c", _CHILD_CODE, request], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"memory measurement of {method!r} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_memory(settings: BenchmarkSettings) -> dict[str, Any]:
    """Run :func:`measure_training_memory` for every method, each in a fresh Python process.

    On CPU every method runs twice: with :data:`LIVE_MALLOC_ENV` (the main figures: the resident
    set follows the live tensors) and with glibc's defaults (``default_malloc``: what a process
    with default settings shows, including freed memory glibc keeps in its heap).
    """
    result = {}
    for method in settings.methods:
        if settings.device == "cuda":
            result[method] = _spawn_memory_child(settings, method, {})
        else:
            result[method] = _spawn_memory_child(settings, method, LIVE_MALLOC_ENV)
            result[method]["malloc_env"] = dict(LIVE_MALLOC_ENV)
            result[method]["default_malloc"] = _spawn_memory_child(settings, method, {})
    return result


# ----------------------------------------------------------------------------------------------
# the whole run, targets, report
# ----------------------------------------------------------------------------------------------

def environment_info(settings: BenchmarkSettings) -> dict[str, Any]:
    """Where the figures come from: versions, threads, CPU or GPU name, load."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }
    if hasattr(os, "getloadavg"):
        info["load_average_1m"] = os.getloadavg()[0]
    if settings.device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


_RUNNERS: dict[str, Callable[[BenchmarkSettings], dict[str, Any]]] = {
    "train": bench_train,
    "memory": bench_memory,
    "infer": bench_inference,
    "tokenizer": bench_tokenizer,
    "sade": bench_sade,
}


def run_benchmark(settings: BenchmarkSettings, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure the chosen sections and return one JSON-ready dict (with a ``targets`` list)."""
    settings.check()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    results: dict[str, Any] = {"settings": asdict(settings)}
    results["settings"]["methods"] = list(settings.methods)
    results["settings"]["sections"] = list(settings.sections)
    results["environment"] = environment_info(settings)
    for section in SECTIONS:
        if section in settings.sections:
            if progress:
                progress(section)
            start = time.perf_counter()
            results[section] = _RUNNERS[section](settings)
            results[section]["section_wall_s"] = time.perf_counter() - start
    results["environment"]["load_average_1m_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    results["targets"] = evaluate_targets(results)
    return results


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def _dig(results: Mapping[str, Any], *keys: str) -> Any:
    node: Any = results
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def evaluate_targets(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The targets of issue 7 as ``{"target", "measured", "limit", "status", "how"}`` rows.

    ``status`` is ``"met"``, ``"missed"`` or ``"n/a"`` (not measured in this run, or the
    comparison needs something not available here, e.g. pytorch3d).
    """
    step = lambda method: _dig(results, "train", method, "step", "median_s")  # noqa: E731
    peak = lambda method: _dig(results, "memory", method, "peak_mib")  # noqa: E731
    latency = lambda name: _dig(results, "infer", name, "median_s")  # noqa: E731
    sade_time = _dig(results, "sade", "gram_forward_backward", "median_s")
    flops_gram, flops_dense = _dig(results, "sade", "flops_gram"), _dig(results, "sade", "flops_dense")
    torch_tok = _dig(results, "tokenizer", "torch", "median_s")
    p3d_tok = _dig(results, "tokenizer", "pytorch3d", "median_s")

    rows = [
        ("CLoRA+SADE step / full fine-tuning step", _ratio(step("clora+sade"), step("full")), "<=", 0.70,
         "median step times, same run"),
        ("CLoRA+SADE step / LoRA r=8 step", _ratio(step("clora+sade"), step("lora")), "<=", 1.10,
         "median step times, same run"),
        ("CLoRA peak training memory / full", _ratio(peak("clora"), peak("full")), "<=", 0.60,
         "peak memory above the imported runtime, fresh process per method"),
        ("merged CLoRA latency / plain backbone", _ratio(latency("clora_merged"), latency("plain")), "<=", 1.02,
         "median forward latency, same run"),
        ("un-merged CLoRA latency / plain backbone", _ratio(latency("clora_unmerged"), latency("plain")), "<=",
         1.15, "median forward latency, same run"),
        ("SADE FLOPs dense / Gram", _ratio(flops_dense, flops_gram), ">=", 1000.0,
         "FlopCounterMode, forward"),
        ("SADE value |Gram - dense| / |dense| (float32)", _dig(results, "sade", "rel_diff_float32"), "<=", 1e-6,
         "pcclora.sade_loss vs the dense reference"),
        ("SADE (Gram, fwd+bwd) time / CLoRA step", _ratio(sade_time, step("clora")), "<=", 0.02,
         "median times, same run"),
        ("tokenizer torch time / pytorch3d time", _ratio(torch_tok, p3d_tok), "<=", 1.0,
         "median FPS+kNN grouping time" + ("" if p3d_tok is not None else "; pytorch3d not importable here")),
    ]
    targets = []
    for name, measured, comparison, limit, how in rows:
        if measured is None:
            status = "n/a"
        elif comparison == "<=":
            status = "met" if measured <= limit else "missed"
        else:
            status = "met" if measured >= limit else "missed"
        targets.append({"target": f"{name} {comparison} {limit:g}", "measured": measured, "limit": limit,
                        "comparison": comparison, "status": status, "how": how})
    return targets


def _fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.1f}"


def format_report(results: Mapping[str, Any]) -> str:
    """Human-readable tables of everything :func:`run_benchmark` measured."""
    s = results["settings"]
    env = results["environment"]
    model = s["model"]
    parts = [
        f"pcclora benchmark on {s['device']}"
        + (f" ({env['gpu']})" if "gpu" in env else "")
        + f", torch {env['torch']}, {env['threads']} threads, {env['cpu_count']} CPUs, load avg "
        f"{env.get('load_average_1m', float('nan')):.2f} -> {env.get('load_average_1m_end') or float('nan'):.2f}",
        f"Point-MAE {model['depth']}x{model['trans_dim']}, N={s['num_points']}, G={model['num_group']}, "
        f"k={model['group_size']}, batch {s['batch_size']}; median of {s['repeats']} repeats after "
        f"{s['warmup']} warm-up, methods timed round-robin",
    ]
    train, memory = results.get("train"), results.get("memory")
    if train or memory:
        full_step = _dig(results, "train", "full", "step", "median_s")
        full_peak = _dig(results, "memory", "full", "peak_mib")
        rows = []
        for method in s["methods"]:
            t = _dig(results, "train", method, "step", "median_s")
            lean = _dig(results, "train", method, "lean") or {}
            m = _dig(results, "memory", method) or {}
            ratio_t = _ratio(t, full_step)
            ratio_m = _ratio(m.get("peak_mib"), full_peak)
            rows.append([
                method,
                f"{lean['trainable_params']:,}" if lean else "-",
                _fmt_ms(t),
                "-" if ratio_t is None else f"{ratio_t:.2f}",
                "-" if not m else f"{m['peak_mib']:.0f}",
                "-" if ratio_m is None else f"{ratio_m:.2f}",
                "-" if not m else f"{m['peak_above_build_mib']:.0f}",
                "-" if not m else f"{m['peak_absolute_mib']:.0f}",
                "-" if "default_malloc" not in m else f"{m['default_malloc']['peak_mib']:.0f}",
                "-" if not lean else f"{lean['saved_activations_mib']:.0f}",
                "-" if not lean else f"{lean['optimizer_state_numel']:,}",
                "-" if not lean else ("on" if lean["patch_embedding_grad_enabled"] else "off"),
            ])
        kind = next((v["kind"] for v in (memory or {}).values() if isinstance(v, Mapping)), "-")
        parts += ["", f"Training step (memory: {kind}, fresh process per method)", render_table(
            ["method", "trainable", "step ms", "x full", "peak MiB", "x full", "above build MiB", "absolute MiB", "glibc default MiB",
             "saved act MiB", "optim state", "embed grad"], rows)]
        parts.append("peak MiB = peak above the imported runtime (weights + grads + optimizer + activations); "
                     "above build = peak minus the resident set after model/optimizer build; absolute = the "
                     "process's whole peak (runtime included); on CPU all with "
                     "MALLOC_MMAP_THRESHOLD_=65536 (resident set follows live tensors), 'glibc default' = the "
                     "same peak with glibc's default settings.")
    infer = results.get("infer")
    if infer:
        plain = infer["plain"]["median_s"]
        rows = [[name, _fmt_ms(infer[name]["median_s"]), f"{infer[name]['median_s'] / plain:.3f}"]
                for name in ("plain", "clora_unmerged", "clora_merged")]
        count = len(infer["plain"]["runs_s"])
        parts += ["", f"Inference forward (eval, no grad, tokenizer included; median of {count})",
                  render_table(["model", "latency ms", "x plain"], rows),
                  f"merged vs un-merged max |logit diff|: {infer['merged_vs_unmerged_max_abs_logit_diff']:.2e}"]
    tok = results.get("tokenizer")
    if tok:
        rows = [[b, _fmt_ms(v["median_s"]) if v["available"] else "not importable"]
                for b, v in tok.items() if isinstance(v, Mapping)]
        parts += ["", "Tokenizer (FPS + kNN grouping)", render_table(["backend", "time ms"], rows)]
    sade = results.get("sade")
    if sade:
        rows = [
            ["Gram (pcclora.sade_loss)", f"{sade['flops_gram']:,}", _fmt_ms(sade["gram_forward"]["median_s"]),
             _fmt_ms(sade["gram_forward_backward"]["median_s"]), f"{sade['value_gram']:.9g}"],
            ["dense B_h = D_h Q_h U_h", f"{sade['flops_dense']:,}", _fmt_ms(sade["dense_forward"]["median_s"]),
             "-", f"{sade['value_dense']:.9g}"],
        ]
        parts += ["", "SADE regulariser at the default shapes (random adapters)",
                  render_table(["form", "FLOPs (fwd)", "fwd ms", "fwd+bwd ms", "value"], rows),
                  f"dense FLOPs analytic {sade['flops_dense_analytic']:,}; relative difference float32 "
                  f"{sade['rel_diff_float32']:.1e}, float64 {sade['rel_diff_float64']:.1e}"]
    rows = [[t["target"], "-" if t["measured"] is None else f"{t['measured']:.4g}", t["status"]]
            for t in results["targets"]]
    parts += ["", "Targets", render_table(["target", "measured", "status"], rows)]
    return "\n".join(parts)
