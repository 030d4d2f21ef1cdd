"""The sections of a benchmark run, one function each, and :func:`run_benchmark` over them.

Every section takes the :class:`~pcclora.benchmark.settings.BenchmarkSettings` and returns a
JSON-ready dict; :func:`run_benchmark` adds the settings, the environment and the targets.
Timings come from :func:`pcclora.profiling.latency.round_robin_times`: several things timed in
the same rounds, so that their ratios stay comparable on a shared machine.  Inputs are
:func:`~pcclora.benchmark.steps.synthetic_batch` clouds, (B, N, 3).
"""

from __future__ import annotations

import copy
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from backbones.tokenizer import BACKENDS, FPS_THREADS, available_backends, group_points
from pcclora.peft import METHODS, merge_adapters, sade_loss
from pcclora.peft.sade import sade_loss_dense, sade_loss_dense_macs
from pcclora.profiling.latency import forward_times, round_robin_times

from .contention import busy_processes
from .lean_path import lean_path_report
from .memory import LIVE_MALLOC_ENV, measure_in_fresh_process
from .settings import SECTIONS, BenchmarkSettings
from .steps import (
    adapter_parameters,
    build_model,
    make_optimizer,
    randomize_adapters,
    synthetic_batch,
    timing_summary,
    train_step,
    training_sade_weight,
)
from .targets import evaluate_targets


def bench_train(settings: BenchmarkSettings) -> dict[str, Any]:
    """Training-step time of every method (round-robin) and its lean-path report.

    Returns:
        per method ``step`` (:func:`~pcclora.benchmark.steps.timing_summary` of the steps),
        ``sade_weight`` (λ applied) and ``lean``
        (:func:`~pcclora.benchmark.lean_path.lean_path_report`).
    """
    points, labels = synthetic_batch(settings)
    runs: dict[str, tuple[nn.Module, torch.optim.Optimizer, float]] = {}
    for method in settings.methods:
        model, cfg = build_model(settings, method)
        runs[method] = (model, make_optimizer(model), training_sade_weight(cfg))
    calls = {
        method: (lambda m=model, o=opt: train_step(m, o, points, labels)) for method, (model, opt, _) in runs.items()
    }
    times = round_robin_times(calls, warmup=settings.warmup, repeats=settings.repeats, device=settings.device)
    result = {}
    for method, (model, opt, weight) in runs.items():
        result[method] = {
            "step": timing_summary(times[method]),
            "sade_weight": weight,
            "lean": lean_path_report(model, opt, points, labels),
        }
    return result


def inference_methods(settings: BenchmarkSettings) -> list[str]:
    """The methods of the run whose inference network differs from the plain backbone's (one per
    network: ``clora+sade`` is timed as ``clora``)."""
    chosen = []
    for method in settings.methods:
        name = settings.peft_config(method)["method"]
        if METHODS[name].merge != "n/a" and name not in chosen:
            chosen.append(name)
    return chosen


def bench_inference(settings: BenchmarkSettings) -> dict[str, Any]:
    """Forward latency (eval, inference mode) of the plain backbone and of every method's model,
    un-merged and merged, all timed round-robin in the same rounds.

    The adapters get random values first (all-zero trained tensors), so that a merged model
    differs from the plain one and the logit comparison means something. Full fine-tuning and
    the linear probe run the plain network and are not timed again.

    Returns:
        ``plain``, ``<method>_unmerged`` and, for methods of which something merges,
        ``<method>_merged`` (timing summaries; ``settings.infer_repeats`` or 3 × ``repeats``
        passes each), ``methods`` (the methods timed) and
        ``merged_vs_unmerged_max_abs_logit_diff`` (the largest over the methods, and per method
        in ``logit_diffs``).
    """
    points, _ = synthetic_batch(settings)
    plain, _ = build_model(settings, None)
    models: dict[str, nn.Module] = {"plain": plain.eval()}
    diffs: dict[str, float] = {}
    methods = inference_methods(settings)
    for method in methods:
        name = next(m for m in settings.methods if settings.peft_config(m)["method"] == method)
        unmerged, _ = build_model(settings, name)
        randomize_adapters(unmerged, settings.seed)
        models[f"{method}_unmerged"] = unmerged.eval()
        if METHODS[method].merge in ("full", "partial"):
            merged = merge_adapters(copy.deepcopy(unmerged)).eval()
            models[f"{method}_merged"] = merged
            with torch.no_grad():
                diffs[method] = (unmerged(points) - merged(points)).abs().max().item()
    repeats = settings.infer_repeats or 3 * settings.repeats
    times = forward_times(models, points, warmup=settings.warmup, repeats=repeats)
    result: dict[str, Any] = {name: timing_summary(times[name]) for name in models}
    result["methods"] = methods
    result["logit_diffs"] = diffs
    result["merged_vs_unmerged_max_abs_logit_diff"] = max(diffs.values(), default=0.0)
    return result


