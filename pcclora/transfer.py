"""Transfer evidence: each fine-tuning method from pre-trained and from random weights, side by side.

:func:`run_transfer_bench` fine-tunes one config with every method of ``methods`` twice — from the
backbone's pre-trained weights (``backbone.pretrained: true`` or a ``backbone.checkpoint``) and from
random weights (the same network, seeded initialisation) — with one fixed budget of epochs and
otherwise identical settings, each run by :func:`pcclora.engine.finetune` into its own folder
``<output>/<method>-<init>-seed<seed>/``. A finished run is reused, an interrupted one resumed,
so the whole bench can be stopped and started again. The table has, per method: trainable
parameters, best and last test OA of each init (mean ± std over seeds when there are several),
and the difference pre-trained − random of the last OA.

Method settings: the config's learning rate for the adapter methods and the linear probe; the
official full fine-tuning learning rate 5e-4 for ``full`` (:data:`METHOD_OVERRIDES`). Nothing
else differs between runs.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backbones.errors import ConfigError
from pcclora.config import load_config
from pcclora.engine.checkpoint import load_run_for_resume
from pcclora.engine.files import write_text_atomic
from pcclora.engine.runner import finetune
from pcclora.peft import PEFT_METHODS
from pcclora.tables import render_table

#: The methods of the bench, in the table's order.
DEFAULT_METHODS = ("linear", "clora", "lora", "full")
#: The two initialisations.
INITS = ("pretrained", "random")
#: Per-method ``--set`` strings on top of the config (full fine-tuning at the official lr).
METHOD_OVERRIDES: dict[str, tuple[str, ...]] = {"full": ("optimizer.lr=0.0005",)}


@dataclass(frozen=True)
class BenchRun:
    """One fine-tuning run of the bench and its result."""

    method: str
    init: str
    seed: int
    folder: Path
    summary: dict[str, Any]


def _init_overrides(init: str, config: dict[str, Any]) -> list[str]:
    if init == "random":
        return ["backbone.pretrained=false", "backbone.checkpoint=null"]
    if not config["backbone"]["pretrained"] and not config["backbone"]["checkpoint"]:
        raise ConfigError(
            "the transfer bench needs pre-trained weights: set backbone.pretrained=true (shipped weights) or "
            "backbone.checkpoint=PATH in the config"
        )
    return []


def _run_one(cfg: str, overrides: list[str], folder: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Run (or reuse, or resume) one fine-tuning in ``folder``; its summary."""
    summary_path = folder / "summary.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        if summary.get("status") == "finished":
            log(f"{folder.name}: finished earlier, reused")
            return summary
    if (folder / "checkpoints" / "last.pth").is_file():
        config, last = load_run_for_resume(folder, [])
        if last["epoch"] < config["training"]["max_epoch"]:
            log(f"{folder.name}: resuming after epoch {last['epoch']}")
            return finetune(config, output=folder, resume=last)
    log(f"{folder.name}: starting")
    return finetune(load_config(cfg, overrides), output=folder, overwrite=folder.exists())


def run_transfer_bench(
    cfg: str,
    output: Path | str,
    methods: Sequence[str] = DEFAULT_METHODS,
    seeds: Sequence[int] = (0,),
    overrides: Sequence[str] = (),
    log: Callable[[str], None] = print,
) -> list[BenchRun]:
    """Fine-tune ``cfg`` with each method from pre-trained and from random weights; every run's summary.

    Args:
        cfg: a packaged config name or path (default of the tool: ``transfer_tiny_synthetic``).
        output: the bench folder (one sub-folder per run; ``transfer.csv`` and ``transfer.md``).
        methods: peft methods, in the table's order.
        seeds: ``training.seed`` of the runs (each method × init runs once per seed).
        overrides: ``--set`` strings for every run (e.g. ``training.max_epoch=9``, ``dataset.root=...``).

    Raises:
        ConfigError: an unknown method, no pre-trained weights in the config, or what a run refuses.
    """
    unknown = [method for method in methods if method not in PEFT_METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(PEFT_METHODS)}")
    base = load_config(cfg, list(overrides))  # checks the config and the overrides before anything runs
    if base["task"] != "classification":
        raise ConfigError(f"the transfer bench fine-tunes; config {cfg} has task: {base['task']}")
    output = Path(output)
    runs = []
    for seed in seeds:
        for method in methods:
            for init in INITS:
                folder = output / f"{method}-{init}-seed{seed}"
                run_overrides = [
                    *overrides,
                    f"peft.method={method}",
                    f"training.seed={seed}",
                    *METHOD_OVERRIDES.get(method, ()),
                    *_init_overrides(init, base),
                ]
                summary = _run_one(cfg, run_overrides, folder, log)
                if summary.get("status") != "finished":
                    raise ConfigError(
                        f"run {folder} ended with status {summary.get('status')!r}; start the bench again to resume it"
                    )
                runs.append(BenchRun(method, init, seed, folder, summary))
    return runs


def _figure(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def transfer_table(runs: Sequence[BenchRun]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the table: one row per method."""
    methods = list(dict.fromkeys(run.method for run in runs))
    seeds = sorted({run.seed for run in runs})
    header = [
        "method",
        "trainable",
        "pre-trained best OA",
        "pre-trained last OA",
        "random best OA",
        "random last OA",
        "last OA: pre-trained − random",
    ]
    rows = []
    for method in methods:
        by_init = {init: [run for run in runs if run.method == method and run.init == init] for init in INITS}
        best = {init: [run.summary["best_oa"] for run in by_init[init]] for init in INITS}
        last = {init: [run.summary["last_oa"] for run in by_init[init]] for init in INITS}
        gain = [p - r for p, r in zip(last["pretrained"], last["random"], strict=True)]
        trainable = by_init["pretrained"][0].summary["params_trainable"]
        rows.append(
            [
                method,
                f"{trainable:,}",
                _figure(best["pretrained"]),
                _figure(last["pretrained"]),
                _figure(best["random"]),
                _figure(last["random"]),
                ("+" if statistics.mean(gain) >= 0 else "") + _figure(gain),
            ]
        )
    if len(seeds) > 1:
        header[2:6] = [f"{name} (mean ± std, seeds {', '.join(map(str, seeds))})" for name in header[2:6]]
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """The table as GitHub Markdown."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_transfer_table(runs: Sequence[BenchRun], output: Path | str) -> str:
    """Write ``transfer.csv`` (one line per run) and ``transfer.md`` (the table); return the plain-text table."""
    output = Path(output)
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(
        ["method", "init", "seed", "params_trainable", "best_oa", "best_epoch", "last_oa", "last_epoch", "wall_seconds"]
    )
    for run in runs:
        s = run.summary
        writer.writerow(
            [run.method, run.init, run.seed, s["params_trainable"], round(s["best_oa"], 4), s["best_epoch"]]
            + [round(s["last_oa"], 4), s["last_epoch"], s["wall_seconds"]]
        )
    write_text_atomic(output / "transfer.csv", text.getvalue())
    header, rows = transfer_table(runs)
    write_text_atomic(output / "transfer.md", markdown_table(header, rows))
    return render_table(header, rows)
