"""ShapeNetPart (part segmentation) in the official layout of the Point-MAE / PointNet++ loaders.

Layout (docs/formats.md)::

    shapenetcore_partanno_segmentation_benchmark_v0_normal/   <- root
      synsetoffset2category.txt          "<Category> <synset>" per line; the line order is the
                                         category index (the shape label)
      train_test_split/shuffled_{train,val,test}_file_list.json
                                         ["shape_data/<synset>/<token>", ...]
      <synset>/<token>.txt               one point a line: x y z nx ny nz part-label

Splits as the official segmentation script: ``train`` = train + val lists, ``test`` = test list.
Each cloud is normalised (centred on its mean, scaled into the unit sphere: ``pc_normalize``)
and, on every access, resampled to ``npoints`` with replacement (the official loader's
``np.random.choice``). The train split draws from numpy's global generator, which the engine
re-seeds every epoch; the test split draws from a generator seeded by the sample index, so every
evaluation sees the same points (the official test re-draws them each time).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from backbones.errors import DataError

from .modelnet40 import pc_normalize
from .storage import read_text, reading, require_file

#: The 16 categories with their official part labels (``seg_classes`` of the official scripts),
#: in the category order of the official ``synsetoffset2category.txt``.
SHAPENETPART_PARTS: dict[str, tuple[int, ...]] = {
    "Airplane": (0, 1, 2, 3),
    "Bag": (4, 5),
    "Cap": (6, 7),
    "Car": (8, 9, 10, 11),
    "Chair": (12, 13, 14, 15),
    "Earphone": (16, 17, 18),
    "Guitar": (19, 20, 21),
    "Knife": (22, 23),
    "Lamp": (24, 25, 26, 27),
    "Laptop": (28, 29),
    "Motorbike": (30, 31, 32, 33, 34, 35),
    "Mug": (36, 37),
    "Pistol": (38, 39, 40),
    "Rocket": (41, 42, 43),
    "Skateboard": (44, 45, 46),
    "Table": (47, 48, 49),
}
#: The synset folder of each category (ShapeNetCore ids, as in the official file).
SHAPENETPART_SYNSETS: dict[str, str] = {
    "Airplane": "02691156",
    "Bag": "02773838",
    "Cap": "02954340",
    "Car": "02958343",
    "Chair": "03001627",
    "Earphone": "03261776",
    "Guitar": "03467517",
    "Knife": "03624134",
    "Lamp": "03636649",
    "Laptop": "03642806",
    "Motorbike": "03790512",
    "Mug": "03797390",
    "Pistol": "03948459",
    "Rocket": "04099429",
    "Skateboard": "04225987",
    "Table": "04379243",
}
SHAPENETPART_CATEGORIES: tuple[str, ...] = tuple(SHAPENETPART_PARTS)
NUM_PARTS = 50
#: One name per part label: ``"<Category> <i>"`` (the official code has no part names).
SHAPENETPART_PART_NAMES: tuple[str, ...] = tuple(
    f"{category} {index}" for category, parts in SHAPENETPART_PARTS.items() for index in range(len(parts))
)
CATEGORY_FILE = "synsetoffset2category.txt"
SPLIT_FOLDER = "train_test_split"
SPLIT_FILES = {"train": ("train", "val"), "test": ("test",)}
SHAPENETPART_SOURCE = (
    "shapenetcore_partanno_segmentation_benchmark_v0_normal.zip (the PointNet++ / Point-MAE "
    "segmentation data, linked from Point-MAE's DATASET.md), or make small files in the same layout: "
    "python tools/make_synthetic.py --format shapenetpart --out DIR"
)
LAYOUT = """  shapenetcore_partanno_segmentation_benchmark_v0_normal/   <- give this folder as root
    synsetoffset2category.txt                 "<Category> <synset>" per line
    train_test_split/shuffled_train_file_list.json, shuffled_val_file_list.json, shuffled_test_file_list.json
    <synset>/<token>.txt                      x y z nx ny nz part-label per line"""


def part_label_category() -> np.ndarray:
    """(50,) category index of every part label."""
    owner = np.empty(NUM_PARTS, dtype=np.int64)
    for index, parts in enumerate(SHAPENETPART_PARTS.values()):
        owner[list(parts)] = index
    return owner


def read_categories(root: Path) -> list[tuple[str, str]]:
    """``[(category, synset), ...]`` of ``synsetoffset2category.txt`` in file order.

    Raises:
        DataError: missing file, a malformed line, or a category the official part table lacks.
    """
    path = require_file(root / CATEGORY_FILE, LAYOUT, SHAPENETPART_SOURCE)
    entries = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise DataError(f"{path}, line {number}: expected '<Category> <synset>', got {line.strip()!r}")
        if fields[0] not in SHAPENETPART_PARTS:
            raise DataError(
                f"{path}, line {number}: unknown category {fields[0]!r}; ShapeNetPart has "
                f"{', '.join(SHAPENETPART_CATEGORIES)}"
            )
        entries.append((fields[0], fields[1]))
    if [name for name, _ in entries] != list(SHAPENETPART_CATEGORIES):
        raise DataError(
            f"{path} lists {[name for name, _ in entries]}; expected the 16 official categories in the "
            f"official order ({', '.join(SHAPENETPART_CATEGORIES)}), which fixes the shape labels"
        )
    return entries


def read_split_tokens(root: Path, split: str) -> set[tuple[str, str]]:
    """``{(synset, token), ...}`` of the split's json lists (train = train + val)."""
    tokens: set[tuple[str, str]] = set()
    for name in SPLIT_FILES[split]:
        path = require_file(root / SPLIT_FOLDER / f"shuffled_{name}_file_list.json", LAYOUT, SHAPENETPART_SOURCE)
        with reading(path, "not a json list of 'shape_data/<synset>/<token>'"):
            entries = json.loads(read_text(path))
            for entry in entries:
                _, synset, token = str(entry).split("/")
                tokens.add((synset, token))
    return tokens


