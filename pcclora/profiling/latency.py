"""Wall-clock timing: calls timed round-robin, and the forward latency of point-cloud models.

:func:`round_robin_times` is the one timing core: every timed figure of the profiler and of the
benchmark (:mod:`pcclora.benchmark`) comes from it.  It runs its calls in rounds, one call of
each per round, so that a load spike on a shared machine hits all of them alike and their
ratios stay comparable.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn


def synchronize(device: str | torch.device) -> None:
    """Wait for queued CUDA work so that wall-clock time covers it (no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def round_robin_times(
    calls: Mapping[str, Callable[[], object]],
    *,
    device: str | torch.device = "cpu",
    warmup: int = 1,
    repeats: int = 3,
    max_seconds: float = math.inf,
) -> dict[str, list[float]]:
    """Seconds per call of every entry of ``calls``, run round-robin.

    ``warmup`` untimed rounds, then timed rounds until ``repeats`` are done or the timed calls
    have taken ``max_seconds`` in all (at least one round).  Each timed call is bracketed by
    :func:`synchronize` on ``device``.

    Returns:
        ``{name: [seconds of each timed round]}``, every list of the same length.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    spent = 0.0
    for round_index in range(repeats):
        if round_index and spent >= max_seconds:
            break
        for name, call in calls.items():
            synchronize(device)
            start = time.perf_counter()
            call()
            synchronize(device)
            elapsed = time.perf_counter() - start
            times[name].append(elapsed)
            spent += elapsed
    return times


def forward_times(
    models: Mapping[str, nn.Module],
    points: torch.Tensor,
    *,
    warmup: int = 1,
    repeats: int = 3,
    max_seconds: float = math.inf,
) -> dict[str, list[float]]:
    """Seconds per forward pass ``model(points)`` of every model, eval and inference mode, round-robin.

    Args:
        models: the networks to compare, already on ``points.device``; their train/eval state is
            restored afterwards.
        points: (B, N, 3) input shared by all of them.
        warmup, repeats, max_seconds: as :func:`round_robin_times`.

    Returns:
        ``{name: [seconds of each timed pass]}``.
    """
    was_training = {name: model.training for name, model in models.items()}
    try:
        for model in models.values():
            model.eval()
        with torch.inference_mode():
            calls = {name: (lambda m=model: m(points)) for name, model in models.items()}
            return round_robin_times(
                calls, device=points.device, warmup=warmup, repeats=repeats, max_seconds=max_seconds
            )
    finally:
        for name, model in models.items():
            model.train(was_training[name])


def measure_latency(
    model: nn.Module,
    npoints: int,
    device: str | torch.device = "cpu",
    batch_sizes: Sequence[int] = (1, 32),
    warmup: int = 1,
    repeats: int = 3,
    max_seconds: float = 5.0,
    seed: int = 0,
) -> dict:
    """Time ``model(points)`` on random clouds (B, npoints, 3), eval mode, inference mode.

    The model is moved to ``device`` for the measurement and back afterwards; its train/eval
    state is restored.  Each batch size runs ``warmup`` untimed passes, then timed ones until
    ``repeats`` are done or ``max_seconds`` have been spent (at least one): a batch of 32 clouds
    of 2048 points takes seconds on a CPU, where one pass is already a stable figure.  The
    median is reported (robust to a stray slow pass on a shared machine).

    Returns:
        ``{"device": str, "npoints": int, "results": [{"batch_size", "latency_ms",
        "throughput", "repeats"}, ...]}`` with throughput in samples per second.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    device = torch.device(device)
    first = next(model.parameters(), None)
    home = first.device if first is not None else torch.device("cpu")
    generator = torch.Generator().manual_seed(seed)
    results = []
    model.to(device)
    try:
        for batch_size in batch_sizes:
            points = torch.rand(batch_size, npoints, 3, generator=generator).to(device)
            times = forward_times({"model": model}, points, warmup=warmup, repeats=repeats, max_seconds=max_seconds)[
                "model"
            ]
            median = statistics.median(times)
            results.append(
                {
                    "batch_size": batch_size,
                    "latency_ms": 1000.0 * median,
                    "throughput": batch_size / median,
                    "repeats": len(times),
                }
            )
    finally:
        model.to(home)
    return {"device": str(device), "npoints": npoints, "results": results}
