"""Reading data files (h5, pickle, text) and writing pickles atomically, with clear errors.

Every reader goes through :func:`reading`: whatever the parser raises for a damaged, truncated
or foreign file (h5py raises ``OSError``, ``RuntimeError`` or ``KeyError`` for damaged metadata,
the unpickler a dozen kinds, a text reader ``UnicodeDecodeError``) becomes one
:class:`~backbones.errors.DataError` that names the file and what it should have held.
``KeyboardInterrupt`` and ``SystemExit`` pass through untouched.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from backbones.errors import DataError

#: What to do about a file that cannot be parsed.
REPAIR_HINT = "re-create or re-download it"


def require_file(path: Path, layout: str, source: str) -> Path:
    """Return ``path`` when it is a file, else raise a DataError naming layout and source."""
    if not path.is_file():
        raise DataError(f"missing file {path}\nexpected layout:\n{layout}\nthe data comes from: {source}")
    return path


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


@contextmanager
def reading(path: Path | str, problem: str, hint: str = REPAIR_HINT) -> Iterator[None]:
    """Turn any failure to open or parse ``path`` inside the block into one :class:`DataError`.

    Args:
        path: the file being read (named in the message).
        problem: what went wrong, in the words of the message: ``"not a readable h5 file"``,
            ``"cannot unpickle"``.
        hint: what to do about it.

    Raises:
        DataError: ``"<path>: <problem> (<error>); the file is truncated or corrupt, or of another
        kind; <hint>"``. A :class:`DataError` raised inside the block passes unchanged; running out
        of memory is reported as a damaged size field or a file too big for memory.
    """
    try:
        yield
    except DataError:
        raise
    except MemoryError:
        raise DataError(
            f"{path}: {problem} (out of memory); a size field in the file is damaged, or the file is "
            f"too big for this machine's memory; {hint}"
        ) from None
    except Exception as error:  # every parser error (OSError, RuntimeError, KeyError, UnpicklingError, ...)
        raise DataError(
            f"{path}: {problem} ({_first_line(error)}); the file is truncated or corrupt, or of another kind; {hint}"
        ) from None


def read_h5(path: Path, keys: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Read whole datasets ``keys`` (required) and ``optional`` (when present) from an h5 file.

    Raises:
        DataError: the file cannot be opened or parsed (damaged metadata included), or a required
            key is missing (the message lists the keys present).
    """
    with reading(path, "not a readable h5 file"), h5py.File(path, "r") as handle:
        present = sorted(handle.keys())
        missing = [key for key in keys if key not in handle]
        if missing:
            raise DataError(
                f"{path}: no dataset {', '.join(repr(k) for k in missing)} in the h5 file "
                f"(it holds {present}); expected keys {list(keys)}"
            )
        return {key: np.asarray(handle[key]) for key in keys + optional if key in handle}


def load_pickle(path: Path) -> Any:
    """Unpickle ``path``.

    Raises:
        DataError: the file is truncated, damaged or not a pickle (``"cannot unpickle"``).
    """
    with reading(path, "cannot unpickle", "delete it and re-create or re-download it"):
        with open(path, "rb") as handle:
            return pickle.load(handle)


def read_text(path: Path) -> str:
    """The text of ``path`` (UTF-8).

    Raises:
        DataError: the file cannot be read or is not text.
    """
    with reading(path, "not a readable text file"):
        return Path(path).read_text(encoding="utf-8")


def write_pickle_atomic(obj: Any, path: Path) -> None:
    """Pickle ``obj`` to ``path`` through a temporary file and a rename.

    A reader never sees a half-written file, and an interrupted write leaves no file behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False)
    try:
        with handle:
            pickle.dump(obj, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
