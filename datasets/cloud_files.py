"""Point clouds from single files, for predictions on a user's own data.

Formats, each read without a dependency beyond numpy and h5py:

- ``.npy``: an (N, C) array, or (S, N, C) for S clouds; C >= 3, xyz first.
- ``.txt`` / ``.xyz`` / ``.pts`` / ``.csv``: one point a row, comma- or whitespace-separated,
  xyz first (ModelNet40's ``x,y,z,nx,ny,nz`` rows too); ``#`` comment lines are skipped.
- ``.ply``: ASCII, binary little-endian or binary big-endian; the ``vertex`` element's ``x``,
  ``y``, ``z`` properties (any numeric type; other properties and elements are skipped).
- ``.h5`` / ``.hdf5``: the ``data`` dataset (ScanObjectNN / PointNet layout, (S, N, 3+)), or the
  file's only 2-D / 3-D dataset.

:func:`read_cloud_file` returns ``[(name, points (N, 3) float32)]``: one entry per cloud, named
``file`` or ``file#i`` for the i-th cloud of a multi-cloud file. Any failure to read or parse a
file is one :class:`DataError` naming it.
"""

from __future__ import annotations

import glob
from collections.abc import Iterable
from pathlib import Path

import h5py
import numpy as np

from backbones.errors import DataError

CLOUD_SUFFIXES = (".npy", ".txt", ".xyz", ".pts", ".csv", ".ply", ".h5", ".hdf5")

_PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}


def expand_cloud_paths(items: Iterable[str | Path]) -> list[Path]:
    """Files named by ``items``: a file, a folder (its cloud files, sorted, not recursive) or a glob.

    Raises:
        DataError: an item matches no file, or a folder holds no cloud file.
    """
    paths: list[Path] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in CLOUD_SUFFIXES)
            if not found:
                raise DataError(f"{path}: the folder holds no point-cloud file ({', '.join(CLOUD_SUFFIXES)})")
            paths.extend(found)
        elif path.is_file():
            paths.append(path)
        else:
            matches = sorted(Path(match) for match in glob.glob(str(path)) if Path(match).is_file())
            if not matches:
                raise DataError(f"{item}: no such file, folder or matching pattern")
            paths.extend(matches)
    return list(dict.fromkeys(paths))


