"""ScanObjectNN: OBJ_BG, OBJ_ONLY and PB_T50_RS ("hardest") from the official h5 files.

``root`` is the folder that holds ``main_split/`` and ``main_split_nobg/`` (the unzipped
``h5_files``).  Also accepted: its parent when that holds a ``ScanObjectNN/`` child, and the
variant's own folder (``.../main_split`` for objbg/hardest, ``.../main_split_nobg`` for objonly)
as the official configs' ``ROOT`` names it.  Points are served as stored (no normalisation).
"""

from __future__ import annotations

from pathlib import Path

from backbones.errors import DataError

from .base import PointCloudDataset
from .classes import SCANOBJECTNN_CLASSES, SCANOBJECTNN_SOURCE
from .storage import read_h5
from .validation import check_clouds, check_labels, check_npoints

SPLITS = ("train", "test")
_SPLIT_PREFIX = {"train": "training", "test": "test"}

# variant -> (sub-folder, file-name suffix)
VARIANTS: dict[str, tuple[str, str]] = {
    "hardest": ("main_split", "_augmentedrot_scale75"),
    "objbg": ("main_split", ""),
    "objonly": ("main_split_nobg", ""),
}

LAYOUT = """  ScanObjectNN/                      <- give this folder as root
    main_split/
      training_objectdataset_augmentedrot_scale75.h5   (hardest, PB_T50_RS)
      test_objectdataset_augmentedrot_scale75.h5
      training_objectdataset.h5                        (objbg, OBJ_BG)
      test_objectdataset.h5
    main_split_nobg/
      training_objectdataset.h5                        (objonly, OBJ_ONLY)
      test_objectdataset.h5
  each h5: data float32 (S, 2048, 3), label int (S,), mask (ignored)"""


def scanobjectnn_file_name(variant: str, split: str) -> str:
    """Official file name of a variant's split, e.g. ``training_objectdataset.h5``."""
    return f"{_SPLIT_PREFIX[split]}_objectdataset{VARIANTS[variant][1]}.h5"


def scanobjectnn_relative_path(variant: str, split: str) -> Path:
    """Path of a variant's split file relative to the ScanObjectNN root."""
    return Path(VARIANTS[variant][0]) / scanobjectnn_file_name(variant, split)


def locate_scanobjectnn_file(root: Path | str, variant: str, split: str) -> Path:
    """Find a variant's split file under ``root`` (see the module docstring for what root may be)."""
    root = Path(root)
    folder, _ = VARIANTS[variant]
    name = scanobjectnn_file_name(variant, split)
    candidates = [root / folder / name, root / "ScanObjectNN" / folder / name]
    if root.name == folder:
        candidates.append(root / name)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    if not root.is_dir():
        problem = f"the ScanObjectNN root {root} does not exist"
    else:
        problem = f"no {folder}/{name} under {root}"
    raise DataError(
        f"{problem} (variant {variant!r}, split {split!r}); looked for: "
        + ", ".join(str(c) for c in candidates)
        + f"\nexpected layout:\n{LAYOUT}\nthe data comes from: {SCANOBJECTNN_SOURCE}"
    )


class ScanObjectNNDataset(PointCloudDataset):
    """One ScanObjectNN variant and split, read into memory once.

    Items: ``(points (npoints, 3) float32 tensor, label int)``; 15 classes
    (:data:`SCANOBJECTNN_CLASSES`).

    Args:
        root: the ScanObjectNN folder (holding ``main_split/`` and ``main_split_nobg/``).
        split: ``"train"`` or ``"test"``.
        variant: ``"hardest"`` (PB_T50_RS), ``"objbg"`` (OBJ_BG) or ``"objonly"`` (OBJ_ONLY).
        npoints: first ``npoints`` of the 2048 stored points (None = all).
        shuffle_points: permute each item's points; None = for the train split, as the official loader.
    """

    def __init__(
        self,
        root: Path | str,
        split: str = "train",
        variant: str = "hardest",
        npoints: int | None = None,
        shuffle_points: bool | None = None,
    ) -> None:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r} for ScanObjectNN; choose one of {', '.join(SPLITS)}")
        if variant not in VARIANTS:
            raise DataError(
                f"unknown ScanObjectNN variant {variant!r}; choose one of {', '.join(VARIANTS)} "
                "(hardest = PB_T50_RS, objbg = OBJ_BG, objonly = OBJ_ONLY)"
            )
        path = locate_scanobjectnn_file(root, variant, split)
        arrays = read_h5(path, ("data", "label"))
        points = check_clouds(arrays["data"], path, channels=(3,))
        labels = check_labels(arrays["label"], points.shape[0], len(SCANOBJECTNN_CLASSES), path)
        super().__init__(
            points,
            labels,
            SCANOBJECTNN_CLASSES,
            npoints=check_npoints(npoints, points.shape[1], path),
            channels=3,
            shuffle_points=split == "train" if shuffle_points is None else shuffle_points,
        )
        self.path = path
        self.variant = variant
        self.split = split