def read_part_file(path: Path, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """One shape file → (points (P, channels) float32, part labels (P,) int64).

    Raises:
        DataError: unreadable file, not 7 numeric columns, or no points.
    """
    with reading(path, "not a text file of 'x y z nx ny nz part-label' rows"):
        data = np.loadtxt(path, dtype=np.float32, ndmin=2)
    if data.shape[0] == 0 or data.shape[1] != 7:
        raise DataError(
            f"{path}: expected rows of 7 numbers 'x y z nx ny nz part-label', got an array of shape "
            f"{data.shape}; re-create or re-download it"
        )
    return data[:, :channels].copy(), data[:, -1].astype(np.int64)


class ShapeNetPartDataset(Dataset):
    """ShapeNetPart clouds in memory, served as ``(points (npoints, C) float32, category int,
    part labels (npoints,) int64)``.

    Args:
        root: the ``shapenetcore_partanno_segmentation_benchmark_v0_normal`` folder.
        split: ``"train"`` (official train + val lists) or ``"test"``.
        npoints: points per item, drawn with replacement from the stored points.
        use_normals: C = 6 (xyz + normals) instead of 3.

    Attributes:
        categories: the 16 category names (the shape labels' order).
        class_names: the 50 part names (the model's outputs).
        part_ranges: ``{category index: part labels}``.

    Raises:
        DataError: a missing or malformed file (the message names it and shows the layout), a
            split with no shapes, or a part label outside its category's official range.
    """

    def __init__(self, root: Path | str, split: str, npoints: int = 2048, use_normals: bool = False) -> None:
        if split not in SPLIT_FILES:
            raise DataError(f"unknown split {split!r} for shapenetpart; use 'train' or 'test'")
        root = Path(root)
        if not root.is_dir():
            raise DataError(
                f"ShapeNetPart folder {root} does not exist\nexpected layout:\n{LAYOUT}\n"
                f"the data comes from: {SHAPENETPART_SOURCE}"
            )
        self.root = root
        self.split = split
        self.npoints = int(npoints)
        self.use_normals = bool(use_normals)
        self.channels = 6 if use_normals else 3
        self.categories = list(SHAPENETPART_CATEGORIES)
        self.class_names = list(SHAPENETPART_PART_NAMES)
        self.part_ranges = {index: parts for index, parts in enumerate(SHAPENETPART_PARTS.values())}
        wanted = read_split_tokens(root, split)
        self.clouds: list[np.ndarray] = []
        self.parts: list[np.ndarray] = []
        labels: list[int] = []
        self.files: list[Path] = []
        for index, (category, synset) in enumerate(read_categories(root)):
            folder = root / synset
            if not folder.is_dir():
                raise DataError(
                    f"missing folder {folder} of category {category}\nexpected layout:\n{LAYOUT}\n"
                    f"the data comes from: {SHAPENETPART_SOURCE}"
                )
            allowed = SHAPENETPART_PARTS[category]
            for path in sorted(folder.glob("*.txt")):
                if (synset, path.stem) not in wanted:
                    continue
                cloud, parts = read_part_file(path, self.channels)
                outside = np.setdiff1d(np.unique(parts), allowed)
                if outside.size:
                    raise DataError(
                        f"{path}: part labels {outside.tolist()} are outside {category}'s official range "
                        f"{allowed[0]}..{allowed[-1]}; the file is of another category or damaged"
                    )
                cloud[:, :3] = pc_normalize(cloud[:, :3])
                self.clouds.append(cloud)
                self.parts.append(parts)
                labels.append(index)
                self.files.append(path)
        if not self.clouds:
            raise DataError(
                f"no {split} shapes under {root}: the split lists name none of the <synset>/<token>.txt files "
                f"present\nexpected layout:\n{LAYOUT}\nthe data comes from: {SHAPENETPART_SOURCE}"
            )
        self.labels = np.asarray(labels, dtype=np.int64)

    @property
    def num_classes(self) -> int:
        """Part classes (50)."""
        return NUM_PARTS

    @property
    def npoints_available(self) -> int:
        """Any ``npoints`` works: items are drawn with replacement."""
        return self.npoints

    def __len__(self) -> int:
        return len(self.clouds)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        cloud, parts = self.clouds[index], self.parts[index]
        if self.split == "test":
            choice = np.random.default_rng(index).choice(len(parts), self.npoints, replace=True)
        else:
            choice = np.random.choice(len(parts), self.npoints, replace=True)
        return torch.from_numpy(cloud[choice]), int(self.labels[index]), torch.from_numpy(parts[choice])

    def __repr__(self) -> str:
        return f"ShapeNetPartDataset(split={self.split!r}, samples={len(self)}, npoints={self.npoints})"
