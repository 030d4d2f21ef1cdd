"""The human-readable report of a benchmark run: one table per section, then what it means for a user.

The performance targets of :mod:`.targets` stay in the ``--json`` output (``"targets"``) for the
toolkit's own regression tracking; the printed report ends with what a user can act on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pcclora.tables import render_table

from .targets import dig, ratio


def _fmt_ms(seconds: float | None) -> str:
    """Seconds as milliseconds with one decimal; ``-`` when not measured."""
    return "-" if seconds is None else f"{seconds * 1e3:.1f}"


def format_report(results: Mapping[str, Any]) -> str:
    """Human-readable tables of everything :func:`~pcclora.benchmark.sections.run_benchmark` measured.

    One table per section that ran (training step and memory share one), then
    :func:`choosing_a_method`.
    """
    s = results["settings"]
    env = results["environment"]
    model = s["model"]
    parts = [
        f"pcclora benchmark on {s['device']}"
        + (f" ({env['gpu']})" if "gpu" in env else "")
        + f", torch {env['torch']}, {env['threads']} threads, {env['cpu_count']} CPUs, load avg "
        f"{env.get('load_average_1m', float('nan')):.2f} -> {env.get('load_average_1m_end') or float('nan'):.2f}",
        ("Point-MAE part segmentation" if s.get("backbone") == "point_mae_seg" else "Point-MAE")
        + f" {model['depth']}x{model['trans_dim']}, N={s['num_points']}, G={model['num_group']}, "
        f"k={model['group_size']}, batch {s['batch_size']}; median of {s['repeats']} repeats after "
        f"{s['warmup']} warm-up, methods timed round-robin",
    ]
    train, memory = results.get("train"), results.get("memory")
    if train or memory:
        full_step = dig(results, "train", "full", "step", "median_s")
        full_peak = dig(results, "memory", "full", "peak_mib")
        rows = []
        for method in s["methods"]:
            t = dig(results, "train", method, "step", "median_s")
            lean = dig(results, "train", method, "lean") or {}
            m = dig(results, "memory", method) or {}
            ratio_t = ratio(t, full_step)
            ratio_m = ratio(m.get("peak_mib"), full_peak)
            rows.append(
                [
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
                ]
            )
        kind = next((v["kind"] for v in (memory or {}).values() if isinstance(v, Mapping)), "-")
        parts += [
            "",
            f"Training step (memory: {kind}, fresh process per method)",
            render_table(
                [
                    "method",
                    "trainable",
                    "step ms",
                    "x full",
                    "peak MiB",
                    "x full",
                    "above build MiB",
                    "absolute MiB",
                    "glibc default MiB",
                    "saved act MiB",
                    "optim state",
                    "embed grad",
                ],
                rows,
            ),
        ]
        parts.append(
            "peak MiB = peak above the imported runtime (weights + grads + optimizer + activations); "
            "above build = peak minus the resident set after model/optimizer build; absolute = the "
            "process's whole peak (runtime included); on CPU all with "
            "MALLOC_MMAP_THRESHOLD_=65536 (resident set follows live tensors), 'glibc default' = the "
            "same peak with glibc's default settings."
        )
    infer = results.get("infer")
    if infer:
        plain = infer["plain"]["median_s"]

        def cells(name: str) -> list[str]:
            if name not in infer:
                return ["-", "-"]
            return [_fmt_ms(infer[name]["median_s"]), f"{infer[name]['median_s'] / plain:.3f}"]

        rows = [["plain backbone", *cells("plain"), "-", "-", "-"]]
        for method in infer.get("methods", ["clora"]):
            diff = (infer.get("logit_diffs") or {}).get(method)
            rows.append(
                [
                    method,
                    *cells(f"{method}_unmerged"),
                    *cells(f"{method}_merged"),
                    "-" if diff is None else f"{diff:.1e}",
                ]
            )
        count = len(infer["plain"]["runs_s"])
        parts += [
            "",
            f"Inference forward (eval, no grad, tokenizer included; median of {count}; all models round-robin)",
            render_table(["model", "un-merged ms", "x plain", "merged ms", "x plain", "max |logit diff| merged"], rows),
            "merged '-': nothing of the method merges; full fine-tuning and the linear probe run the plain network.",
        ]
    tok = results.get("tokenizer")
    if tok:
        parts += ["", *_tokenizer_table(tok)]
    sade = results.get("sade")
    if sade:
        rows = [
            [
                "Gram (pcclora.sade_loss)",
                f"{sade['flops_gram']:,}",
                _fmt_ms(sade["gram_forward"]["median_s"]),
                _fmt_ms(sade["gram_forward_backward"]["median_s"]),
                f"{sade['value_gram']:.9g}",
            ],
            [
                "dense B_h = D_h Q_h U_h",
                f"{sade['flops_dense']:,}",
                _fmt_ms(sade["dense_forward"]["median_s"]),
                "-",
                f"{sade['value_dense']:.9g}",
            ],
        ]
        parts += [
            "",
            "SADE regulariser at the default shapes (random adapters)",
            render_table(["form", "FLOPs (fwd)", "fwd ms", "fwd+bwd ms", "value"], rows),
            f"dense FLOPs analytic {sade['flops_dense_analytic']:,}; relative difference float32 "
            f"{sade['rel_diff_float32']:.1e}, float64 {sade['rel_diff_float64']:.1e}",
        ]
    parts += choosing_a_method(results)
    return "\n".join(parts)


def choosing_a_method(results: Mapping[str, Any]) -> list[str]:
    """What the figures of this run mean for a user picking a method; only what was measured.

    A table of each method relative to full fine-tuning (trainable share, step time, peak
    memory), then one line each on inference (merge before deployment), SADE's cost and the
    tokenizer backends. Empty when the run measured none of it.
    """
    train, memory = results.get("train") or {}, results.get("memory") or {}
    methods = [m for m in results["settings"]["methods"] if m in train or m in memory]
    lines: list[str] = []
    full_step, full_peak = dig(results, "train", "full", "step", "median_s"), dig(results, "memory", "full", "peak_mib")
    full_params = dig(results, "train", "full", "lean", "trainable_params")
    if methods:
        rows = []
        for method in methods:
            step, peak = dig(train, method, "step", "median_s"), dig(memory, method, "peak_mib")
            params = dig(train, method, "lean", "trainable_params")
            rows.append(
                [
                    method,
                    "-" if params is None or not full_params else f"{100 * params / full_params:.2f}%",
                    _times(ratio(step, full_step)),
                    _times(ratio(peak, full_peak)),
                ]
            )
        lines += [
            "",
            "Choosing a method (this run, relative to full fine-tuning; lower is cheaper)",
            render_table(["method", "trains", "step time", "peak memory"], rows),
        ]
    plain = dig(results, "infer", "plain", "median_s")
    merged = ratio(dig(results, "infer", "clora_merged", "median_s"), plain)
    unmerged = ratio(dig(results, "infer", "clora_unmerged", "median_s"), plain)
    if merged is not None and unmerged is not None:
        lines.append(
            f"inference: merge the adapters before deployment (pcclora.merge_adapters): merged CLoRA runs at "
            f"{merged:.2f} x the plain backbone, un-merged at {unmerged:.2f} x"
        )
    sade_share = ratio(
        dig(results, "sade", "gram_forward_backward", "median_s"), dig(train, "clora", "step", "median_s")
    )
    if sade_share is not None:
        lines.append(
            f"SADE: {100 * sade_share:.1f}% of a CLoRA step at this size (peft.sade_weight=0 turns it off; "
            "its share shrinks as the model grows, since it never touches d x d matrices)"
        )
    torch_tok, p3d_tok = (
        dig(results, "tokenizer", "torch", "median_s"),
        dig(results, "tokenizer", "pytorch3d", "median_s"),
    )
    if torch_tok is not None and p3d_tok is not None:
        faster = "torch" if torch_tok <= p3d_tok else "pytorch3d"
        lines.append(
            f"tokenizer: {faster} is faster here ({_fmt_ms(torch_tok)} vs {_fmt_ms(p3d_tok)} ms); "
            "choose with PCCLORA_TOKENIZER_BACKEND=torch|pytorch3d"
        )
    return lines


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} x"


def _tokenizer_rows(figures: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """``{row label: (median ms, max ms)}`` of one pass of the tokenizer section."""
    rows: dict[str, tuple[str, str]] = {}
    pinned = figures.get("torch_threads") or {}
    for backend in ("torch", "pytorch3d"):
        entry = figures.get(backend)
        if entry is None:
            continue
        label = "torch (threads chosen per round)" if backend == "torch" and pinned else backend
        if entry["available"]:
            rows[label] = (_fmt_ms(entry["median_s"]), _fmt_ms(max(entry["runs_s"])))
        else:
            rows[label] = ("not importable", "-")
    for count, entry in pinned.items():
        label = f"torch, FPS loop on {count} thread{'s' if count != '1' else ''}"
        rows[label] = (_fmt_ms(entry["median_s"]), _fmt_ms(max(entry["runs_s"])))
    return rows


def _tokenizer_table(tok: Mapping[str, Any]) -> list[str]:
    """Title and table of the tokenizer section: quiet figures, and busy ones beside them."""
    quiet = _tokenizer_rows(tok)
    contended = tok.get("contended")
    if not contended:
        rows = [[label, *cells] for label, cells in quiet.items()]
        return ["Tokenizer (FPS + kNN grouping)", render_table(["backend", "median ms", "max ms"], rows)]
    busy = _tokenizer_rows(contended)
    count = contended["busy_processes"]
    rows = [[label, *cells, *busy.get(label, ("-", "-"))] for label, cells in quiet.items()]
    headers = ["backend", "quiet median ms", "quiet max ms", "busy median ms", "busy max ms"]
    return [
        f"Tokenizer (FPS + kNN grouping); busy = while {count} busy-loop "
        f"process{'es spin' if count > 1 else ' spins'} (one core each)",
        render_table(headers, rows),
    ]
