"""The run folder: its files, the rules for reusing one, and the lock a run holds on it.

Files: resolved ``config.yaml``, ``log.txt``, ``metrics.csv``, ``summary.json``, the plots,
``checkpoints/{last,best}.pth``, TensorBoard events. All but the appended ``log.txt`` are
written atomically (:mod:`pcclora.engine.files`).

Rules, checked before anything is written (:func:`claim_run_folder`):

- a new run needs a folder that holds no earlier run (no file of :data:`RUN_FILES`, no
  ``checkpoints/``); ``--resume`` continues that run; ``--overwrite`` removes its files first;
- one run at a time: a run holds ``<folder>/.lock`` from its first check to its end (an
  ``fcntl.flock``, which the OS releases when the process dies however it dies; where ``fcntl``
  does not exist, a file created exclusively, which a killed run leaves behind). A second run,
  also a ``--resume``, fails at once naming the folder and the process that holds it.

Only the process that owns the folder (rank 0 under DDP) writes; the others get a
:class:`RunFolder` with ``active=False`` whose methods do nothing.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from backbones.errors import ConfigError
from pcclora.config import dump_config
from pcclora.engine.files import remove_stale_temporaries, write_text_atomic

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

#: Files a run writes at the top of its folder (an earlier run's files, for --overwrite).
RUN_FILES = (
    "config.yaml",
    "log.txt",
    "metrics.csv",
    "summary.json",
    "curves.png",
    "confusion.png",
    "model_merged.pth",
    "model_pretrained.pth",
)
#: Sub-folders a run writes.
RUN_FOLDERS = ("checkpoints", "tensorboard")
#: Files of ``checkpoints/``.
CHECKPOINT_FILES = ("last.pth", "best.pth")
#: The lock file a running run holds.
LOCK_FILE = ".lock"


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
        """Write the resolved config as ``config.yaml`` (atomically)."""
        if self.active:
            write_text_atomic(self.root / "config.yaml", dump_config(config))

    def write_metrics(self, history: Sequence[Mapping[str, Any]]) -> None:
        """Rewrite ``metrics.csv`` from the whole history, atomically (a resumed run has one clean file)."""
        if not self.active:
            return
        columns = metric_columns(history)
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in history:
            writer.writerow({key: _rounded(row.get(key, "")) for key in columns})
        write_text_atomic(self.root / "metrics.csv", text.getvalue())

    def add_scalars(self, row: Mapping[str, Any]) -> None:
        """One epoch's figures to TensorBoard (when installed)."""
        if self._writer is None:
            return
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self._writer.add_scalar(key, value, row["epoch"])
        self._writer.flush()

    def write_summary(self, summary: Mapping[str, Any]) -> None:
        """Write ``summary.json`` (atomically)."""
        if self.active:
            write_text_atomic(self.root / "summary.json", json.dumps(summary, indent=2) + "\n")

    def close(self) -> None:
        """Flush and close the TensorBoard writer (if any)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def default_output(config: Mapping[str, Any]) -> Path:
    """``runs/<config name>/<UTC time>-seed<seed>`` (``-2``, ``-3``, ... appended when it exists)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / config["name"] / f"{stamp}-seed{config['training']['seed']}"
    path, number = base, 1
    while path.exists():
        number += 1
        path = base.with_name(f"{base.name}-{number}")
    return path


def earlier_run_files(root: Path) -> list[str]:
    """The names of the files and folders an earlier run left in ``root`` (empty for a fresh folder)."""
    return [name for name in (*RUN_FILES, *RUN_FOLDERS) if (root / name).exists()]


def check_new_run_folder(root: Path, overwrite: bool) -> list[str]:
    """Refuse to start a new run in a folder that holds an earlier run, unless ``overwrite``.

    Returns:
        The earlier run's files that ``overwrite`` will remove (empty for a fresh folder).

    Raises:
        ConfigError: ``root`` holds an earlier run and ``overwrite`` is false.
    """
    found = earlier_run_files(root)
    if found and not overwrite:
        raise ConfigError(
            f"--output {root} already holds a run ({', '.join(found)}); continue it with --resume, start it "
            "again with --overwrite (removes that run's files), or choose another --output"
        )
    return found


def remove_earlier_run(root: Path) -> None:
    """Delete the files and folders of :func:`earlier_run_files` (other files in ``root`` stay)."""
    for name in earlier_run_files(root):
        target = root / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()


def remove_stale_run_temporaries(root: Path) -> list[Path]:
    """Delete the temporary files interrupted writes left in ``root`` and ``root/checkpoints``."""
    return remove_stale_temporaries(root, RUN_FILES) + remove_stale_temporaries(root / "checkpoints", CHECKPOINT_FILES)


