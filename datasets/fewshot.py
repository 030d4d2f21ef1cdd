"""Few-shot ModelNet40: the official fold files, and a generator of such folds.

Layout (Point-BERT / Point-MAE ``ModelNetFewshot``)::

    ModelNetFewshot/
      5way10shot/0.pkl ... 9.pkl      (also read as 5way_10shot/, the name the official loader uses)
      5way20shot/ 10way10shot/ 10way20shot/

Each pickle is ``{'train': [(points (P, 6) float32, label 0..way-1, original class), ...],
'test': [...]}`` with ``shot`` train and 20 test samples per class; P = 8192 in the official files.
At load xyz are normalised (``pc_normalize``) as the official loader does.
"""

from __future__ import annotations

import numbers
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from backbones.errors import DataError

from .base import PointCloudDataset
from .classes import FEWSHOT_SOURCE, MODELNET40_CLASSES
from .modelnet40 import (
    SHAPE_NAMES_FILE,
    build_dat_cache,
    dat_cache_path,
    locate_modelnet40,
    parse_dat,
    pc_normalize,
    read_name_list,
)
from .storage import load_pickle, write_pickle_atomic
from .validation import check_clouds, check_labels, check_npoints

SPLITS = ("train", "test")
EVAL_SAMPLES_PER_CLASS = 20

LAYOUT = """  ModelNetFewshot/                  <- give this folder as root
    5way10shot/0.pkl ... 9.pkl        ({way}way{shot}shot/ or {way}way_{shot}shot/)
    5way20shot/  10way10shot/  10way20shot/
    modelnet40_shape_names.txt        optional: names of the original classes
  each pkl: {'train': [(points (8192, 6) float32, label 0..way-1, original class), ...], 'test': [...]}"""


def fold_dir_names(way: int, shot: int) -> tuple[str, str]:
    """The two folder names in use: ``5way10shot`` (DATASET.md) and ``5way_10shot`` (the loader)."""
    return f"{way}way{shot}shot", f"{way}way_{shot}shot"


def locate_fold(root: Path | str, way: int, shot: int, fold: int) -> Path:
    """Path of ``{way}way{shot}shot/{fold}.pkl`` (or the underscore spelling) under ``root``."""
    root = Path(root)
    candidates = [root / name / f"{fold}.pkl" for name in fold_dir_names(way, shot)]
    candidates += [root / "ModelNetFewshot" / name / f"{fold}.pkl" for name in fold_dir_names(way, shot)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    problem = f"the few-shot root {root} does not exist" if not root.is_dir() else f"no fold file under {root}"
    raise DataError(
        f"{problem} ({way}-way {shot}-shot fold {fold}); looked for: "
        + ", ".join(str(c) for c in candidates)
        + f"\nexpected layout:\n{LAYOUT}\nthe data comes from: {FEWSHOT_SOURCE}"
    )


def _parse_fold(content: object, split: str, path: Path) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    if not isinstance(content, dict) or split not in content:
        keys = sorted(content) if isinstance(content, dict) else type(content).__name__
        raise DataError(f"{path}: expected a pickled dict with keys 'train' and 'test', got {keys}")
    items = content[split]
    if not isinstance(items, (list, tuple)) or not items:
        raise DataError(f"{path}: {split!r} must be a non-empty list of (points, label, original class)")
    if any(not isinstance(item, (list, tuple)) or len(item) != 3 for item in items):
        raise DataError(f"{path}: every {split!r} item must be a tuple (points, label, original class)")
    clouds = [np.asarray(item[0]) for item in items]
    return clouds, np.array([item[1] for item in items]), np.array([item[2] for item in items])


class ModelNetFewShotDataset(PointCloudDataset):
    """One split of one few-shot fold. Items: ``(points (npoints, 3 or 6) float32, label int)``.

    ``class_names[i]`` is the name of the original class behind label ``i`` (from a
    ``modelnet40_shape_names.txt`` in ``root`` when present, else the official 40 names).

    Args:
        root: the ``ModelNetFewshot`` folder.
        split: ``"train"`` or ``"test"``.
        way, shot, fold: which fold file.
        npoints: first ``npoints`` of each stored (FPS-ordered) cloud; None = all.
        use_normals: serve normals too.
        shuffle_points: permute each item's points; None = for the train split.
    """

    def __init__(
        self,
        root: Path | str,
        split: str = "train",
        way: int = 5,
        shot: int = 10,
        fold: int = 0,
        npoints: int | None = None,
        use_normals: bool = False,
        shuffle_points: bool | None = None,
    ) -> None:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r} for few-shot ModelNet40; choose one of {', '.join(SPLITS)}")
        path = locate_fold(root, way, shot, fold)
        clouds, labels, originals = _parse_fold(load_pickle(path), split, path)
        channels = 6 if use_normals else 3
        if any(cloud.ndim != 2 or cloud.shape[1] < channels for cloud in clouds):
            shapes = sorted({cloud.shape for cloud in clouds})
            raise DataError(f"{path}: clouds have shapes {shapes[:3]}, expected (points, 6)")
        shortest = min(len(cloud) for cloud in clouds)
        points = check_clouds(np.stack([cloud[:shortest, :channels] for cloud in clouds]), path, (channels,))
        labels = check_labels(labels, len(clouds), way, path)
        points[..., :3] = pc_normalize(points[..., :3])
        super().__init__(
            points,
            labels,
            self._class_names(Path(root), labels, originals, way),
            npoints=check_npoints(npoints, shortest, path),
            channels=channels,
            shuffle_points=split == "train" if shuffle_points is None else shuffle_points,
        )
        self.path = path
        self.original_classes = originals

    @staticmethod
    def _class_names(root: Path, labels: np.ndarray, originals: np.ndarray, way: int) -> list[str]:
        names_file = root / SHAPE_NAMES_FILE
        all_names = read_name_list(names_file) if names_file.is_file() else list(MODELNET40_CLASSES)
        names = [f"class_{i}" for i in range(way)]
        for label, original in zip(labels, originals, strict=True):
            original = int(original)
            names[label] = all_names[original] if 0 <= original < len(all_names) else f"class_{original}"
        return names


