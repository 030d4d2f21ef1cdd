"""ShapeNet-55, the pre-training set of Point-BERT and Point-MAE, in the official layout.

::

    ShapeNet55-34/                        <- root (its parent, or the ShapeNet-55 folder, also work)
      ShapeNet-55/train.txt               one file name per line: <taxonomy>-<model>.npy
      ShapeNet-55/test.txt
      shapenet_pc/<taxonomy>-<model>.npy  one cloud each, (8192, 3) float

As the official ``ShapeNet`` dataset does, an item is ``npoints`` points drawn at random without
replacement from the stored cloud (a new draw every time the item is read; on the test split a
fixed draw per item), then normalised by ``pc_norm``: centred on its mean and scaled so that
its farthest point lies on the unit sphere. The files are read when an item is read (the
official set is 4 GB of points); the list files and the presence of every listed file are
checked when the dataset is built, the content of a file when it is read — any problem is one
:class:`~backbones.errors.DataError` naming the file.

Pre-training does not use labels. Items still carry one, the index of the item's taxonomy
(its file name up to the first ``-``) among the sorted taxonomies of both list files, so that
the loader has the interface of the others (``class_names`` are the taxonomy ids).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from backbones.errors import DataError

from .classes import SHAPENET55_SOURCE
from .storage import read_text, reading

SPLITS = ("train", "test")
LIST_FOLDER = "ShapeNet-55"
CLOUD_FOLDER = "shapenet_pc"
#: Points per stored cloud in the official files.
STORED_POINTS = 8192

LAYOUT = """  ShapeNet55-34/                        <- give this folder as root
    ShapeNet-55/train.txt               lines <taxonomy>-<model>.npy (41,952 in the official list)
    ShapeNet-55/test.txt                (10,518)
    shapenet_pc/<taxonomy>-<model>.npy  (8192, 3) float points per file"""


def locate_shapenet55(root: Path | str) -> Path:
    """The folder that holds ``ShapeNet-55/`` and ``shapenet_pc/``: ``root``, its child
    ``ShapeNet55-34``, or the parent of a ``ShapeNet-55`` folder given as root.

    Raises:
        DataError: none of these holds both folders (names the layout and the source).
    """
    root = Path(root)
    candidates = [root, root / "ShapeNet55-34"]
    if root.name == LIST_FOLDER:
        candidates.append(root.parent)
    for candidate in candidates:
        if (candidate / LIST_FOLDER).is_dir() and (candidate / CLOUD_FOLDER).is_dir():
            return candidate
    problem = f"the ShapeNet-55 root {root} does not exist" if not root.exists() else f"no ShapeNet-55 layout in {root}"
    raise DataError(
        f"{problem}; looked for {LIST_FOLDER}/ and {CLOUD_FOLDER}/ in: {', '.join(str(c) for c in candidates)}"
        f"\nexpected layout:\n{LAYOUT}\nthe data comes from: {SHAPENET55_SOURCE}"
    )


def read_file_list(path: Path) -> list[str]:
    """The file names of a split list (one per line, blank lines skipped).

    Raises:
        DataError: the file is missing, not text, or a line is not ``<taxonomy>-<model>.npy``.
    """
    if not path.is_file():
        raise DataError(f"missing file {path}\nexpected layout:\n{LAYOUT}\nthe data comes from: {SHAPENET55_SOURCE}")
    names = [line.strip() for line in read_text(path).splitlines() if line.strip()]
    for number, name in enumerate(names, start=1):
        if "-" not in name or not name.endswith(".npy") or "/" in name or "\\" in name:
            raise DataError(
                f"{path}: line {number} {name!r} is not a file name <taxonomy>-<model>.npy; "
                "the list is damaged, re-create or re-download it"
            )
    if not names:
        raise DataError(f"{path}: lists no files; expected one <taxonomy>-<model>.npy per line")
    return names


def taxonomy_of(name: str) -> str:
    """``02691156-1a04e3.npy`` → ``02691156`` (as the official loader splits it)."""
    return name.split("-")[0]


def read_cloud(path: Path) -> np.ndarray:
    """One stored cloud as float32 (N, 3) (extra columns dropped).

    Raises:
        DataError: missing, not a readable .npy, not (N, ≥3) numbers, empty, or NaN/Inf.
    """
    with reading(path, "not a readable .npy file"):
        array = np.load(path, allow_pickle=False)
    if array.ndim != 2 or array.shape[1] < 3 or not np.issubdtype(array.dtype, np.number):
        raise DataError(f"{path}: holds an array of shape {array.shape} ({array.dtype}), expected (points, 3) floats")
    if array.shape[0] == 0:
        raise DataError(f"{path}: holds no points")
    points = array[:, :3].astype(np.float32)
    if not np.isfinite(points).all():
        raise DataError(f"{path}: holds NaN or Inf coordinates; the file is corrupt, re-create or re-download it")
    return points


def pc_norm(points: np.ndarray) -> np.ndarray:
    """The official ``pc_norm``: subtract the mean, divide by the largest distance to it."""
    centred = points - points.mean(axis=0)
    radius = float(np.sqrt((centred**2).sum(axis=1)).max())
    return centred / radius if radius > 0 else centred


class ShapeNet55Dataset(Dataset):
    """ShapeNet-55 (train: 41,952 clouds, test: 10,518 in the official lists), read lazily.

    Items: ``(points (npoints, 3) float32 tensor, taxonomy index int)``.

    Args:
        root: see the module docstring.
        split: ``"train"`` or ``"test"``.
        npoints: points drawn per item (official pre-training: 1024).
        shuffle_points: draw anew on every read (the train split's default, as the official
            loader does); ``False``: a fixed draw per item (the test split's default).
    """

    def __init__(self, root: Path | str, split: str = "train", npoints: int = 1024, shuffle_points: bool | None = None):
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r} for ShapeNet-55; choose one of {', '.join(SPLITS)}")
        if isinstance(npoints, bool) or not isinstance(npoints, (int, np.integer)) or npoints < 1:
            raise DataError(f"npoints must be a positive integer, got {npoints!r}")
        base = locate_shapenet55(root)
        self.root = base
        self.split = split
        self.npoints = int(npoints)
        self.shuffle_points = split == "train" if shuffle_points is None else bool(shuffle_points)
        self.list_file = base / LIST_FOLDER / f"{split}.txt"
        self.names = read_file_list(self.list_file)
        other = base / LIST_FOLDER / f"{SPLITS[1 - SPLITS.index(split)]}.txt"
        taxonomies = {taxonomy_of(name) for name in self.names}
        if other.is_file():
            taxonomies |= {taxonomy_of(name) for name in read_file_list(other)}
        self.class_names = sorted(taxonomies)
        index = {name: label for label, name in enumerate(self.class_names)}
        self.labels = np.array([index[taxonomy_of(name)] for name in self.names], dtype=np.int64)
        folder = base / CLOUD_FOLDER
        missing = [name for name in self.names if not (folder / name).is_file()]
        if missing:
            raise DataError(
                f"{len(missing)} of the {len(self.names)} files listed in {self.list_file} are missing from {folder} "
                f"(first: {missing[0]})\nexpected layout:\n{LAYOUT}\nthe data comes from: {SHAPENET55_SOURCE}"
            )
        first = read_cloud(folder / self.names[0])
        self._stored_points = first.shape[0]
        if self._stored_points < self.npoints:
            raise DataError(
                f"{folder / self.names[0]}: npoints={self.npoints} was asked for but the cloud holds only "
                f"{self._stored_points} points; ask for at most {self._stored_points}"
            )

    @property
    def num_classes(self) -> int:
        """The number of taxonomies (55 in the official lists)."""
        return len(self.class_names)

    @property
    def npoints_available(self) -> int:
        """Points served per item (``npoints``: drawing happens in the loader, as officially)."""
        return self.npoints

    def path(self, index: int) -> Path:
        """The file of item ``index``."""
        return self.root / CLOUD_FOLDER / self.names[index]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.path(index)
        points = read_cloud(path)
        if points.shape[0] < self.npoints:
            raise DataError(
                f"{path}: holds {points.shape[0]} points, fewer than npoints={self.npoints}; "
                "every listed cloud needs at least npoints points"
            )
        if self.shuffle_points:
            order = torch.randperm(points.shape[0])[: self.npoints].numpy()
        else:
            generator = torch.Generator().manual_seed(int(index))
            order = torch.randperm(points.shape[0], generator=generator)[: self.npoints].numpy()
        return torch.from_numpy(pc_norm(points[order]).astype(np.float32)), int(self.labels[index])

    def __repr__(self) -> str:
        return f"ShapeNet55Dataset(split={self.split!r}, samples={len(self)}, npoints={self.npoints})"
