"""The performance targets of the fine-tuning methods, read off the figures of one run.

Each target compares two figures measured in the same run (a ratio, so that the machine's
speed cancels out) with a limit, e.g. a CLoRA+SADE training step at most 0.70 × a full
fine-tuning step.  A target whose figures were not measured is ``n/a``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``; ``None`` when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def dig(results: Mapping[str, Any], *keys: str) -> Any:
    """``results[k0][k1]...``, or ``None`` as soon as a key is missing (section not run)."""
    node: Any = results
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def evaluate_targets(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The performance targets as ``{"target", "measured", "limit", "comparison", "status", "how"}`` rows.

    ``status`` is ``"met"``, ``"missed"`` or ``"n/a"`` (not measured in this run, or the
    comparison needs something not available here, e.g. pytorch3d).
    """
    step = lambda method: dig(results, "train", method, "step", "median_s")  # noqa: E731
    peak = lambda method: dig(results, "memory", method, "peak_mib")  # noqa: E731
    latency = lambda name: dig(results, "infer", name, "median_s")  # noqa: E731
    sade_time = dig(results, "sade", "gram_forward_backward", "median_s")
    flops_gram, flops_dense = dig(results, "sade", "flops_gram"), dig(results, "sade", "flops_dense")
    torch_tok = dig(results, "tokenizer", "torch", "median_s")
    p3d_tok = dig(results, "tokenizer", "pytorch3d", "median_s")

    rows = [
        (
            "CLoRA+SADE step / full fine-tuning step",
            ratio(step("clora+sade"), step("full")),
            "<=",
            0.70,
            "median step times, same run",
        ),
        (
            "CLoRA+SADE step / LoRA r=8 step",
            ratio(step("clora+sade"), step("lora")),
            "<=",
            1.10,
            "median step times, same run",
        ),
        (
            "CLoRA peak training memory / full",
            ratio(peak("clora"), peak("full")),
            "<=",
            0.60,
            "peak memory above the imported runtime, fresh process per method",
        ),
        (
            "merged CLoRA latency / plain backbone",
            ratio(latency("clora_merged"), latency("plain")),
            "<=",
            1.02,
            "median forward latency, same run",
        ),
        (
            "un-merged CLoRA latency / plain backbone",
            ratio(latency("clora_unmerged"), latency("plain")),
            "<=",
            1.15,
            "median forward latency, same run",
        ),
        ("SADE FLOPs dense / Gram", ratio(flops_dense, flops_gram), ">=", 1000.0, "FlopCounterMode, forward"),
        (
            "SADE value |Gram - dense| / |dense| (float32)",
            dig(results, "sade", "rel_diff_float32"),
            "<=",
            1e-6,
            "pcclora.sade_loss vs the dense reference",
        ),
        (
            "SADE (Gram, fwd+bwd) time / CLoRA step",
            ratio(sade_time, step("clora")),
            "<=",
            0.02,
            "median times, same run",
        ),
        (
            "tokenizer torch time / pytorch3d time",
            ratio(torch_tok, p3d_tok),
            "<=",
            1.0,
            "median FPS+kNN grouping time" + ("" if p3d_tok is not None else "; pytorch3d not importable here"),
        ),
    ]
    targets = []
    for name, measured, comparison, limit, how in rows:
        if measured is None:
            status = "n/a"
        elif comparison == "<=":
            status = "met" if measured <= limit else "missed"
        else:
            status = "met" if measured >= limit else "missed"
        targets.append(
            {
                "target": f"{name} {comparison} {limit:g}",
                "measured": measured,
                "limit": limit,
                "comparison": comparison,
                "status": status,
                "how": how,
            }
        )
    return targets
