"""Compare PEFT methods side by side: methods × seeds of one config, one table.

:func:`run_comparison` (``tools/compare.py``) fine-tunes every method with every seed through
:func:`pcclora.engine.finetune` — the same data, recipe (each method's packaged recipe merged
over the config, :func:`pcclora.config.method_recipe`, then the shared ``--set`` overrides),
seeds and evaluation — into ``<output>/<method>/seed<seed>/``, then measures in one process, side
by side, what the runs cannot: parameters and compute (:func:`pcclora.profiling.methods.profile_method`,
batch 1, the config's points) and the training-step time (methods timed round-robin) and peak
training memory (a fresh process per method) at the config's model and batch size
(:func:`pcclora.benchmark.run_benchmark`). It writes:

- ``comparison.csv``: one row per method, every figure;
- ``comparison.md``: the table, with the command, the settings and what the numbers mean;
- ``comparison.png``: last-epoch and best-epoch test OA (mean ± std over seeds) per method, and
  last OA against trainable parameters;
- ``measurements.json``: the measurements, reused by a later call with the same settings.

Resumable: a finished run (``summary.json`` with status ``finished``) is skipped, an interrupted
one is resumed from its ``last.pth``, a folder holding a run of another config is an error. A run
that stopped on NaN/Inf counts as done; the table marks it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backbones.errors import ConfigError, UnknownNameError, unknown_name_message
from pcclora.config import check_run_numbers, dump_config, load_config, size_overrides, with_absolute_paths
from pcclora.peft import METHODS, PEFT_METHODS

#: The files :func:`run_comparison` writes at the top of its output folder.
OUTPUT_FILES = ("comparison.csv", "comparison.md", "comparison.png", "measurements.json")
#: Columns of ``comparison.csv``, in order.
CSV_COLUMNS = (
    "method",
    "seeds",
    "runs_finished",
    "params_total",
    "params_trainable",
    "gmacs_conv_linear",
    "gmacs_with_attention",
    "gmacs_conv_linear_merged",
    "merge",
    "step_ms",
    "step_x_full",
    "peak_mib",
    "peak_x_full",
    "best_oa_mean",
    "best_oa_std",
    "last_oa_mean",
    "last_oa_std",
    "last_macc_mean",
    "status",
)


@dataclass
class ComparisonSettings:
    """What to compare and how.

    Attributes:
        config: a packaged config name or a YAML path.
        methods: PEFT methods, in table order.
        seeds: one run per method and seed.
        output: the comparison folder.
        overrides: ``--set`` strings applied to every method's config (after its recipe); keys
            of the ``peft`` block a method does not read are left out for it.
        data_root, device: as ``tools/finetune.py``.
        measure: measure step time and memory (else only parameters and compute).
        repeats, warmup, threads: of the timing (median over ``repeats`` steps).
        bench_batch_size: batch of the timing and memory measurement (default: the config's).
        command: the command line, quoted in ``comparison.md``.
    """

    config: str
    methods: Sequence[str]
    seeds: Sequence[int] = (0, 1, 2)
    output: Path | str = "runs/compare"
    overrides: Sequence[str] = ()
    data_root: str | None = None
    device: str | None = None
    measure: bool = True
    repeats: int = 5
    warmup: int = 1
    threads: int | None = None
    bench_batch_size: int | None = None
    command: str = ""
    log: Callable[[str], None] = field(default=print, repr=False)


def method_config(settings: ComparisonSettings, method: str | None, seed: int) -> dict[str, Any]:
    """The resolved config of one run: the config, the method's recipe, the overrides, the seed
    (``method=None``: the config without any recipe)."""
    config = load_config(settings.config, list(settings.overrides), method=method, lenient_peft=True)
    if settings.data_root is not None:
        config["dataset"]["root"] = settings.data_root
    if settings.device is not None:
        config["training"]["device"] = settings.device
    config["training"]["seed"] = seed
    check_run_numbers(config)
    return with_absolute_paths(config)


def check_settings(settings: ComparisonSettings) -> dict[tuple[str, int], dict[str, Any]]:
    """Check everything before the first run; return the config of every (method, seed).

    Raises:
        UnknownNameError: an unknown method.
        ConfigError: no methods or seeds, a method or seed given twice, a negative seed or
            repeats below 1, a config that does not resolve for some method.
    """
    methods, seeds = list(settings.methods), list(settings.seeds)
    if not methods or not seeds:
        raise ConfigError("give at least one method (--methods) and one seed (--seeds)")
    for method in methods:
        if method not in PEFT_METHODS:
            raise UnknownNameError(unknown_name_message("peft method", method, PEFT_METHODS, cutoff=0.6))
    for what, values in (("method", methods), ("seed", seeds)):
        twice = sorted({v for v in values if values.count(v) > 1}, key=str)
        if twice:
            raise ConfigError(f"{what}(s) {twice} given twice; list each once")
    if any(not isinstance(seed, int) or seed < 0 for seed in seeds):
        raise ConfigError(f"seeds must be integers >= 0, got {seeds}")
    if settings.repeats < 1 or settings.warmup < 0:
        raise ConfigError(f"need --repeats >= 1 and --warmup >= 0, got {settings.repeats} and {settings.warmup}")
    configs = {}
    for method in methods:
        for seed in seeds:
            try:
                configs[method, seed] = method_config(settings, method, seed)
            except ConfigError as error:
                raise type(error)(f"{error} (in the config of method {method!r})") from None
    task = next(iter(configs.values()))["task"]
    if task != "classification":
        raise ConfigError(
            f"the comparison table covers classification (OA / mAcc); {settings.config} is a {task} config. Run "
            "tools/finetune.py once per method (--method M) and read each run's summary.json, and "
            "tools/profile_flops.py / tools/benchmark.py --task segmentation for the costs"
        )
    return configs


# --------------------------------------------------------------------------------------------
# the runs
# --------------------------------------------------------------------------------------------


def run_folder(output: Path, method: str, seed: int) -> Path:
    """Where the run of ``method`` with ``seed`` lives."""
    return output / method / f"seed{seed}"


def _saved_summary(folder: Path) -> dict[str, Any] | None:
    path = folder / "summary.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(f"{path} cannot be read ({error}); remove the folder {folder} to run it again") from None


def _check_same_config(folder: Path, config: dict[str, Any]) -> None:
    """A run folder must hold a run of exactly this config (else its results are not this comparison's)."""
    import yaml

    path = folder / "config.yaml"
    if not path.is_file():
        return
    saved = yaml.safe_load(path.read_text())
    if saved == yaml.safe_load(dump_config(config)):
        return
    differences = sorted(_differences(saved, yaml.safe_load(dump_config(config))))
    raise ConfigError(
        f"{folder} holds a run of another config (differs in {', '.join(differences[:6])}"
        f"{' …' if len(differences) > 6 else ''}); give another --output, or remove that folder to run it again"
    )


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = dict.fromkeys([*a, *b])
        return [d for key in keys for d in _differences(a.get(key), b.get(key), f"{prefix}{key}.")]
    return [] if a == b else [prefix.rstrip(".")]


def run_one(folder: Path, config: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """Run (or resume, or skip) one method × seed; return its summary."""
    from pcclora.engine import finetune, load_run_for_resume

    summary = _saved_summary(folder)
    _check_same_config(folder, config)
    if summary is not None and summary.get("status") != "interrupted":
        log(f"[compare] {folder}: done ({summary.get('status')}), skipped")
        return summary
    if (folder / "checkpoints" / "last.pth").is_file():
        log(f"[compare] {folder}: resuming")
        saved, resume = load_run_for_resume(folder, [])
        return finetune(saved, output=folder, resume=resume)
    log(f"[compare] {folder}: running")
    return finetune(config, output=folder, overwrite=(folder / "config.yaml").is_file())


# --------------------------------------------------------------------------------------------
# measurements
# --------------------------------------------------------------------------------------------


def measure(
    settings: ComparisonSettings, configs: dict[str, dict[str, Any]], num_classes: int, base: dict[str, Any]
) -> dict[str, Any]:
    """Parameters, compute and (with ``settings.measure``) step time and memory of every method, in one run.

    ``base`` is the config without any method's recipe: its backbone sizes are every method's in
    the timing (a recipe's drop-path rate changes no step cost worth measuring).
    """
    import torch

    from backbones import backbone_defaults
    from pcclora.benchmark import BenchmarkSettings, run_benchmark
    from pcclora.profiling.methods import build_backbone, profile_method

    first = base
    device = torch.device("cpu")
    backbone = build_backbone(first)
    figures: dict[str, Any] = {"methods": {}}
    for method, config in configs.items():
        profile = profile_method(backbone, config, method, device)
        figures["methods"][method] = {
            "params_total": profile["params_total"],
            "params_trainable": profile["params_trainable"],
            "macs_conv_linear": profile["macs_conv_linear"],
            "macs_with_attention": profile["macs_with_attention"],
            "macs_conv_linear_merged": (profile["merged"] or {}).get("macs_conv_linear"),
        }
    if settings.measure:
        backbone_cfg = first["backbone"]
        bench = BenchmarkSettings(
            device="cuda" if first["training"]["device"].startswith("cuda") and torch.cuda.is_available() else "cpu",
            batch_size=settings.bench_batch_size or first["training"]["batch_size"],
            num_points=first["dataset"]["npoints"],
            repeats=settings.repeats,
            warmup=settings.warmup,
            methods=tuple(configs),
            sections=("train", "memory"),
            model={**backbone_defaults(backbone_cfg["name"]), **size_overrides(backbone_cfg)},
            num_classes=num_classes,
            threads=settings.threads,
            backbone=backbone_cfg["name"],
            peft={method: config["peft"] for method, config in configs.items()},
        )
        results = run_benchmark(bench, progress=lambda section: settings.log(f"[compare] measuring: {section}"))
        figures["benchmark_settings"] = results["settings"]
        figures["environment"] = results["environment"]
        for method in configs:
            figures["methods"][method]["step_s"] = results["train"][method]["step"]["median_s"]
            figures["methods"][method]["peak_mib"] = results["memory"][method]["peak_mib"]
    return figures


def _measurement_key(settings: ComparisonSettings, configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "methods": list(configs),
        "peft": {method: config["peft"] for method, config in configs.items()},
        "backbone": next(iter(configs.values()))["backbone"],
        "npoints": next(iter(configs.values()))["dataset"]["npoints"],
        "measure": settings.measure,
        "repeats": settings.repeats,
        "warmup": settings.warmup,
        "threads": settings.threads,
        "bench_batch_size": settings.bench_batch_size,
    }


# --------------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------------


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def comparison_rows(
    methods: Sequence[str], summaries: dict[tuple[str, int], dict[str, Any]], figures: dict[str, Any]
) -> list[dict[str, Any]]:
    """One dict per method with the :data:`CSV_COLUMNS`."""
    full = figures["methods"].get("full", {})
    rows = []
    for method in methods:
        runs = [summary for (name, _), summary in summaries.items() if name == method]
        done = [run for run in runs if "last_oa" in run]
        statuses = sorted({run.get("status", "?") for run in runs})
        best_mean, best_std = _mean_std([run["best_oa"] for run in done])
        last_mean, last_std = _mean_std([run["last_oa"] for run in done])
        macc_mean, _ = _mean_std([run["last_macc"] for run in done])
        measured = figures["methods"][method]
        step, peak = measured.get("step_s"), measured.get("peak_mib")
        rows.append(
            {
                "method": method,
                "seeds": len(runs),
                "runs_finished": sum(run.get("status") == "finished" for run in runs),
                "params_total": measured["params_total"],
                "params_trainable": measured["params_trainable"],
                "gmacs_conv_linear": measured["macs_conv_linear"] / 1e9,
                "gmacs_with_attention": measured["macs_with_attention"] / 1e9,
                "gmacs_conv_linear_merged": None
                if measured["macs_conv_linear_merged"] is None
                else measured["macs_conv_linear_merged"] / 1e9,
                "merge": METHODS[method].merge,
                "step_ms": None if step is None else step * 1e3,
                "step_x_full": None if step is None or not full.get("step_s") else step / full["step_s"],
                "peak_mib": peak,
                "peak_x_full": None if peak is None or not full.get("peak_mib") else peak / full["peak_mib"],
                "best_oa_mean": best_mean,
                "best_oa_std": best_std,
                "last_oa_mean": last_mean,
                "last_oa_std": last_std,
                "last_macc_mean": macc_mean,
                "status": ", ".join(statuses),
            }
        )
    return rows


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def csv_text(rows: list[dict[str, Any]]) -> str:
    """``comparison.csv``: every column, numbers unrounded but for 6 decimals."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({key: round(v, 6) if isinstance(v, float) else v for key, v in row.items()})
    return text.getvalue()


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The side-by-side table in Markdown."""
    header = (
        "| method | trainable | GMACs (conv+linear) | merged GMACs | step ms | × full | peak MiB | × full "
        "| best OA | last OA | runs |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        best = "–" if row["best_oa_mean"] is None else f"{row['best_oa_mean']:.2f} ± {row['best_oa_std']:.2f}"
        last = "–" if row["last_oa_mean"] is None else f"{row['last_oa_mean']:.2f} ± {row['last_oa_std']:.2f}"
        merged = _fmt(row["gmacs_conv_linear_merged"], 3) if row["merge"] in ("full", "partial") else "–"
        runs = f"{row['runs_finished']}/{row['seeds']}"
        if row["status"] != "finished":
            runs += f" ({row['status']})"
        lines.append(
            f"| {row['method']} | {row['params_trainable']:,} | {_fmt(row['gmacs_conv_linear'], 3)} | {merged} | "
            f"{_fmt(row['step_ms'], 0)} | {_fmt(row['step_x_full'])} | {_fmt(row['peak_mib'], 0)} | "
            f"{_fmt(row['peak_x_full'])} | {best} | {last} | {runs} |"
        )
    return "\n".join(lines)


def markdown_report(
    rows: list[dict[str, Any]], settings: ComparisonSettings, config: dict[str, Any], figures: dict[str, Any]
) -> str:
    """``comparison.md``: the command, the setting, the table and how to read it."""
    backbone = config["backbone"]
    sizes = ", ".join(f"{k} {v}" for k, v in size_overrides(backbone).items()) or "default sizes"
    bench = figures.get("benchmark_settings") or {}
    env = figures.get("environment") or {}
    lines = [
        f"# Comparison: {config['name']}, {len(rows)} methods × {len(settings.seeds)} seeds",
        "",
        f"Command: `{settings.command}`" if settings.command else "",
        "",
        f"- backbone `{backbone['name']}` ({sizes}), weights: {_weights_source(backbone)}",
        f"- data `{config['dataset']['name']}` ({config['dataset'].get('variant')}), {config['dataset']['npoints']} "
        f"points, epochs 0..{config['training']['max_epoch']}, batch {config['training']['batch_size']}, seeds "
        f"{', '.join(map(str, settings.seeds))}; each method with its packaged recipe (docs/recipes.md)",
        "- GMACs: batch 1, the config's points, conv+linear multiply-adds (the published tables' \"GFLOPs\"); "
        "merged: after `merge_adapters` where something merges",
    ]
    if bench:
        lines.append(
            f"- step time (median of {bench['repeats']} after {bench['warmup']} warm-up, methods round-robin) and "
            f"peak training memory (fresh process per method) at batch {bench['batch_size']} on {bench['device']}, "
            f"torch {env.get('torch')}, {env.get('threads')} threads, load average "
            f"{env.get('load_average_1m', float('nan')):.2f} → {env.get('load_average_1m_end') or float('nan'):.2f}"
        )
    lines += [
        "- OA: test overall accuracy (%) of the best and of the last epoch, mean ± standard deviation over seeds",
        "",
        markdown_table(rows),
        "",
        "The best-epoch figures are chosen on the test set (the datasets have no validation split), as the published "
        "accuracies of this field are; the last-epoch figures are not. Published accuracies are best-epoch-on-test "
        "figures from different recipes (augmentation, epochs, seeds, voting) and are not comparable with these rows. "
        "On synthetic data or a random backbone the accuracies say nothing about real accuracy.",
    ]
    return "\n".join(line for line in lines if line is not None)


def plot_comparison(rows: list[dict[str, Any]], path: Path) -> None:
    """Best and last OA (mean ± std) per method, and last OA against trainable parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pcclora.engine.files import atomic_write

    names = [row["method"] for row in rows]
    figure, (ax_bar, ax_scatter) = plt.subplots(1, 2, figsize=(14, 4.5))
    positions = range(len(rows))
    for offset, key, label in ((-0.2, "best", "best epoch"), (0.2, "last", "last epoch")):
        means = [row[f"{key}_oa_mean"] or 0.0 for row in rows]
        stds = [row[f"{key}_oa_std"] or 0.0 for row in rows]
        ax_bar.bar([p + offset for p in positions], means, width=0.4, yerr=stds, capsize=3, label=label)
    ax_bar.set_xticks(list(positions), labels=names, rotation=45, ha="right")
    ax_bar.set_ylabel("test OA (%)")
    ax_bar.legend()
    for row in rows:
        if row["last_oa_mean"] is not None:
            ax_scatter.errorbar(
                row["params_trainable"], row["last_oa_mean"], yerr=row["last_oa_std"], fmt="o", capsize=3
            )
            ax_scatter.annotate(row["method"], (row["params_trainable"], row["last_oa_mean"]), fontsize=8)
    ax_scatter.set_xscale("log")
    ax_scatter.set_xlabel("trainable parameters")
    ax_scatter.set_ylabel("last-epoch test OA (%)")
    figure.tight_layout()
    try:
        atomic_write(path, lambda stream: figure.savefig(stream, format="png", dpi=100))
    finally:
        plt.close(figure)


# --------------------------------------------------------------------------------------------
# the whole comparison
# --------------------------------------------------------------------------------------------


def run_comparison(settings: ComparisonSettings) -> list[dict[str, Any]]:
    """Run (or resume) every method × seed, measure, and write the comparison files; return the rows.

    Raises:
        UnknownNameError, ConfigError: before anything runs (see :func:`check_settings`), or a run
            folder holding a run of another config.
        DataError, CheckpointError, NonFiniteError: from the runs (a non-finite run is recorded
            and the comparison goes on).
    """
    from backbones.errors import NonFiniteError
    from pcclora.engine.files import write_text_atomic
    from pcclora.engine.run_folder import check_folder_path

    configs = check_settings(settings)
    output = Path(settings.output)
    check_folder_path(output, "--output")
    summaries: dict[tuple[str, int], dict[str, Any]] = {}
    for (method, seed), config in configs.items():
        folder = run_folder(output, method, seed)
        try:
            summaries[method, seed] = run_one(folder, config, settings.log)
        except NonFiniteError as error:
            settings.log(f"[compare] {folder}: {error}")
            summaries[method, seed] = _saved_summary(folder) or {"status": "stopped: non-finite"}
    methods = list(settings.methods)
    first_seed = list(settings.seeds)[0]
    per_method = {method: configs[method, first_seed] for method in methods}
    num_classes = next(iter(summaries.values())).get("num_classes") or 15
    key = _measurement_key(settings, per_method)
    cache = output / "measurements.json"
    figures = None
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if saved.get("key") == json.loads(json.dumps(key)):
            figures = saved["figures"]
            settings.log(f"[compare] reusing the measurements in {cache}")
    if figures is None:
        figures = measure(settings, per_method, num_classes, method_config(settings, None, first_seed))
        write_text_atomic(cache, json.dumps({"key": key, "figures": figures}, indent=2))
    rows = comparison_rows(methods, summaries, figures)
    base = configs[methods[0], first_seed]
    write_text_atomic(output / "comparison.csv", csv_text(rows))
    write_text_atomic(output / "comparison.md", markdown_report(rows, settings, base, figures) + "\n")
    plot_comparison(rows, output / "comparison.png")
    settings.log(markdown_table(rows))
    settings.log(f"[compare] wrote {', '.join(str(output / name) for name in OUTPUT_FILES)}")
    return rows


def _weights_source(backbone: dict[str, Any]) -> str:
    """Where a comparison's backbone weights come from, for the table's header."""
    if backbone.get("checkpoint"):
        return f"checkpoint {backbone['checkpoint']}"
    if backbone.get("pretrained"):
        return "the pre-trained weights shipped with pcclora"
    return "none (random weights)"
