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


def best_epoch_row(history: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The history row with the highest test OA (the earliest epoch among equals)."""
    return max(history, key=lambda row: (row["test_oa"], -row["epoch"]))


def build_summary(
    config: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    num_classes: int,
    counts: Mapping[str, Any],
    status: str,
    run_folder: str,
    vote: Any | None,
    wall_seconds: float,
) -> dict[str, Any]:
    """The content of ``summary.json``.

    Args:
        config: the run's resolved config.
        history: one row per finished epoch (``epoch``, ``test_oa``, ``test_macc``, ...).
        num_classes: outputs of the model's head.
        counts: :func:`pcclora.count_parameters` of the model.
        status: ``"finished"``, ``"interrupted"`` or why the run stopped.
        run_folder: the run folder, as a string.
        vote: the voting evaluation's :class:`~pcclora.engine.metrics.Accuracy`, or None.
        wall_seconds: time since the run started.
    """
    summary: dict[str, Any] = {
        "config": config["name"],
        "method": config["peft"]["method"],
        "backbone": config["backbone"]["name"],
        "backbone_checkpoint": config["backbone"]["checkpoint"],
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
    if history:
        best = best_epoch_row(history)
        last = history[-1]
        summary.update(
            best_epoch=best["epoch"],
            best_oa=best["test_oa"],
            best_macc=best["test_macc"],
            last_epoch=last["epoch"],
            last_oa=last["test_oa"],
            last_macc=last["test_macc"],
        )
    if vote is not None:
        summary.update(vote_oa=vote.overall, vote_macc=vote.mean_class, votes=config["training"]["vote"])
    return summary


def summary_line(summary: Mapping[str, Any], random_backbone: bool) -> str:
    """The one line printed at the end of a run with at least one finished epoch."""
    line = (
        f"summary ({summary['status']}): best OA {summary['best_oa']:.2f} (mAcc {summary['best_macc']:.2f}) at epoch "
        f"{summary['best_epoch']}; last OA {summary['last_oa']:.2f} (mAcc {summary['last_macc']:.2f}) at epoch "
        f"{summary['last_epoch']}"
    )
    if "vote_oa" in summary:
        line += f"; vote OA {summary['vote_oa']:.2f}"
    line += f"; {summary['wall_seconds']:.0f}s; files in {summary['run_folder']}"
    if random_backbone:
        line += " [backbone from RANDOM weights, no pre-trained checkpoint]"
    return line
