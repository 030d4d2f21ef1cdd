"""Synthetic data in the official file layouts, for tests, demos and smoke runs.

``make_synthetic("scanobjectnn", out, num_train=..., num_test=..., seed=...)`` writes
``out/main_split/*.h5`` and ``out/main_split_nobg/*.h5`` (all three variants);
``make_synthetic("modelnet40", out, ...)`` writes the ``modelnet40_normal_resampled`` text
layout into ``out`` and its ``.dat`` caches; ``make_synthetic("shapenet55", out, ...)`` the
ShapeNet-55 layout (``ShapeNet-55/{train,test}.txt``, ``shapenet_pc/*.npy`` of 8192 points), one
taxonomy per procedural shape (all 47), many instances each, for pre-training.  The shapes
come from :mod:`datasets.shapes`: procedural objects sampled uniformly over their surfaces and
normalised to the unit sphere, so only shape tells classes apart.  The ScanObjectNN files
reuse the 15 official class names as labels for look-alike procedural shapes
(``SCANOBJECTNN_SHAPES``); the ModelNet40 files name their classes after the procedural shapes
(``modelnet40_shape_names.txt`` lists them; 40 by default, up to 47).  Everything is deterministic for a given seed.

Per object (a random generator per sample, seeded by ``(seed, split, index)``, so the three
ScanObjectNN variants show the same objects): surface sampling, normalisation, anisotropic
scale U(0.85, 1.15) per axis, a pose (ScanObjectNN: any yaw and ±6° tilt; ModelNet40: yaw
±15°, upright as the CAD originals), and for ScanObjectNN a view-side occlusion removing up to
30 % of the surface and Gaussian noise σ = 0.01.  Variants: ``objonly`` the object alone;
``objbg`` the object plus 15-35 % background points (a floor patch, sometimes a wall, small
clutter boxes) inside an enlarged bounding box, as OBJ_BG; ``hardest`` as objbg with the
crop box shifted by up to ±25 % of the object's extent and scaled U(0.85, 1.15), cutting part
of the object off — a milder stand-in for PB_T50_RS's 50 % translation.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import h5py
import numpy as np

from backbones.errors import DataError

from .classes import SCANOBJECTNN_CLASSES
from .modelnet40 import SHAPE_NAMES_FILE, build_dat_cache
from .part_shapes import PART_SHAPES, write_shapenetpart
from .scanobjectnn import VARIANTS, scanobjectnn_relative_path
from .shapes import SHAPES, box, rot_x, rot_y, rot_z, sample_shape

FORMATS = ("scanobjectnn", "modelnet40", "shapenet55", "shapenetpart")
#: ShapeNetPart defaults: train (incl. val) / test shapes, the 16 categories taking turns.
SHAPENETPART_SIZES = (320, 160)
#: ScanObjectNN defaults: train / test samples.
SCANOBJECTNN_SIZES = (600, 150)
#: ModelNet40 defaults: samples per class in each split — enough for every official few-shot fold
#: (up to 20 train and 20 test samples per class), so the layout can feed ``make_fewshot_folds``.
MODELNET40_PER_CLASS = 20
#: ShapeNet-55 defaults: instances per taxonomy (procedural shape) in each split.
SHAPENET55_PER_CLASS = (40, 10)
#: Stream of the ShapeNet-55 objects: never the same instance as the ModelNet40 or ScanObjectNN
#: writers draw for the same seed, split and index (pre-training must not see the test objects).
SHAPENET55_STREAM = 55
SPLIT_IDS = {"train": 0, "test": 1}
INFO_FILE = "synthetic_info.json"

# Official ScanObjectNN label name -> procedural look-alike.
SCANOBJECTNN_SHAPES: dict[str, str] = {
    "bag": "bag",
    "bin": "bin",
    "box": "cube",
    "cabinet": "cabinet",
    "chair": "chair",
    "desk": "desk",
    "display": "monitor",
    "door": "door",
    "shelf": "shelf",
    "table": "table",
    "bed": "bed",
    "pillow": "pillow",
    "sink": "sink",
    "sofa": "sofa",
    "toilet": "toilet",
}
# The ModelNet40 layout's classes: every library shape, the look-alikes of the ScanObjectNN
# set that resemble another shape (bag~cube, bin~pipe, cabinet~cube, capsule~cylinder,
# desk~table, pillow~torus, sink~bowl) last, so the default 40 are the most distinct.
MODELNET40_SHAPES: tuple[str, ...] = tuple(
    name for name in SHAPES if name not in ("bag", "bin", "cabinet", "capsule", "desk", "pillow", "sink")
) + ("capsule", "desk", "sink", "bin", "cabinet", "bag", "pillow")

SCAN_POINTS = 2048
SHAPENETPART_POINTS = 2048  # mean points per file (the official files hold about 2,600)
MODELNET_POINTS = 2048
SHAPENET_POINTS = 8192
_OVERSAMPLE = 2.0  # surface points drawn per kept point: room for occlusion and cropping


def _unit_sphere(points: np.ndarray) -> np.ndarray:
    """Centre on the bounding-box centre and scale to max norm 1. (N, 3) -> (N, 3)."""
    centred = points - (points.min(0) + points.max(0)) / 2
    return centred / np.linalg.norm(centred, axis=1).max()


def posed_object(shape: str, count: int, rng: np.random.Generator, scanned: bool) -> tuple[np.ndarray, np.ndarray]:
    """One object instance: ``count`` surface points and normals, normalised, scaled and posed.

    Args:
        scanned: ScanObjectNN style (any yaw, small tilt) instead of upright ModelNet40 style.

    Returns:
        points (count, 3), unit normals (count, 3).
    """
    points, normals = sample_shape(shape, count, rng)
    points = _unit_sphere(points)
    scale = rng.uniform(0.85, 1.15, size=3)
    points = points * scale
    normals = normals / scale  # normals transform with the inverse-transpose
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    if scanned:
        pose = rot_y(rng.uniform(0, 2 * math.pi)) @ rot_x(rng.uniform(-0.1, 0.1)) @ rot_z(rng.uniform(-0.1, 0.1))
    else:
        pose = rot_y(rng.uniform(-math.pi / 12, math.pi / 12))
    return points @ pose.T, normals @ pose.T


def occlude(points: np.ndarray, rng: np.random.Generator, max_fraction: float) -> np.ndarray:
    """Remove the points beyond a random plane facing a horizontal view direction.

    Up to ``max_fraction`` of the points go, as a scanner misses the far side. (N, 3) -> (M, 3).
    """
    angle = rng.uniform(0, 2 * math.pi)
    direction = np.array([math.cos(angle), rng.uniform(-0.3, 0.3), math.sin(angle)])
    depth = points @ direction
    fraction = rng.uniform(0, max_fraction)
    return points[depth <= np.quantile(depth, 1 - fraction)]


def _choose(points: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    replace = len(points) < count
    return points[rng.choice(len(points), size=count, replace=replace)]


def background_points(
    obj: np.ndarray, count: int, rng: np.random.Generator, crop_low: np.ndarray, crop_high: np.ndarray
) -> np.ndarray:
    """Background around an object: a floor patch, maybe a wall, a few clutter boxes.

    All inside the crop box [crop_low, crop_high] (as ScanObjectNN keeps what lies in the
    object's enlarged bounding box). Returns (count, 3).
    """
    floor_y = obj[:, 1].min()
    (x0, _, z0), (x1, y1, z1) = crop_low, crop_high
    pieces: list[tuple[float, object]] = []
    pieces.append(
        (
            (x1 - x0) * (z1 - z0),
            lambda n: np.column_stack([rng.uniform(x0, x1, n), np.full(n, floor_y), rng.uniform(z0, z1, n)]),
        )
    )
    if rng.random() < 0.5:
        wall_z = z0 if rng.random() < 0.5 else z1
        pieces.append(
            (
                (x1 - x0) * (y1 - floor_y),
                lambda n: np.column_stack([rng.uniform(x0, x1, n), rng.uniform(floor_y, y1, n), np.full(n, wall_z)]),
            )
        )
    for _ in range(rng.integers(0, 3)):
        size = rng.uniform(0.1, 0.35, size=3)
        centre = np.array([rng.uniform(x0, x1), floor_y + size[1] / 2, rng.uniform(z0, z1)])
        clutter = box(size, centre).primitive
        pieces.append((clutter.area, lambda n, mesh=clutter, c=centre: mesh.sample(n, rng)[0] + c))
    areas = np.array([area for area, _ in pieces])
    counts = rng.multinomial(count, areas / areas.sum())
    out = [sampler(int(n)) for (_, sampler), n in zip(pieces, counts, strict=True) if n > 0]
    return np.clip(np.concatenate(out), crop_low, crop_high)


def scan_variants(
    shape: str, num_points: int, rng: np.random.Generator, variants: Iterable[str], background: bool
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One scanned object in each requested variant: ``{variant: (points (n, 3), mask (n,))}``.

    ``mask`` is 1 for object points and 0 for background. The object comes from ``rng``; each
    variant then draws from its own generator spawned from it, so variants share the object.
    """
    surface, _ = posed_object(shape, int(num_points * _OVERSAMPLE), rng, scanned=True)
    surface = occlude(surface, rng, max_fraction=0.3)
    low, high = surface.min(0), surface.max(0)
    centre, extent = (low + high) / 2, high - low
    out = {}
    # one child generator per known variant, so a variant's content does not depend on which others are written
    children = dict(zip(VARIANTS, rng.spawn(len(VARIANTS)), strict=True))
    for variant in variants:
        variant_rng = children[variant]
        obj = surface
        crop_low, crop_high = centre - extent * 0.65, centre + extent * 0.65
        if variant == "hardest":
            shift = variant_rng.uniform(-0.25, 0.25, size=3) * extent * np.array([1, 0, 1])
            half = extent / 2 * variant_rng.uniform(0.85, 1.15)
            crop_low, crop_high = centre + shift - half * 1.3, centre + shift + half * 1.3
            inside = np.all((obj >= centre + shift - half) & (obj <= centre + shift + half), axis=1)
            if inside.sum() >= num_points // 4:
                obj = obj[inside]
        with_background = background and variant != "objonly"
        num_background = int(num_points * variant_rng.uniform(0.15, 0.35)) if with_background else 0
        parts = [_choose(obj, num_points - num_background, variant_rng)]
        if num_background:
            parts.append(background_points(obj, num_background, variant_rng, crop_low, crop_high))
        points = np.concatenate(parts)
        mask = np.concatenate([np.ones(num_points - num_background, np.int32), np.zeros(num_background, np.int32)])
        points = points + variant_rng.normal(0, 0.01, size=points.shape)
        points = points - points.mean(0)
        points /= np.linalg.norm(points, axis=1).max()
        order = variant_rng.permutation(num_points)
        out[variant] = (points[order].astype(np.float32), mask[order])
    return out


def _split_labels(count: int, num_classes: int, seed: int, split: str) -> np.ndarray:
    """Balanced labels (every class count or count+1 times) in a seeded random order."""
    rng = np.random.default_rng([seed, SPLIT_IDS[split], 7])
    return rng.permutation(np.arange(count) % num_classes)


def _sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLIT_IDS[split], index])


