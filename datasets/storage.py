"""Reading h5 and pickle files, and writing pickles atomically, with clear errors."""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from backbones.errors import DataError


def require_file(path: Path, layout: str, source: str) -> Path:
    """Return ``path`` when it is a file, else raise a DataError naming layout and source."""
    if not path.is_file():
        raise DataError(f"missing file {path}\nexpected layout:\n{layout}\nthe data comes from: {source}")
    return path


def read_h5(path: Path, keys: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Read whole datasets ``keys`` (required) and ``optional`` (when present) from an h5 file."""
    try:
        with h5py.File(path, "r") as handle:
            present = sorted(handle.keys())
            missing = [key for key in keys if key not in handle]
            if missing:
                raise DataError(
                    f"{path}: no dataset {', '.join(repr(k) for k in missing)} in the h5 file "
                    f"(it holds {present}); expected keys {list(keys)}"
                )
            return {key: np.asarray(handle[key]) for key in keys + optional if key in handle}
    except OSError as error:
        raise DataError(f"{path}: not a readable h5 file ({error}); re-create or re-download it") from None


def load_pickle(path: Path) -> Any:
    """Unpickle ``path``; a truncated or foreign file gives a DataError."""
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle)
    except (
        EOFError,
        pickle.UnpicklingError,
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        ImportError,
        IndexError,
    ) as error:
        raise DataError(
            f"{path}: cannot unpickle ({type(error).__name__}: {error}); the file is truncated or "
            "corrupt, delete it and re-create or re-download it"
        ) from None


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
