"""The run folder: resolved config, console/log file, metrics.csv, summary.json, plots, TensorBoard.

Only the process that owns the folder (rank 0 under DDP) writes; the others get a
:class:`RunFolder` with ``active=False`` whose methods do nothing.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from backbones.errors import ConfigError
from pcclora.config import dump_config

METRIC_COLUMNS = (
    "epoch",
    "lr",
    "train_loss",
    "train_ce",
    "train_sade",
    "train_acc",
    "test_oa",
    "test_macc",
    "epoch_seconds",
)


class RunFolder:
    """Files of one fine-tuning run under ``root``."""

    def __init__(self, root: Path | str, active: bool = True, use_tensorboard: bool = True) -> None:
        self.root = Path(root)
        self.active = active
        self.checkpoints = self.root / "checkpoints"
        self._writer = None
        if active:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            if use_tensorboard:
                self._writer = _tensorboard_writer(self.root / "tensorboard")

    @property
    def last_checkpoint(self) -> Path:
        """``checkpoints/last.pth``: the latest finished epoch (what --resume reads)."""
        return self.checkpoints / "last.pth"

    @property
    def best_checkpoint(self) -> Path:
        """``checkpoints/best.pth``: the epoch with the highest test OA so far."""
        return self.checkpoints / "best.pth"

    def log(self, message: str, echo: bool = True) -> None:
        """Append to ``log.txt`` and, with ``echo``, print to the console."""
        if not self.active:
            return
        if echo:
            print(message, flush=True)
        with open(self.root / "log.txt", "a") as stream:
            stream.write(message + "\n")

    def write_config(self, config: Mapping[str, Any]) -> None:
        """Write the resolved config as ``config.yaml``."""
        if self.active:
            (self.root / "config.yaml").write_text(dump_config(config))

    def write_metrics(self, history: Sequence[Mapping[str, Any]]) -> None:
        """Rewrite ``metrics.csv`` from the whole history (so a resumed run has one clean file)."""
        if not self.active:
            return
        with open(self.root / "metrics.csv", "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=METRIC_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for row in history:
                writer.writerow({key: _rounded(row[key]) for key in METRIC_COLUMNS})

    def add_scalars(self, row: Mapping[str, Any]) -> None:
        """One epoch's figures to TensorBoard (when installed)."""
        if self._writer is None:
            return
        for key in METRIC_COLUMNS[1:]:
            self._writer.add_scalar(key, row[key], row["epoch"])
        self._writer.flush()

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """Write ``summary.json``."""
        if self.active:
            (self.root / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    def close(self) -> None:
        """Flush and close the TensorBoard writer (if any)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def default_output(config: Mapping[str, Any]) -> Path:
    """``runs/<config name>/<UTC time>-seed<seed>``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / config["name"] / f"{stamp}-seed{config['training']['seed']}"


def check_folder_path(path: Path | str, option: str) -> None:
    """Fail before any work when ``path`` cannot become a folder because a file is in the way.

    Raises:
        ConfigError: ``path`` or one of its parents is an existing file.
    """
    _check_no_file_in_the_way(Path(path), (Path(path), *Path(path).parents), option)


def _check_no_file_in_the_way(path: Path, folders: Sequence[Path], option: str) -> None:
    existing = next(folder for folder in folders if folder.exists())
    if not existing.is_dir():
        raise ConfigError(f"{option} {path}: {existing} is a file, not a folder; choose another path")


def check_export_path(path: Path | str) -> None:
    """Fail before any work when ``--export PATH`` cannot be written (a file there is replaced).

    Raises:
        ConfigError: ``path`` is a directory, or a file is in the way of its folder.
    """
    if Path(path).is_dir():
        raise ConfigError(
            f"--export {path} is a folder; give the path of the file to write, e.g. {Path(path) / 'model_merged.pth'}"
        )
    _check_no_file_in_the_way(Path(path), Path(path).parents, "--export")


def _rounded(value: Any) -> Any:
    return round(value, 6) if isinstance(value, float) else value


def _tensorboard_writer(folder: Path) -> Any:
    """A SummaryWriter when tensorboard is installed, else None (it is optional)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    try:
        return SummaryWriter(log_dir=str(folder))
    except Exception as error:  # a broken tensorboard install must not stop training
        print(f"TensorBoard disabled: {error}", file=sys.stderr)
        return None
