"""Plain-text tables of the profiler's figures (what ``tools/profile_flops.py`` prints)."""

from __future__ import annotations

from typing import Any

from pcclora.tables import render_table

from .published import PUBLISHED_SETTINGS, published_rows

_COLUMNS = ("method", "model", "params", "trainable", "conv+linear GMACs", "GMACs w/ attn (fvcore)", "GFLOPs")
_DASH = "–"


def _millions(count: int) -> str:
    return f"{count / 1e6:.3f}M"


def _billions(count: int, digits: int = 3) -> str:
    return f"{count / 1e9:.{digits}f}"


def compute_table(profiles: list[dict[str, Any]], published: bool = True, backbone: str = "point_mae") -> str:
    """One row per method (training-time model), one per merged model, then the published rows
    of ``backbone`` (none when it has none)."""
    rows: list[tuple[str, ...]] = []
    for p in profiles:
        rows.append(
            (
                p["method"],
                "train",
                _millions(p["params_total"]),
                _millions(p["params_trainable"]),
                _billions(p["macs_conv_linear"]),
                _billions(p["macs_with_attention"]),
                _billions(p["flops"]),
            )
        )
        merged = p["merged"]
        if merged is not None:
            rows.append(
                (
                    p["method"],
                    "merged",
                    _millions(merged["params_total"]),
                    _DASH,
                    _billions(merged["macs_conv_linear"]),
                    _billions(merged["macs_with_attention"]),
                    _billions(merged["flops"]),
                )
            )
    separators: set[int] = set()
    shown = published_rows(backbone) if published else ()
    if shown:
        separators.add(len(rows))
        for row in shown:
            macs = _DASH if row.macs_conv_linear is None else _billions(row.macs_conv_linear, 2)
            trainable = row.params_trainable / 1e6
            count = f"{trainable:.2f}M" if row.params_trainable % 100_000 else f"{trainable:.1f}M"
            rows.append((row.method, "published", _DASH, count, macs, _DASH, _DASH))
    table = render_table(_COLUMNS, rows, left_columns=2, header_rule=False, rules_before=separators)
    if shown:
        sources = "; ".join(dict.fromkeys(row.source for row in shown if row.source))
        table += (
            f"\npublished: {PUBLISHED_SETTINGS.get(backbone, backbone)} (docs/published.md); "
            'their "GFLOPs" are conv+linear MACs'
        )
        if sources:
            table += f"\nsources: {sources}"
    return table


def breakdown_lines(profiles: list[dict[str, Any]]) -> str:
    """The trainable parameters of each method by group (groups with none left out)."""
    lines = ["trainable parameters by group:"]
    for p in profiles:
        groups = {k: v for k, v in p["breakdown"].items() if k != "frozen" and v}
        parts = " + ".join(f"{name} {count:,}" for name, count in groups.items()) or "none"
        lines.append(f"  {p['method']:<13} {parts} = {p['params_trainable']:,}")
    return "\n".join(lines)


def tokenizer_line(estimate: dict[str, int]) -> str:
    """The analytic FPS + kNN figure with its formula."""
    n, g, k = estimate["npoints"], estimate["num_group"], estimate["group_size"]
    return (
        f"FPS + kNN tokenizer (analytic, not in the figures above): {estimate['flops'] / 1e9:.4f} GFLOPs "
        f"= FPS 10·(G−1)·N + kNN G·N·(9 + ⌈log2 k⌉) + centring 3·G·k, with N={n}, G={g}, k={k}"
    )


def latency_table(rows: list[dict[str, Any]], device: str, warmup: int, repeats: int, max_seconds: float) -> str:
    """Median latency (with the number of timed passes) and throughput per network and batch size."""
    batch_sizes = [r["batch_size"] for r in rows[0]["results"]]
    header = ["network", "used by"]
    for b in batch_sizes:
        header += [f"batch {b} ms (passes)", f"batch {b} samples/s"]
    table: list[tuple[str, ...]] = []
    for row in rows:
        cells = [row["network"], ", ".join(row["used_by"])]
        for result in row["results"]:
            cells += [f"{result['latency_ms']:.1f} ({result['repeats']})", f"{result['throughput']:.1f}"]
        table.append(tuple(cells))
    title = (
        f"latency on {device}, random clouds: {warmup} warm-up pass(es), then the median of up to {repeats} "
        f"timed passes per batch size (fewer once {max_seconds:g} s are spent):"
    )
    return title + "\n" + render_table(header, table, left_columns=2, header_rule=False)