def read_cloud_file(path: str | Path) -> list[tuple[str, np.ndarray]]:
    """The point clouds of one file, as ``[(name, (N, 3) float32 xyz)]``.

    Raises:
        DataError: unknown suffix, an unreadable or malformed file, fewer than 3 columns, an
            empty cloud, or NaN/Inf coordinates (each message names the file).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    readers = {".npy": _read_npy, ".ply": _read_ply, ".h5": _read_h5, ".hdf5": _read_h5}
    reader = readers.get(suffix, _read_text if suffix in CLOUD_SUFFIXES else None)
    if reader is None:
        raise DataError(
            f"{path}: unknown point-cloud file type {suffix!r}; expected one of {', '.join(CLOUD_SUFFIXES)}"
        )
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        array = reader(path)
    except DataError:
        raise
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as error:  # any failure to parse is the file's fault, reported as such
        raise DataError(f"{path}: cannot read it as a {suffix} point cloud ({type(error).__name__}: {error})") from None
    return _named_clouds(path, array)


def _named_clouds(path: Path, array: np.ndarray) -> list[tuple[str, np.ndarray]]:
    array = np.asarray(array)
    if array.ndim not in (2, 3) or array.shape[-1] < 3:
        raise DataError(
            f"{path}: holds an array of shape {tuple(array.shape)}; expected (points, 3+) or (clouds, points, 3+)"
        )
    if array.ndim == 2:
        array = array[None]
    if array.shape[1] == 0:
        raise DataError(f"{path}: holds no points")
    if not np.issubdtype(array.dtype, np.number):
        raise DataError(f"{path}: holds {array.dtype} values, expected numbers")
    clouds = np.ascontiguousarray(array[..., :3], dtype=np.float32)
    bad = ~np.isfinite(clouds).all(axis=(1, 2))
    if bad.any():
        raise DataError(
            f"{path}: {int(bad.sum())} cloud(s) hold NaN or Inf coordinates (first: cloud {int(bad.argmax())})"
        )
    if len(clouds) == 1:
        return [(str(path), clouds[0])]
    return [(f"{path}#{index}", cloud) for index, cloud in enumerate(clouds)]


def _read_npy(path: Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def _read_text(path: Path) -> np.ndarray:
    with open(path) as stream:
        lines = [line for line in stream if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise DataError(f"{path}: holds no points")
    delimiter = "," if "," in lines[0] else None
    return np.loadtxt(lines, delimiter=delimiter, dtype=np.float64, ndmin=2)


def _read_h5(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as handle:
        if "data" in handle:
            return np.asarray(handle["data"])
        candidates = [key for key, value in handle.items() if isinstance(value, h5py.Dataset) and value.ndim in (2, 3)]
        if len(candidates) != 1:
            names = ", ".join(candidates) or "none"
            raise DataError(
                f"{path}: no 'data' dataset and {len(candidates)} 2-D/3-D datasets ({names}); "
                "store the points as 'data'"
            )
        return np.asarray(handle[candidates[0]])


def _read_ply(path: Path) -> np.ndarray:
    with open(path, "rb") as stream:
        header = _read_ply_header(stream, path)
        encoding, elements = header
        if not any(name == "vertex" for name, _, _ in elements):
            raise DataError(f"{path}: the PLY file has no 'vertex' element")
        for name, count, properties in elements:
            if name == "vertex":
                return _read_ply_vertices(stream, path, encoding, count, properties)
            _skip_ply_element(stream, path, encoding, name, count, properties)
    raise AssertionError("unreachable")


def _read_ply_header(stream, path: Path) -> tuple[str, list[tuple[str, int, list[tuple[str, ...]]]]]:
    """``(encoding, [(element, count, [property, ...])])``; a property is ``(type, name)`` or
    ``("list", count type, item type, name)``."""
    if stream.readline().strip() != b"ply":
        raise DataError(f"{path}: not a PLY file (the first line is not 'ply')")
    encoding = None
    elements: list[tuple[str, int, list[tuple[str, ...]]]] = []
    while True:
        line = stream.readline()
        if not line:
            raise DataError(f"{path}: the PLY header has no 'end_header' line")
        words = line.decode("ascii", errors="replace").split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "end_header":
            break
        if words[0] == "format":
            encoding = words[1]
        elif words[0] == "element":
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property":
            if not elements:
                raise DataError(f"{path}: a PLY property before any element")
            elements[-1][2].append(tuple(words[1:]))
    if encoding not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise DataError(f"{path}: unknown PLY format {encoding!r}")
    return encoding, elements


def _ply_dtype(path: Path, encoding: str, properties: list[tuple[str, ...]]) -> np.dtype:
    order = ">" if encoding == "binary_big_endian" else "<"
    fields = []
    for prop in properties:
        if prop[0] == "list":
            raise DataError(f"{path}: list property {prop[-1]!r} in an element this reader needs fixed-size")
        if prop[0] not in _PLY_TYPES:
            raise DataError(f"{path}: unknown PLY property type {prop[0]!r}")
        fields.append((prop[1], order + _PLY_TYPES[prop[0]]))
    return np.dtype(fields)


def _read_ply_vertices(stream, path: Path, encoding: str, count: int, properties: list[tuple[str, ...]]) -> np.ndarray:
    names = [prop[-1] for prop in properties]
    missing = [axis for axis in "xyz" if axis not in names]
    if missing:
        raise DataError(
            f"{path}: the PLY vertices have no {', '.join(missing)} property (they have {', '.join(names)})"
        )
    if encoding == "ascii":
        if any(prop[0] == "list" for prop in properties):
            raise DataError(f"{path}: list properties in the PLY vertex element are not supported")
        rows = [stream.readline() for _ in range(count)]
        table = np.loadtxt(rows, dtype=np.float64, ndmin=2)
        if table.shape != (count, len(names)):
            raise DataError(f"{path}: expected {count} vertex rows of {len(names)} values, got {table.shape}")
        return table[:, [names.index(axis) for axis in "xyz"]]
    dtype = _ply_dtype(path, encoding, properties)
    raw = stream.read(count * dtype.itemsize)
    if len(raw) != count * dtype.itemsize:
        raise DataError(f"{path}: the PLY file ends before its {count} vertices (truncated)")
    table = np.frombuffer(raw, dtype=dtype, count=count)
    return np.stack([table[axis].astype(np.float64) for axis in "xyz"], axis=1)


def _skip_ply_element(
    stream, path: Path, encoding: str, name: str, count: int, properties: list[tuple[str, ...]]
) -> None:
    """Move past an element that comes before the vertices."""
    if encoding == "ascii":
        for _ in range(count):
            stream.readline()
        return
    dtype = _ply_dtype(path, encoding, properties)
    stream.seek(count * dtype.itemsize, 1)
