"""The summary of a run: best and last epoch side by side, voting, parameter counts, status.

Written as ``summary.json`` and printed as one line at the end of every run, finished or not.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import torch

from pcclora import __version__

#: The repository this package runs from, when it is a git checkout (for the commit id).
SOURCE_ROOT = Path(__file__).resolve().parents[2]


def git_commit(root: Path = SOURCE_ROOT) -> str | None:
    """The checkout's commit id (``+dirty`` with uncommitted changes), or None outside a checkout."""
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def provenance(wall_seconds: float) -> dict[str, Any]:
    """Where and with what a run ran: versions, git commit, start time (UTC), host, command."""
    started = datetime.now(timezone.utc) - timedelta(seconds=wall_seconds)
    return {
        "pcclora_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "git_commit": git_commit(),
        "started_utc": started.isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "command": " ".join(sys.argv),
    }


def evaluated_rows(history: Sequence[Mapping[str, Any]], key: str = "test_oa") -> list[Mapping[str, Any]]:
    """The rows of the epochs that were evaluated (``key`` is not None)."""
    return [row for row in history if row.get(key) is not None]


def best_epoch_row(history: Sequence[Mapping[str, Any]], key: str = "test_oa") -> Mapping[str, Any]:
    """The evaluated history row with the highest ``key`` (the earliest epoch among equals)."""
    return max(evaluated_rows(history, key), key=lambda row: (row[key], -row["epoch"]))


def build_summary(
    config: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    num_classes: int,
    counts: Mapping[str, Any],
    status: str,
    run_folder: str,
    vote: Mapping[str, float] | None,
    wall_seconds: float,
    metrics: Sequence[Any],
) -> dict[str, Any]:
    """The content of ``summary.json``.

    Args:
        config: the run's resolved config.
        history: one row per finished epoch (``epoch`` and the metrics' keys).
        num_classes: outputs of the model's head.
        counts: :func:`pcclora.count_parameters` of the model.
        status: ``"finished"``, ``"interrupted"`` or why the run stopped.
        run_folder: the run folder, as a string.
        vote: the voting evaluation's metrics (history keys), or None.
        wall_seconds: time since the run started.
        metrics: the task's :class:`~pcclora.engine.task.Metric` s, the first ranking the epochs;
            each gives ``best_<name>`` and ``last_<name>`` (and ``vote_<name>``), both of the
            best epoch's row and of the last epoch's row (None when the last epoch was not
            evaluated; ``last_evaluated_epoch`` then names the last one that was).
    """
    summary: dict[str, Any] = {
        "config": config["name"],
        "task": config["task"],
        "method": config["peft"]["method"],
        "backbone": config["backbone"]["name"],
        "backbone_checkpoint": config["backbone"]["checkpoint"],
        "backbone_pretrained": bool(config["backbone"].get("pretrained")),
        "dataset": config["dataset"]["name"],
        "seed": config["training"]["seed"],
        "status": status,
        "num_classes": num_classes,
        "epochs_run": len(history),
        "params_total": counts["total"],
        "params_trainable": counts["trainable"],
        "param_groups": dict(counts["groups"]),
        "wall_seconds": round(wall_seconds, 1),
        "run_folder": run_folder,
        "provenance": provenance(wall_seconds),
    }
    evaluated = evaluated_rows(history, metrics[0].key)
    if evaluated:
        best = best_epoch_row(history, metrics[0].key)
        last = history[-1]
        summary["best_epoch"] = best["epoch"]
        summary.update({f"best_{metric.name}": best[metric.key] for metric in metrics})
        summary["last_epoch"] = last["epoch"]
        summary.update({f"last_{metric.name}": last[metric.key] for metric in metrics})
        if evaluated[-1] is not last:
            summary["last_evaluated_epoch"] = evaluated[-1]["epoch"]
    if vote is not None:
        summary.update({f"vote_{metric.name}": vote[metric.key] for metric in metrics})
        summary["votes"] = config["training"]["vote"]
    return summary


def summary_line(summary: Mapping[str, Any], random_backbone: bool, metrics: Sequence[Any]) -> str:
    """The one line printed at the end of a run with at least one finished epoch."""
    first, others = metrics[0], metrics[1:]

    def figures(which: str) -> str:
        text = f"{which} {first.label} {summary[f'{which}_{first.name}']:.2f}"
        if others:
            text += " (" + ", ".join(f"{m.label} {summary[f'{which}_{m.name}']:.2f}" for m in others) + ")"
        return text

    if "best_epoch" not in summary:
        line = f"summary ({summary['status']}): {summary['epochs_run']} epoch(s) trained, none evaluated yet"
    elif summary[f"last_{first.name}"] is None:
        line = (
            f"summary ({summary['status']}): {figures('best')} at epoch {summary['best_epoch']}; "
            f"last epoch {summary['last_epoch']} not evaluated (the last evaluated: "
            f"{summary['last_evaluated_epoch']})"
        )
    else:
        line = (
            f"summary ({summary['status']}): {figures('best')} at epoch {summary['best_epoch']}; "
            f"{figures('last')} at epoch {summary['last_epoch']}"
        )
    if f"vote_{first.name}" in summary:
        line += f"; vote {first.label} {summary[f'vote_{first.name}']:.2f}"
    line += f"; {summary['wall_seconds']:.0f}s; files in {summary['run_folder']}"
    if random_backbone:
        line += " [backbone from RANDOM weights, no pre-trained checkpoint]"
    return line
