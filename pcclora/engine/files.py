"""Files written whole or not at all, and the temporary files an interrupted write leaves.

Every file of a run (checkpoints, ``config.yaml``, ``metrics.csv``, ``summary.json``, the plots,
the merged export) is written to a temporary file ``.<name>.<random>.tmp`` in the same folder,
flushed to disk and renamed over ``<name>``: a reader, a crash or Ctrl-C sees the old file or the
new one, never half of one. A SIGKILL during a write leaves only the temporary file, which
:func:`remove_stale_temporaries` deletes when the run folder is next used.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"


def temporary_name(path: Path) -> Path:
    """``<folder>/.<name>.<8 hex digits>.tmp``: where :func:`atomic_write` writes first."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def atomic_write(path: Path | str, write: Callable[[BinaryIO], None]) -> Path:
    """Call ``write(stream)`` on a temporary file next to ``path``, then rename it over ``path``.

    The new file gets the permissions of a plain ``open(path, "w")`` (umask applied). When
    ``write`` or anything after it fails (also Ctrl-C), the temporary file is removed and the
    previous ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        temp = temporary_name(path)
        try:
            handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: Path | str, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` with :func:`atomic_write`."""
    return atomic_write(path, lambda stream: stream.write(text.encode("utf-8")))


def remove_stale_temporaries(folder: Path, names: Iterable[str]) -> list[Path]:
    """Delete the temporary files that interrupted writes of ``folder/<name>`` left; return them.

    Only ``.<name>.*.tmp`` for the given names is touched; call it only on a folder that this
    process owns (no writer of it is running).
    """
    if not folder.is_dir():
        return []
    prefixes = tuple(f".{name}." for name in names)
    stale = [
        entry
        for entry in sorted(folder.iterdir())
        if entry.name.startswith(prefixes) and entry.name.endswith(TEMP_SUFFIX) and entry.is_file()
    ]
    for entry in stale:
        entry.unlink(missing_ok=True)
    return stale
