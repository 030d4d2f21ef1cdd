"""Procedural shapes with labelled parts, one per ShapeNetPart category, for synthetic segmentation data.

Each builder returns ``[(part, primitive), ...]``: ``part`` is the index into the category's
official part labels (Airplane 0-3, Bag 4-5, ...; :data:`datasets.shapenetpart.SHAPENETPART_PARTS`)
and the primitive a placed box / cylinder / sphere / torus of :mod:`datasets.shapes`. A point's
part is the primitive it was sampled from, so the parts are learnable from the geometry. Every
builder uses every part of its category, jitters its proportions (±10-20 %), and keeps y up,
as the aligned ShapeNet models.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .shapes import Part, box, cylinder, rot_x, rot_y, rot_z, sphere, torus

PartBuilder = Callable[[np.random.Generator], list[tuple[int, Part]]]
PART_SHAPES: dict[str, PartBuilder] = {}


def _category(name: str) -> Callable[[PartBuilder], PartBuilder]:
    def register(builder: PartBuilder) -> PartBuilder:
        PART_SHAPES[name] = builder
        return builder

    return register


def _j(rng: np.random.Generator, value: float, spread: float = 0.15) -> float:
    return value * rng.uniform(1 - spread, 1 + spread)


def _along_x(radius: float, length: float, offset: tuple[float, float, float], **kwargs) -> Part:
    return cylinder(radius, length, offset, rot_z(math.pi / 2), **kwargs)


def _along_z(radius: float, length: float, offset: tuple[float, float, float], **kwargs) -> Part:
    return cylinder(radius, length, offset, rot_x(math.pi / 2), **kwargs)


def _four_legs(part: int, hx: float, hz: float, height: float, t: float) -> list[tuple[int, Part]]:
    return [(part, box((t, height, t), (sx * hx, height / 2, sz * hz))) for sx in (-1, 1) for sz in (-1, 1)]


@_category("Airplane")
def _airplane(rng):
    length, span = _j(rng, 2.0), _j(rng, 2.0)
    return [
        (0, _along_x(0.15, length, (0, 0, 0))),  # body
        (1, box((0.45, 0.04, span), (0.05, 0, 0))),  # wings
        (2, box((0.3, 0.4, 0.05), (-length / 2 + 0.15, 0.25, 0))),  # tail
        (3, _along_x(0.08, 0.4, (0.15, -0.12, span / 4))),  # engines
        (3, _along_x(0.08, 0.4, (0.15, -0.12, -span / 4))),
    ]


@_category("Bag")
def _bag(rng):
    w, h = _j(rng, 1.0), _j(rng, 0.8)
    return [(0, box((w, h, 0.35), (0, h / 2, 0))), (1, torus(0.25, 0.03, (0, h, 0), rot_x(math.pi / 2), (0, math.pi)))]


@_category("Cap")
def _cap(rng):
    r = _j(rng, 0.5, 0.1)
    return [(0, sphere(r, (0, 0, 0), lower=False)), (1, box((0.7 * r * 2, 0.03, _j(rng, 0.5)), (0, 0.0, r + 0.2)))]


@_category("Car")
def _car(rng):
    length, width = _j(rng, 2.0, 0.1), _j(rng, 0.9, 0.1)
    parts = [(0, box((length, 0.35, width), (0, 0.45, 0)))]  # body
    parts.append((1, box((length * 0.5, 0.3, width * 0.9), (-0.1, 0.78, 0))))  # roof
    parts.append((2, box((length * 0.25, 0.05, width * 0.9), (length * 0.33, 0.64, 0))))  # hood
    for sx in (-1, 1):
        for sz in (-1, 1):
            parts.append((3, _along_z(0.18, 0.12, (sx * length * 0.32, 0.2, sz * width / 2))))  # wheels
    return parts


@_category("Chair")
def _chair(rng):
    w, seat, back = _j(rng, 0.5), _j(rng, 0.5), _j(rng, 0.6)
    return [
        (0, box((2 * w, back, 0.06), (0, seat + back / 2, -w))),  # back
        (1, box((2 * w, 0.06, 2 * w), (0, seat, 0))),  # seat
        *_four_legs(2, w - 0.04, w - 0.04, seat, 0.06),  # legs
        (3, box((0.06, 0.05, 2 * w), (-w, seat + 0.25, 0))),  # arms
        (3, box((0.06, 0.05, 2 * w), (w, seat + 0.25, 0))),
    ]


@_category("Earphone")
def _earphone(rng):
    half = _j(rng, 0.45, 0.1)
    return [
        (0, sphere(0.2, (-half, 0, 0))),  # cups
        (0, sphere(0.2, (half, 0, 0))),
        (1, torus(half, 0.03, (0, 0, 0), rot_x(math.pi / 2), (0, math.pi))),  # band
        (2, cylinder(0.02, _j(rng, 0.8), (half, -0.55, 0), top=False, bottom=False)),  # cord
    ]


@_category("Guitar")
def _guitar(rng):
    neck = _j(rng, 1.0)
    return [
        (0, box((0.18, 0.3, 0.05), (0, 0.6 + neck + 0.15, 0))),  # head
        (1, box((0.1, neck, 0.05), (0, 0.6 + neck / 2, 0))),  # neck
        (2, _along_z(_j(rng, 0.45, 0.1), 0.12, (0, 0.2, 0))),  # body
    ]


@_category("Knife")
def _knife(rng):
    blade = _j(rng, 1.2)
    return [(0, box((blade, 0.2, 0.02), (blade / 2, 0, 0))), (1, _along_x(0.06, _j(rng, 0.6), (-0.3, 0, 0)))]


@_category("Lamp")
def _lamp(rng):
    h = _j(rng, 1.2)
    return [
        (0, cylinder(0.35, 0.05, (0, 0.025, 0))),  # base
        (1, cylinder(0.03, h, (0, h / 2, 0), top=False, bottom=False)),  # pole
        (2, cylinder(_j(rng, 0.45), 0.45, (0, h + 0.1, 0), top=False, bottom=False, top_radius=0.2)),  # shade
        (3, sphere(0.1, (0, h - 0.05, 0))),  # bulb
    ]


@_category("Laptop")
def _laptop(rng):
    w, d = _j(rng, 1.2, 0.1), _j(rng, 0.8, 0.1)
    tilt = rng.uniform(-0.35, 0.05)
    return [(0, box((w, 0.04, d), (0, 0, 0))), (1, box((w, d, 0.03), (0, d / 2, -d / 2), rot_x(tilt)))]


@_category("Motorbike")
def _motorbike(rng):
    length = _j(rng, 1.6, 0.1)
    return [
        (0, box((0.4, 0.22, 0.3), (0.1, 0.75, 0))),  # gas tank
        (1, box((0.45, 0.08, 0.28), (-0.35, 0.72, 0))),  # seat
        (2, _along_z(0.3, 0.1, (length / 2, 0.3, 0))),  # wheels
        (2, _along_z(0.3, 0.1, (-length / 2, 0.3, 0))),
        (3, _along_z(0.025, 0.7, (length / 2 - 0.15, 1.0, 0), top=False, bottom=False)),  # handle
        (4, sphere(0.08, (length / 2 + 0.05, 0.85, 0))),  # light
        (5, box((length * 0.6, 0.25, 0.2), (0, 0.45, 0))),  # body
    ]


@_category("Mug")
def _mug(rng):
    r, h = 0.45, _j(rng, 1.0, 0.1)
    return [
        (0, cylinder(r, h, (0, 0, 0), top=False)),
        (1, torus(0.28, 0.05, (r, 0, 0), rot_x(math.pi / 2), (-math.pi / 2, math.pi / 2))),
    ]


@_category("Pistol")
def _pistol(rng):
    length = _j(rng, 1.0)
    return [
        (0, box((length, 0.2, 0.12), (length / 2 - 0.2, 0.3, 0))),  # barrel / slide
        (1, box((0.22, 0.55, 0.12), (-0.12, -0.05, 0), rot_z(-0.25))),  # grip
        (2, box((0.05, 0.12, 0.05), (0.1, 0.12, 0))),  # trigger
    ]


@_category("Rocket")
def _rocket(rng):
    h = _j(rng, 1.8)
    angles = [2 * math.pi * k / 3 for k in range(3)]
    fins = [(1, box((0.35, 0.4, 0.03), (0.33 * math.cos(a), 0.2, 0.33 * math.sin(a)), rot_y(-a))) for a in angles]
    return [
        (0, cylinder(0.18, h, (0, h / 2, 0), top=False, bottom=True)),  # body
        *fins,  # fins
        (2, cylinder(0.18, 0.4, (0, h + 0.2, 0), top=False, bottom=False, top_radius=0.0)),  # nose
    ]


@_category("Skateboard")
def _skateboard(rng):
    length = _j(rng, 1.8, 0.1)
    parts = [(0, box((length, 0.04, 0.5), (0, 0.25, 0)))]  # deck
    for sx in (-1, 1):
        parts.append((2, box((0.08, 0.1, 0.35), (sx * length * 0.33, 0.18, 0))))  # trucks
        for sz in (-1, 1):
            parts.append((1, _along_z(0.07, 0.06, (sx * length * 0.33, 0.08, sz * 0.2))))  # wheels
    return parts


@_category("Table")
def _table(rng):
    hx, hz, height = _j(rng, 0.9), _j(rng, 0.6), _j(rng, 0.9)
    return [
        (0, box((2 * hx + 0.1, 0.06, 2 * hz + 0.1), (0, height, 0))),  # top
        *_four_legs(1, hx - 0.05, hz - 0.05, height, 0.07),  # legs
        (2, box((2 * hx - 0.1, 0.05, 0.05), (0, height * 0.3, 0))),  # stretcher
    ]


def sample_part_shape(category: str, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` surface points of one random instance of ``category`` with their parts.

    Points go to the primitives in proportion to their area plus a floor of a third of the mean
    area, so that small parts (a trigger, a light) still get points.

    Returns:
        points (count, 3), unit normals (count, 3), part index within the category (count,).
    """
    placed = PART_SHAPES[category](rng)
    areas = np.array([part.primitive.area for _, part in placed])
    weights = areas + areas.mean() / 3
    counts = rng.multinomial(count, weights / weights.sum())
    points, normals, parts = [], [], []
    for (index, part), part_count in zip(placed, counts, strict=True):
        if part_count == 0:
            continue
        p, n = part.primitive.sample(int(part_count), rng)
        points.append(p @ part.rotation.T + part.offset)
        normals.append(n @ part.rotation.T)
        parts.append(np.full(int(part_count), index, dtype=np.int64))
    return np.concatenate(points), np.concatenate(normals), np.concatenate(parts)