def make_fewshot_folds(
    source: Path | str,
    out: Path | str,
    *,
    ways: Iterable[int] = (5, 10),
    shots: Iterable[int] = (10, 20),
    folds: int = 10,
    seed: int = 0,
    eval_samples: int = EVAL_SAMPLES_PER_CLASS,
) -> list[Path]:
    """Write few-shot folds ``out/{way}way{shot}shot/{fold}.pkl`` from a ModelNet40 folder.

    For every fold: ``way`` classes drawn at random; per class ``shot`` train samples from the
    train split and ``eval_samples`` test samples from the test split (disjoint by construction,
    as the official generator); items shuffled. Points are the raw cache arrays ((8192, 6) for
    the official cache), labels 0..way-1, and the original class index. Deterministic by ``seed``.

    Args:
        source: a ModelNet40 folder with the ``.dat`` caches (or the text layout, which builds them).
        out: the ``ModelNetFewshot`` folder to write; the source's class-name file is copied there.

    Returns:
        the written fold files.

    Raises:
        DataError: a size below 1, or a source too small for a fold; files this call wrote
            are removed again.
    """
    ways, shots = list(ways), list(shots)
    sizes = [("way", way) for way in ways] + [("shot", shot) for shot in shots]
    sizes += [("folds", folds), ("eval_samples", eval_samples)]
    for name, value in sizes:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise DataError(f"{name} must be a positive integer, got {value!r}")
    data = {}
    for split in SPLITS:
        folder, kind = locate_modelnet40(source, split, "auto")
        if kind == "h5":
            raise DataError(f"{source}: few-shot folds are made from the .dat or text layout, not from h5")
        path = dat_cache_path(folder, split)
        if not path.is_file():
            build_dat_cache(folder, split)
        points, labels = parse_dat(load_pickle(path), path, channels=6)
        data[split] = (points, labels.astype(np.int64))
    out = Path(out)
    new_out = not out.exists()
    names_file = folder / SHAPE_NAMES_FILE
    classes = np.unique(data["train"][1])
    written: list[Path] = []
    try:
        if names_file.is_file():
            out.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(names_file, out / SHAPE_NAMES_FILE)
        for way in ways:
            for shot in shots:
                for fold in range(folds):
                    rng = np.random.default_rng([seed, way, shot, fold])
                    fold_content = _draw_fold(data, classes, way, shot, eval_samples, rng)
                    path = out / fold_dir_names(way, shot)[0] / f"{fold}.pkl"
                    write_pickle_atomic(fold_content, path)
                    written.append(path)
    except BaseException:  # leave no half-written set of folds behind
        if new_out:
            shutil.rmtree(out, ignore_errors=True)
        else:
            for path in written:
                path.unlink(missing_ok=True)
        raise
    return written


def _draw_fold(
    data: dict[str, tuple[np.ndarray, np.ndarray]],
    classes: np.ndarray,
    way: int,
    shot: int,
    eval_samples: int,
    rng: np.random.Generator,
) -> dict[str, list[tuple[np.ndarray, int, int]]]:
    if way > len(classes):
        raise DataError(f"{way}-way folds need {way} classes but the source has {len(classes)}")
    chosen = rng.permutation(classes)[:way]
    fold: dict[str, list[tuple[np.ndarray, int, int]]] = {"train": [], "test": []}
    for new_label, original in enumerate(chosen):
        for split, count in (("train", shot), ("test", eval_samples)):
            points, labels = data[split]
            members = np.flatnonzero(labels == original)
            if len(members) < count:
                raise DataError(
                    f"class {int(original)} has {len(members)} {split} samples, a {way}-way {shot}-shot "
                    f"fold needs {count}; use a larger source or smaller way/shot"
                )
            for index in rng.permutation(members)[:count]:
                fold[split].append((points[index].copy(), new_label, int(original)))
    for split in fold:
        order = rng.permutation(len(fold[split]))
        fold[split] = [fold[split][i] for i in order]
    return fold
