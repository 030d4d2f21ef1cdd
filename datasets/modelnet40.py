"""ModelNet40 in its three common layouts.

- ``txt``: ``modelnet40_normal_resampled/`` — ``modelnet40_shape_names.txt``,
  ``modelnet40_{train,test}.txt`` (shape ids) and ``<class>/<id>.txt`` files of comma-separated
  ``x,y,z,nx,ny,nz`` rows.  Like the official loader, the clouds are FPS-ordered to 8192 points
  once and cached as ``modelnet40_{split}_8192pts_fps.dat`` next to them (the name the official
  code gives its ``uniform`` = FPS cache; written atomically).  The cache is read when present.
- ``dat``: the two ``.dat`` caches alone (what most people download):
  ``pickle.dump([list of (8192, 6) float32, list of (1,) int32])``.
- ``h5``: ``modelnet40_ply_hdf5_2048/`` — ``{train,test}_files.txt`` list
  ``ply_data_{split}{i}.h5`` files (``data`` (S, 2048, 3), ``label`` (S, 1), optional
  ``normal``); the listed paths are resolved by file name inside the folder.

At load, xyz are normalised with :func:`pc_normalize`; normals are dropped unless asked for.
Items are the first ``npoints`` points of each stored cloud: an FPS subset for the FPS-ordered
caches (our FPS starts at point 0; the official cache builder starts at a random point).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from backbones.errors import DataError
from backbones.tokenizer import farthest_point_sample, gather_points

from .base import PointCloudDataset
from .classes import MODELNET40_CLASSES, MODELNET40_SOURCE
from .storage import load_pickle, read_h5, read_text, reading, require_file, write_pickle_atomic
from .validation import check_clouds, check_labels, check_npoints

SPLITS = ("train", "test")
SOURCES = ("auto", "txt", "dat", "h5")
CACHE_POINTS = 8192
SHAPE_NAMES_FILE = "modelnet40_shape_names.txt"
H5_SHAPE_NAMES_FILE = "shape_names.txt"
_FPS_CHUNK_POINTS = 2**21  # points per FPS call while building the cache: big calls amortise the loop, bounded memory

LAYOUT = """  modelnet40_normal_resampled/      <- give this folder (or its parent) as root
    modelnet40_shape_names.txt        one class name a line, label order
    modelnet40_train.txt              shape ids, e.g. airplane_0001
    modelnet40_test.txt
    modelnet40_train_8192pts_fps.dat  preprocessed cache (built from the text files if absent)
    modelnet40_test_8192pts_fps.dat
    airplane/airplane_0001.txt        x,y,z,nx,ny,nz rows (not needed when the .dat files exist)
  or
  modelnet40_ply_hdf5_2048/
    shape_names.txt  train_files.txt  test_files.txt  ply_data_train0.h5 ...  ply_data_test0.h5 ..."""


def pc_normalize(points: np.ndarray) -> np.ndarray:
    """Centre xyz on their mean and scale them into the unit sphere, per cloud.

    Args:
        points: (N, 3) or (S, N, 3) array.

    Returns:
        array of the same shape: ``(p - mean) / max ||p - mean||`` over each cloud's points.
    """
    centred = points - points.mean(axis=-2, keepdims=True)
    radius = np.sqrt((centred**2).sum(axis=-1)).max(axis=-1)[..., None, None]
    if points.ndim == 2:
        radius = radius[0]
    return centred / np.maximum(radius, np.finfo(np.float32).tiny)


def dat_cache_path(folder: Path | str, split: str) -> Path:
    """``folder/modelnet40_{split}_8192pts_fps.dat``: the official FPS cache name."""
    return Path(folder) / f"modelnet40_{split}_{CACHE_POINTS}pts_fps.dat"


def read_name_list(path: Path) -> list[str]:
    """Non-empty stripped lines of a text file.

    Raises:
        DataError: the file cannot be read or is not text.
    """
    return [line.strip() for line in read_text(path).splitlines() if line.strip()]


def class_of_shape_id(shape_id: str) -> str:
    """``night_stand_0001`` -> ``night_stand`` (everything before the last underscore)."""
    return shape_id.rsplit("_", 1)[0]


def _candidate_folders(root: Path) -> list[Path]:
    return [
        root,
        root / "modelnet40_normal_resampled",
        root / "ModelNet" / "modelnet40_normal_resampled",
        root / "modelnet40_ply_hdf5_2048",
    ]


def _layout_present(folder: Path, source: str, split: str) -> bool:
    if source == "dat":
        return dat_cache_path(folder, split).is_file()
    if source == "txt":
        return (folder / SHAPE_NAMES_FILE).is_file() and (folder / f"modelnet40_{split}.txt").is_file()
    return (folder / f"{split}_files.txt").is_file()


def locate_modelnet40(root: Path | str, split: str, source: str = "auto") -> tuple[Path, str]:
    """Find the folder and concrete source (``dat``, ``txt`` or ``h5``) of a split under ``root``.

    ``auto`` prefers the ``.dat`` cache, then the text layout (which builds the cache), then h5.
    """
    root = Path(root)
    order = ("dat", "txt", "h5") if source == "auto" else (source,)
    for folder in _candidate_folders(root):
        for kind in order:
            if _layout_present(folder, kind, split):
                return folder, kind
    wanted = {
        "dat": f"modelnet40_{split}_{CACHE_POINTS}pts_fps.dat",
        "txt": f"{SHAPE_NAMES_FILE} and modelnet40_{split}.txt",
        "h5": f"{split}_files.txt",
    }
    what = " or ".join(wanted[kind] for kind in order)
    problem = f"the ModelNet40 root {root} does not exist" if not root.is_dir() else f"no {what} under {root}"
    raise DataError(
        f"{problem} (split {split!r}, source {source!r}); looked in "
        + ", ".join(str(f) for f in _candidate_folders(root))
        + f"\nexpected layout:\n{LAYOUT}\nthe data comes from: {MODELNET40_SOURCE}"
    )


def _class_names_for(folder: Path, file_name: str, num_labels_seen: int, path: Path) -> list[str]:
    names_file = folder / file_name
    if names_file.is_file():
        return read_name_list(names_file)
    if num_labels_seen > len(MODELNET40_CLASSES):
        raise DataError(
            f"{path}: labels go up to {num_labels_seen - 1} but there is no {names_file} "
            f"and the official list has {len(MODELNET40_CLASSES)} classes; add the class-name file"
        )
    return list(MODELNET40_CLASSES)


# --------------------------------------------------------------------------------------------
# text layout and the .dat cache
# --------------------------------------------------------------------------------------------


def read_text_cloud(path: Path) -> np.ndarray:
    """(P, 6) float32 rows ``x,y,z,nx,ny,nz`` of one shape file.

    Raises:
        DataError: the file is missing, is not comma-separated numbers, or has rows of another width.
    """
    require_file(path, LAYOUT, MODELNET40_SOURCE)
    with reading(path, "not comma-separated numbers"):
        cloud = np.loadtxt(path, delimiter=",", dtype=np.float32, ndmin=2, encoding="utf-8")
    if cloud.shape[1] != 6 or cloud.shape[0] == 0:
        raise DataError(f"{path}: holds rows of shape {cloud.shape}, expected (points, 6) = x,y,z,nx,ny,nz")
    return cloud


def fps_order(clouds: Sequence[np.ndarray], num_points: int) -> list[np.ndarray]:
    """Each cloud's first ``min(num_points, P)`` farthest points, in FPS order (first = point 0).

    Args:
        clouds: (P_i, C) arrays, xyz in the first three columns.

    Returns:
        list of (min(num_points, P_i), C) arrays.
    """
    out: list[np.ndarray | None] = [None] * len(clouds)
    by_size: dict[int, list[int]] = {}
    for i, cloud in enumerate(clouds):
        by_size.setdefault(cloud.shape[0], []).append(i)
    for size, members in by_size.items():
        take = min(num_points, size)
        chunk_size = max(1, _FPS_CHUNK_POINTS // size)
        for start in range(0, len(members), chunk_size):
            chunk = members[start : start + chunk_size]
            batch = torch.from_numpy(np.stack([clouds[i] for i in chunk]))
            idx = farthest_point_sample(batch[..., :3].contiguous(), take)
            for i, ordered in zip(chunk, gather_points(batch, idx).numpy(), strict=True):
                out[i] = ordered
    return out  # type: ignore[return-value]


def build_dat_content(folder: Path | str, split: str) -> list[list[np.ndarray]]:
    """Read the text layout of ``split`` and FPS-order each cloud to 8192 points.

    Clouds with fewer than 8192 points keep all their points (in FPS order).

    Returns:
        ``[list of (P, 6) float32 arrays, list of (1,) int32 labels]``, the official cache content.
    """
    folder = Path(folder)
    names = read_name_list(require_file(folder / SHAPE_NAMES_FILE, LAYOUT, MODELNET40_SOURCE))
    index = {name: i for i, name in enumerate(names)}
    id_file = require_file(folder / f"modelnet40_{split}.txt", LAYOUT, MODELNET40_SOURCE)
    shape_ids = read_name_list(id_file)
    if not shape_ids:
        raise DataError(f"{id_file}: lists no shape ids")
    clouds, labels = [], []
    print(
        f"building {dat_cache_path(folder, split)} from {len(shape_ids)} text files (only the first time)",
        file=sys.stderr,
    )
    for shape_id in tqdm(shape_ids, desc=f"ModelNet40 {split}", disable=None):
        name = class_of_shape_id(shape_id)
        if name not in index:
            raise DataError(
                f"{id_file}: shape id {shape_id!r} names class {name!r}, which is not in {folder / SHAPE_NAMES_FILE}"
            )
        path = folder / name / f"{shape_id}.txt"
        clouds.append(check_clouds(read_text_cloud(path)[None], path, channels=(6,))[0])
        labels.append(np.array([index[name]], dtype=np.int32))
    return [fps_order(clouds, CACHE_POINTS), labels]


def build_dat_cache(folder: Path | str, split: str) -> Path:
    """Build the cache of ``split`` from the text layout and write it atomically; return its path."""
    path = dat_cache_path(folder, split)
    write_pickle_atomic(build_dat_content(folder, split), path)
    return path


def parse_dat(content: object, path: Path, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Points (S, P, channels) float32 (P = the smallest cloud) and raw labels (S,) of cache content."""
    if not (
        isinstance(content, (list, tuple))
        and len(content) == 2
        and isinstance(content[0], (list, tuple))
        and isinstance(content[1], (list, tuple))
        and len(content[0]) == len(content[1])
    ):
        raise DataError(f"{path}: expected a pickled [list of (8192, 6) arrays, list of (1,) labels] of equal length")
    clouds, labels = content
    if len(clouds) == 0:
        raise DataError(f"{path}: holds no samples")
    shapes = {np.shape(cloud)[1:] for cloud in clouds}
    if any(len(shape) != 1 or shape[0] < channels for shape in shapes):
        raise DataError(
            f"{path}: clouds have per-point shapes {sorted(shapes)}, expected (points, 6) (at least {channels} columns)"
        )
    if any(np.size(label) != 1 for label in labels):
        raise DataError(f"{path}: every label must be a single integer (an int32 array of shape (1,))")
    shortest = min(len(cloud) for cloud in clouds)
    points = np.stack([np.asarray(cloud)[:shortest, :channels] for cloud in clouds])
    return points, np.array([np.asarray(label).reshape(-1)[0] for label in labels])