#: Share of the synthetic training shapes listed in the val file (the loader's train split reads both).
VAL_SHARE = 0.2


def write_shapenetpart(out: Path, num_train: int, num_test: int, seed: int, num_points: int) -> list[Path]:
    """Write the official ShapeNetPart layout into ``out`` from :data:`PART_SHAPES`.

    ``num_train`` shapes (a fifth of them listed in the val file) and ``num_test`` shapes, the
    categories taking turns; each file holds ``num_points`` · U(0.8, 1.2) points (the official
    files differ in size too) as ``x y z nx ny nz part-label`` rows. Deterministic for a seed.

    Returns:
        The three split files written.
    """
    from .shapenetpart import CATEGORY_FILE, SHAPENETPART_PARTS, SHAPENETPART_SYNSETS, SPLIT_FOLDER

    categories = list(SHAPENETPART_PARTS)
    (out / CATEGORY_FILE).write_text("".join(f"{name}\t{SHAPENETPART_SYNSETS[name]}\n" for name in categories))
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for split, count in (("train", num_train), ("test", num_test)):
        for index in range(count):
            category = categories[index % len(categories)]
            rng = np.random.default_rng([seed, 0 if split == "train" else 1, index])
            size = max(int(round(num_points * rng.uniform(0.8, 1.2))), 1)
            points, normals, parts = sample_part_shape(category, size, rng)
            labels = np.asarray(SHAPENETPART_PARTS[category])[parts]
            synset = SHAPENETPART_SYNSETS[category]
            token = f"syn{split}{index:05d}"
            folder = out / synset
            folder.mkdir(parents=True, exist_ok=True)
            rows = np.column_stack([points, normals])
            text = "".join(
                " ".join(f"{value:.6f}" for value in row) + f" {label}\n"
                for row, label in zip(rows, labels, strict=True)
            )
            (folder / f"{token}.txt").write_text(text)
            listed = "test" if split == "test" else ("val" if rng.random() < VAL_SHARE else "train")
            lists[listed].append(f"shape_data/{synset}/{token}")
    (out / SPLIT_FOLDER).mkdir(parents=True, exist_ok=True)
    written = []
    for name, entries in lists.items():
        path = out / SPLIT_FOLDER / f"shuffled_{name}_file_list.json"
        path.write_text(json.dumps(entries))
        written.append(path)
    return written
