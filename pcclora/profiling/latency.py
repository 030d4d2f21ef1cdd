"""Wall-clock latency and throughput of a point-cloud model's forward pass."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import torch
from torch import nn


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
    was_training = model.training
    generator = torch.Generator().manual_seed(seed)
    results = []
    model.to(device).eval()
    try:
        with torch.inference_mode():
            for batch_size in batch_sizes:
                points = torch.rand(batch_size, npoints, 3, generator=generator).to(device)
                for _ in range(warmup):
                    model(points)
                times: list[float] = []
                while len(times) < repeats and (not times or sum(times) < max_seconds):
                    _synchronize(device)
                    start = time.perf_counter()
                    model(points)
                    _synchronize(device)
                    times.append(time.perf_counter() - start)
                median = statistics.median(times)
                results.append({
                    "batch_size": batch_size,
                    "latency_ms": 1000.0 * median,
                    "throughput": batch_size / median,
                    "repeats": len(times),
                })
    finally:
        model.to(home).train(was_training)
    return {"device": str(device), "npoints": npoints, "results": results}