# --------------------------------------------------------------------------------------------
# h5 layout
# --------------------------------------------------------------------------------------------


def read_h5_layout(folder: Path, split: str, use_normals: bool) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the h5 files listed in ``{split}_files.txt``: points (S, 2048, 3|6), labels."""
    list_file = folder / f"{split}_files.txt"
    listed = read_name_list(list_file)
    if not listed:
        raise DataError(f"{list_file}: lists no h5 files")
    points, labels = [], []
    for entry in listed:
        # The official lists hold paths like data/modelnet40_ply_hdf5_2048/ply_data_train0.h5.
        path = require_file(folder / Path(entry).name, LAYOUT, MODELNET40_SOURCE)
        arrays = read_h5(path, ("data", "label"), optional=("normal",))
        data = check_clouds(arrays["data"], path, channels=(3,))
        if use_normals:
            if "normal" not in arrays:
                raise DataError(f"{path}: use_normals=True but the file has no 'normal' dataset")
            normal = check_clouds(arrays["normal"], path, channels=(3,))
            if normal.shape != data.shape:
                raise DataError(f"{path}: 'normal' has shape {normal.shape}, 'data' {data.shape}")
            data = np.concatenate([data, normal], axis=-1)
        label = np.asarray(arrays["label"])
        if label.size != len(data):
            raise DataError(
                f"{path}: 'label' has shape {label.shape}, expected ({len(data)}, 1) — one label per sample"
            )
        points.append(data)
        labels.append(label.reshape(-1))
    if len({p.shape[1] for p in points}) != 1:
        raise DataError(f"{list_file}: the listed files hold different numbers of points per sample")
    return np.concatenate(points), np.concatenate(labels)


# --------------------------------------------------------------------------------------------
# the dataset
# --------------------------------------------------------------------------------------------


class ModelNet40Dataset(PointCloudDataset):
    """ModelNet40 (any number of classes the class-name file lists), read into memory once.

    Items: ``(points (npoints, 3 or 6) float32 tensor, label int)``, xyz normalised per cloud.

    Args:
        root: the ``modelnet40_normal_resampled`` or ``modelnet40_ply_hdf5_2048`` folder, or a
            parent of it.
        split: ``"train"`` or ``"test"``.
        npoints: the first ``npoints`` points of each stored cloud (None = all stored).
        use_normals: serve ``x,y,z,nx,ny,nz`` instead of ``x,y,z``.
        source: ``"auto"``, ``"txt"``, ``"dat"`` or ``"h5"`` (see the module docstring).
        shuffle_points: permute each item's points; None = for the train split, as the official loader.
    """

    def __init__(
        self,
        root: Path | str,
        split: str = "train",
        npoints: int | None = None,
        use_normals: bool = False,
        source: str = "auto",
        shuffle_points: bool | None = None,
    ) -> None:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r} for ModelNet40; choose one of {', '.join(SPLITS)}")
        if source not in SOURCES:
            raise DataError(f"unknown ModelNet40 source {source!r}; choose one of {', '.join(SOURCES)}")
        channels = 6 if use_normals else 3
        folder, kind = locate_modelnet40(root, split, source)
        if kind == "h5":
            path = folder / f"{split}_files.txt"
            raw_points, raw_labels = read_h5_layout(folder, split, use_normals)
            names_file = H5_SHAPE_NAMES_FILE
        else:
            path = dat_cache_path(folder, split)
            content = load_pickle(path) if path.is_file() else self._build_cache(folder, split)
            raw_points, raw_labels = parse_dat(content, path, channels)
            names_file = SHAPE_NAMES_FILE
        points = check_clouds(raw_points, path, channels=(channels,))
        seen = int(np.max(raw_labels)) + 1 if np.issubdtype(raw_labels.dtype, np.number) else 0
        class_names = _class_names_for(folder, names_file, seen, path)
        labels = check_labels(raw_labels, points.shape[0], len(class_names), path)
        points[..., :3] = pc_normalize(points[..., :3])
        super().__init__(
            points,
            labels,
            class_names,
            npoints=check_npoints(npoints, points.shape[1], path),
            channels=channels,
            shuffle_points=split == "train" if shuffle_points is None else shuffle_points,
        )
        self.path = path
        self.source = kind
        self.split = split

    @staticmethod
    def _build_cache(folder: Path, split: str) -> list[list[np.ndarray]]:
        content = build_dat_content(folder, split)
        try:
            write_pickle_atomic(content, dat_cache_path(folder, split))
        except OSError as error:
            warnings.warn(
                f"cannot write the ModelNet40 cache in {folder} ({error}); using it from memory, "
                "it will be rebuilt next time",
                stacklevel=2,
            )
        return content