class RunFolderLock:
    """The exclusive lock of one run folder: ``<root>/.lock`` holding the owner's process id.

    ``fcntl.flock`` where it exists: the OS releases it when the process ends, also on SIGKILL,
    so a killed run never blocks the next one. The file is removed on :meth:`release` (while
    still locked; :meth:`acquire` checks that it locked the file that is at the path). Without
    ``fcntl`` the file is created exclusively; a killed run leaves it, and the message says to
    delete it.
    """

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.path = self.root / LOCK_FILE
        self._handle: int | None = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self) -> RunFolderLock:
        """Take the lock (``root`` must exist).

        Raises:
            ConfigError: another process holds it (names the folder and that process).
        """
        if self._handle is not None:
            return self
        if fcntl is None:
            self._acquire_exclusive_file()
            return self
        while True:
            handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = _read_pid(handle)
                os.close(handle)
                raise ConfigError(self._held_message(holder, stale_hint=False)) from None
            try:
                current = os.stat(self.path)
                locked = os.fstat(handle)
                same_file = (current.st_dev, current.st_ino) == (locked.st_dev, locked.st_ino)
            except FileNotFoundError:
                same_file = False
            if same_file:
                break
            os.close(handle)  # the holder released (and removed) it meanwhile: lock the new file
        os.ftruncate(handle, 0)
        os.write(handle, f"{os.getpid()}\n".encode())
        self._handle = handle
        return self

    def _acquire_exclusive_file(self) -> None:
        try:
            handle = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                holder = self.path.read_text().strip() or None
            except OSError:
                holder = None
            raise ConfigError(self._held_message(holder, stale_hint=True)) from None
        os.write(handle, f"{os.getpid()}\n".encode())
        self._handle = handle

    def _held_message(self, holder: str | None, stale_hint: bool) -> str:
        who = f"process {holder}" if holder else "another process"
        message = (
            f"run folder {self.root} is in use by {who} (it holds {self.path}); wait until that run ends or "
            "stop it, or choose another --output"
        )
        if stale_hint:
            message += f"; if no run uses the folder any more (a killed run leaves the lock behind), delete {self.path}"
        return message

    def release(self) -> None:
        """Remove the lock file and release the lock (nothing when not held)."""
        if self._handle is None:
            return
        handle, self._handle = self._handle, None
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(handle)  # closing the descriptor releases the flock

    def __enter__(self) -> RunFolderLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


class RunFolderClaim:
    """What a run does to its folder before it writes a file, and how that is undone when refused.

    :meth:`open` creates the folder if needed (remembering what it created), takes the lock and,
    for a new run, checks that the folder holds no earlier run (or that ``overwrite`` was
    given). The caller then validates everything else; if that fails it calls :meth:`abandon`,
    which releases the lock and removes the folders :meth:`open` created, so a refused command
    leaves no trace. :meth:`commit` is the first change to the folder's contents: it removes an
    earlier run's files (``overwrite``) and the temporary files of interrupted writes.
    :meth:`release` ends the claim when the run ends.
    """

    def __init__(self, root: Path | str, resuming: bool, overwrite: bool) -> None:
        self.root = Path(root)
        self.resuming = resuming
        self.overwrite = overwrite
        self.lock = RunFolderLock(self.root)
        self._created: list[Path] = []
        self._made: list[Path] = []  # the folders this run created, kept after commit for discard()
        self._earlier: list[str] = []

    def open(self) -> RunFolderClaim:
        """Create and lock the folder and check the run folder rules.

        Raises:
            ConfigError: the folder is locked by another run, or (new run) it holds an earlier run
                and ``overwrite`` is false. Nothing is left behind.
        """
        self._created = [folder for folder in (self.root, *self.root.parents) if not folder.exists()][::-1]
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self.lock.acquire()
            if not self.resuming:
                self._earlier = check_new_run_folder(self.root, self.overwrite)
        except BaseException:
            self.abandon()
            raise
        return self

    def abandon(self) -> None:
        """Undo :meth:`open`: release the lock, remove the (still empty) folders it created."""
        self.lock.release()
        for folder in reversed(self._created):
            try:
                folder.rmdir()
            except OSError:  # not empty (someone else wrote there) or gone: leave it
                break
        self._created = []

    def commit(self) -> list[str]:
        """Clear the way for the run's files; returns what was removed, as log lines."""
        self._made, self._created = self._created, []
        messages = []
        if self._earlier and self.overwrite and not self.resuming:
            remove_earlier_run(self.root)
            messages.append(f"--overwrite: removed the earlier run's {', '.join(self._earlier)} from {self.root}")
        stale = remove_stale_run_temporaries(self.root)
        if stale:
            names = ", ".join(str(path.relative_to(self.root)) for path in stale)
            messages.append(f"removed {len(stale)} temporary file(s) an interrupted write left behind: {names}")
        return messages

    def release(self) -> None:
        """End the claim: release the lock (the run's files stay)."""
        self.lock.release()

    def discard(self) -> str:
        """Remove what a new run wrote, when it ended before any epoch was saved; says what it did.

        The run's files go, and so do the folders the run created when nothing else is left in
        them; other files in the folder stay. Call before :meth:`release`.
        """
        remove_earlier_run(self.root)
        removed = []
        for folder in reversed(self._made):
            try:
                folder.rmdir() if folder != self.root else _remove_run_root(folder, self.lock.path)
            except OSError:  # someone else's files are there: keep the folder
                break
            removed.append(folder)
        self._made = []
        if self.root in removed:
            return f"the run folder {self.root} was removed"
        return f"the run's files were removed from {self.root}"


def _remove_run_root(root: Path, lock_path: Path) -> None:
    """Remove ``root`` when it holds nothing but the lock file (still held by this process)."""
    if any(entry != lock_path for entry in root.iterdir()):
        raise OSError(f"{root} is not empty")
    lock_path.unlink(missing_ok=True)
    root.rmdir()


def _read_pid(handle: int) -> str | None:
    try:
        os.lseek(handle, 0, os.SEEK_SET)
        return os.read(handle, 32).decode(errors="replace").strip() or None
    except OSError:
        return None


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


def metric_columns(history: Sequence[Mapping[str, Any]]) -> list[str]:
    """metrics.csv's columns: every key of the history rows, in the order they first appear."""
    return list(dict.fromkeys(key for row in history for key in row))


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