def bench_tokenizer(settings: BenchmarkSettings) -> dict[str, Any]:
    """FPS + kNN grouping time per backend at the model's G and k (unavailable ones say so).

    On a CPU with several threads the torch backend is also timed with its FPS loop pinned to
    one thread and to all of them (``torch_threads``; the plain ``torch`` figure chooses between
    the two while it runs, :mod:`backbones.threads`). With ``settings.contention`` > 0 everything
    is timed a second time while that many busy-loop processes spin (``contended``), so quiet and
    busy figures come from one run.

    Returns:
        ``torch`` and ``pytorch3d`` (``available`` and a timing summary, or a ``note``),
        ``torch_threads`` (``{"1": summary, "<threads>": summary}``, CPU with several threads
        only) and, with contention, ``contended`` holding the same keys and ``busy_processes``.
    """
    points, _ = synthetic_batch(settings)
    usable = available_backends()
    num_group, group_size = settings.model["num_group"], settings.model["group_size"]
    calls: dict[str, Callable[[], Any]] = {
        backend: (lambda b=backend: group_points(points, num_group, group_size, backend=b))
        for backend in BACKENDS
        if backend in usable
    }
    threads = torch.get_num_threads()
    pinned = (1, threads) if settings.device == "cpu" and threads > 1 else ()
    for count in pinned:
        calls[f"torch_threads/{count}"] = lambda c=count: _grouping_on_threads(points, num_group, group_size, c)

    def measure() -> dict[str, Any]:
        times = round_robin_times(calls, warmup=settings.warmup, repeats=settings.repeats, device=settings.device)
        figures: dict[str, Any] = {}
        for backend in BACKENDS:
            if backend in times:
                figures[backend] = {"available": True, **timing_summary(times[backend])}
            else:
                figures[backend] = {"available": False, "note": f"{backend} is not importable here"}
        if pinned:
            figures["torch_threads"] = {str(c): timing_summary(times[f"torch_threads/{c}"]) for c in pinned}
        return figures

    result = measure()
    if settings.contention:
        with busy_processes(settings.contention):
            result["contended"] = {"busy_processes": settings.contention, **measure()}
    return result


def _grouping_on_threads(points: torch.Tensor, num_group: int, group_size: int, threads: int) -> Any:
    """``group_points`` (torch backend) with its FPS loop pinned to ``threads`` intra-op threads."""
    with FPS_THREADS.pinned(threads):
        return group_points(points, num_group, group_size, backend="torch")


def _count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs ``FlopCounterMode`` counts while ``fn`` runs (matmul-like ops only)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def bench_sade(settings: BenchmarkSettings) -> dict[str, Any]:
    """SADE through Gram matrices (``pcclora.sade_loss``) versus the dense reference.

    The dense reference is :func:`pcclora.peft.sade.sade_loss_dense` (every B_h = D_h Q_h U_h
    of shape (d_in, d_out) formed), on a CLoRA model of ``settings.model`` with random adapters.

    Returns:
        the values in float32 and float64 and their relative differences, FLOPs of both forms
        (counted, and analytically for the dense one) and timing summaries of the Gram form's
        forward and forward + backward and of one dense forward.
    """
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
        "gram_forward": timing_summary(times["gram_forward"]),
        "gram_forward_backward": timing_summary(times["gram_forward_backward"]),
        "dense_forward": timing_summary(dense_times["dense_forward"]),
    }


def _rel_diff(a: float, b: float) -> float:
    """|a − b| relative to the larger magnitude."""
    return abs(a - b) / max(abs(a), abs(b), 1e-30)


def bench_memory(settings: BenchmarkSettings) -> dict[str, Any]:
    """Peak training memory of every method, each in a fresh Python process.

    :func:`~pcclora.benchmark.memory.measure_training_memory` of each method, through
    :func:`~pcclora.benchmark.memory.measure_in_fresh_process`.

    On CPU every method runs twice: with :data:`LIVE_MALLOC_ENV` (the main figures: the resident
    set follows the live tensors) and with glibc's defaults (``default_malloc``: what a process
    with default settings shows, including freed memory glibc keeps in its heap).
    """
    result = {}
    for method in settings.methods:
        if settings.device == "cuda":
            result[method] = measure_in_fresh_process(settings, method, {})
        else:
            result[method] = measure_in_fresh_process(settings, method, LIVE_MALLOC_ENV)
            result[method]["malloc_env"] = dict(LIVE_MALLOC_ENV)
            result[method]["default_malloc"] = measure_in_fresh_process(settings, method, {})
    return result


# ----------------------------------------------------------------------------------------------
# the whole run
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