def write_scanobjectnn(
    out: Path,
    num_train: int,
    num_test: int,
    seed: int,
    variants: Iterable[str] = tuple(VARIANTS),
    background: bool = True,
    num_points: int = SCAN_POINTS,
) -> list[Path]:
    """Write the ScanObjectNN layout (15 classes) under ``out``; return the written h5 files."""
    variants = tuple(variants)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise DataError(f"unknown ScanObjectNN variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    written = []
    for split, count in (("train", num_train), ("test", num_test)):
        labels = _split_labels(count, len(SCANOBJECTNN_CLASSES), seed, split)
        data = {v: np.empty((count, num_points, 3), np.float32) for v in variants}
        masks = {v: np.empty((count, num_points), np.int32) for v in variants}
        for index, label in enumerate(labels):
            shape = SCANOBJECTNN_SHAPES[SCANOBJECTNN_CLASSES[label]]
            samples = scan_variants(shape, num_points, _sample_rng(seed, split, index), variants, background)
            for variant, (points, mask) in samples.items():
                data[variant][index], masks[variant][index] = points, mask
        for variant in variants:
            path = out / scanobjectnn_relative_path(variant, split)
            path.parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(path, "w") as handle:
                handle.create_dataset("data", data=data[variant])
                handle.create_dataset("label", data=labels.astype(np.int32))
                handle.create_dataset("mask", data=masks[variant])
            written.append(path)
    return written


def _format_rows(rows: np.ndarray) -> str:
    """(N, 6) -> comma-separated text, one row a line (one format call: fast)."""
    line = ",".join(["%.6f"] * rows.shape[1]) + "\n"
    return (line * len(rows)) % tuple(rows.ravel())


def write_modelnet40(
    out: Path,
    num_train: int,
    num_test: int,
    seed: int,
    num_points: int = MODELNET_POINTS,
    num_classes: int = 40,
    write_cache: bool = True,
) -> list[Path]:
    """Write the ``modelnet40_normal_resampled`` text layout (and its .dat caches) into ``out``."""
    if not 2 <= num_classes <= len(MODELNET40_SHAPES):
        raise DataError(f"num_classes must be in 2..{len(MODELNET40_SHAPES)}, got {num_classes}")
    names = MODELNET40_SHAPES[:num_classes]
    out.mkdir(parents=True, exist_ok=True)
    (out / SHAPE_NAMES_FILE).write_text("".join(f"{name}\n" for name in names))
    next_number = dict.fromkeys(names, 1)
    written = []
    for split, count in (("train", num_train), ("test", num_test)):
        ids = []
        for index, label in enumerate(_split_labels(count, num_classes, seed, split)):
            name = names[label]
            shape_id = f"{name}_{next_number[name]:04d}"
            next_number[name] += 1
            points, normals = posed_object(name, num_points, _sample_rng(seed, split, index), scanned=False)
            points = points - points.mean(0)
            points /= np.linalg.norm(points, axis=1).max()
            (out / name).mkdir(exist_ok=True)
            (out / name / f"{shape_id}.txt").write_text(_format_rows(np.hstack([points, normals])))
            ids.append(shape_id)
        (out / f"modelnet40_{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        if write_cache:
            written.append(build_dat_cache(out, split))
    return written


def write_shapenet55(
    out: Path, num_train: int, num_test: int, seed: int, num_points: int = SHAPENET_POINTS
) -> list[Path]:
    """Write the ShapeNet-55 layout into ``out``; return the two list files.

    Taxonomy ids are the procedural shape names (``chair-train000012.npy``); every cloud is an
    upright instance (yaw ±15°, anisotropic scale) centred and scaled into the unit sphere.
    """
    from .shapenet55 import CLOUD_FOLDER, LIST_FOLDER

    names = tuple(SHAPES)
    (out / LIST_FOLDER).mkdir(parents=True, exist_ok=True)
    (out / CLOUD_FOLDER).mkdir(parents=True, exist_ok=True)
    written = []
    for split, count in (("train", num_train), ("test", num_test)):
        files = []
        for index, label in enumerate(_split_labels(count, len(names), seed, split)):
            rng = np.random.default_rng([seed, SPLIT_IDS[split], index, SHAPENET55_STREAM])
            points, _ = posed_object(names[label], num_points, rng, scanned=False)
            points = points - points.mean(0)
            points /= np.linalg.norm(points, axis=1).max()
            file = f"{names[label]}-{split}{index:06d}.npy"
            np.save(out / CLOUD_FOLDER / file, points.astype(np.float32))
            files.append(file)
        path = out / LIST_FOLDER / f"{split}.txt"
        path.write_text("".join(f"{file}\n" for file in files))
        written.append(path)
    return written


def default_split_sizes(
    format: str, num_classes: int, num_train: int | None = None, num_test: int | None = None
) -> tuple[int, int]:
    """``(num_train, num_test)`` with the format's default in place of each None."""
    if format == "modelnet40":
        defaults = (MODELNET40_PER_CLASS * num_classes, MODELNET40_PER_CLASS * num_classes)
    elif format == "shapenet55":
        defaults = (SHAPENET55_PER_CLASS[0] * len(SHAPES), SHAPENET55_PER_CLASS[1] * len(SHAPES))
    elif format == "shapenetpart":
        defaults = SHAPENETPART_SIZES
    else:
        defaults = SCANOBJECTNN_SIZES
    return (defaults[0] if num_train is None else num_train, defaults[1] if num_test is None else num_test)


def make_synthetic(
    format: str,
    out: Path | str,
    *,
    num_train: int | None = None,
    num_test: int | None = None,
    seed: int = 0,
    num_points: int | None = None,
    variants: Iterable[str] = tuple(VARIANTS),
    background: bool = True,
    num_classes: int = 40,
) -> Path:
    """Write a small synthetic dataset in an official layout; return the folder to load.

    Args:
        format: ``"scanobjectnn"`` (writes ``out/main_split/`` and ``out/main_split_nobg/``,
            15 classes, 2048 points) or ``"modelnet40"`` (writes the
            ``modelnet40_normal_resampled`` text layout into ``out`` plus the FPS ``.dat``
            caches; ``num_classes`` classes, 2048 points per text file by default) or
            ``"shapenet55"`` (``ShapeNet-55/{train,test}.txt`` and ``shapenet_pc/*.npy``, one
            taxonomy per procedural shape, 8192 points per cloud by default; unlabeled use)
            or ``"shapenetpart"`` (the ``shapenetcore_partanno_segmentation_benchmark_v0_normal``
            layout into ``out``: 16 procedural categories with their official part labels,
            about ``num_points`` points per shape; :mod:`datasets.part_shapes`).
        out: the folder to write; use it as the dataset root. A new folder appears only when
            complete (written under a temporary name, then renamed); an existing one is written into.
        num_train, num_test: samples per split (classes balanced); None = 600 / 150 for
            ScanObjectNN, 20 per class in each split for ModelNet40 (800 / 800 with 40
            classes: enough for every official 5/10-way 10/20-shot fold), 40 / 10 per
            shape for ShapeNet-55 (1880 / 470) and 320 / 160 for ShapeNetPart.
        seed: everything written is a function of the seed.
        num_points: points per sample (default 2048; ShapeNet-55 8192).
        variants: ScanObjectNN variants to write (hardest, objbg, objonly).
        background: give objbg/hardest background points (False: object only everywhere).
        num_classes: ModelNet40 layout only, 2..47.

    Returns:
        ``Path(out)``, which ``build_dataset(format, out, split)`` reads.
    """
    if format not in FORMATS:
        raise DataError(f"unknown synthetic format {format!r}; choose one of {', '.join(FORMATS)}")
    num_train, num_test = default_split_sizes(format, num_classes, num_train, num_test)
    sizes = [("num_train", num_train), ("num_test", num_test)]
    if num_points is not None:
        sizes.append(("num_points", num_points))
    for name, value in sizes:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DataError(f"{name} must be a positive integer, got {value!r}")
    out = Path(out)
    # A new folder is written under a temporary name and renamed when complete, so an
    # interrupted run never leaves a half-written dataset that a later run would take as done.
    fresh = not out.exists()
    target = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=_existing_parent(out))) if fresh else out
    try:
        if format == "scanobjectnn":
            points = num_points or SCAN_POINTS
            write_scanobjectnn(target, num_train, num_test, seed, variants, background, points)
            classes = {name: SCANOBJECTNN_SHAPES[name] for name in SCANOBJECTNN_CLASSES}
        elif format == "shapenetpart":
            points = num_points or SHAPENETPART_POINTS
            write_shapenetpart(target, num_train, num_test, seed, points)
            classes = {name: f"procedural {name.lower()} with its official parts" for name in PART_SHAPES}
        elif format == "modelnet40":
            points = num_points or MODELNET_POINTS
            write_modelnet40(target, num_train, num_test, seed, points, num_classes)
            classes = {name: name for name in MODELNET40_SHAPES[:num_classes]}
        else:
            points = num_points or SHAPENET_POINTS
            write_shapenet55(target, num_train, num_test, seed, points)
            classes = {name: name for name in SHAPES}
    except BaseException:
        if fresh:
            shutil.rmtree(target, ignore_errors=True)
        raise
    info = {
        "synthetic": True,
        "format": format,
        "seed": seed,
        "num_train": num_train,
        "num_test": num_test,
        "num_points": points,
        "class_to_procedural_shape": classes,
        "generator": "datasets.synthetic.make_synthetic (pcclora)",
    }
    (target / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    if fresh:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(target, 0o777 & ~umask)  # mkdtemp makes it private; the dataset folder should not be
        os.replace(target, out)
    return out


def _existing_parent(out: Path) -> Path:
    """Create ``out``'s parent folders and return the parent (the temporary folder goes there)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return out.parent
