"""A library of procedural shapes sampled uniformly over their surfaces.

Every shape is a few parts built from two primitives that can be sampled exactly uniformly
by area: triangle meshes (boxes, prisms, polyhedra) and surfaces of revolution about the y
axis (cylinders, cones, spheres, tori, vases — each profile segment is a frustum).  Points are
allocated to parts in proportion to their area, so point density carries no class cue; the
synthetic generator normalises size afterwards, so size carries none either.  Each builder
jitters its proportions (±10-20 %) from the random generator it is given; y is up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Array = np.ndarray
Vec3 = Sequence[float]  # an (x, y, z) offset or extent


# --------------------------------------------------------------------------------------------
# primitives
# --------------------------------------------------------------------------------------------


@dataclass
class Mesh:
    """Triangles (T, 3, 3): sampled uniformly by area, normals from the faces."""

    triangles: Array

    def __post_init__(self) -> None:
        edges = np.cross(self.triangles[:, 1] - self.triangles[:, 0], self.triangles[:, 2] - self.triangles[:, 0])
        norm = np.linalg.norm(edges, axis=1)
        self.face_areas = 0.5 * norm
        self.face_normals = edges / np.maximum(norm, 1e-12)[:, None]

    @property
    def area(self) -> float:
        return float(self.face_areas.sum())

    def sample(self, count: int, rng: np.random.Generator) -> tuple[Array, Array]:
        """(count, 3) points and unit normals."""
        face = rng.choice(len(self.triangles), size=count, p=self.face_areas / self.face_areas.sum())
        r1, r2 = rng.random((2, count, 1))
        s = np.sqrt(r1)
        tri = self.triangles[face]
        points = (1 - s) * tri[:, 0] + s * (1 - r2) * tri[:, 1] + s * r2 * tri[:, 2]
        return points, self.face_normals[face]


@dataclass
class Revolution:
    """Surface of revolution about y of a profile polyline (K, 2) of (radius, y) rows.

    ``theta`` limits the sweep (a half torus is a handle).
    """

    profile: Array
    theta: tuple[float, float] = (0.0, 2 * math.pi)

    def __post_init__(self) -> None:
        start, end = self.profile[:-1], self.profile[1:]
        self.lengths = np.hypot(end[:, 0] - start[:, 0], end[:, 1] - start[:, 1])
        sweep = self.theta[1] - self.theta[0]
        self.segment_areas = 0.5 * sweep * (start[:, 0] + end[:, 0]) * self.lengths

    @property
    def area(self) -> float:
        return float(self.segment_areas.sum())

    def sample(self, count: int, rng: np.random.Generator) -> tuple[Array, Array]:
        """(count, 3) points and unit normals."""
        segment = rng.choice(len(self.segment_areas), size=count, p=self.segment_areas / self.segment_areas.sum())
        (r1, y1), (r2, y2) = self.profile[segment].T, self.profile[segment + 1].T
        u = rng.random(count)
        # Area density along a frustum grows linearly with the radius: invert its CDF.
        dr = r2 - r1
        flat = np.abs(dr) < 1e-9
        safe_dr = np.where(flat, 1.0, dr)
        t = np.where(flat, u, (np.sqrt(r1**2 + u * (r2**2 - r1**2)) - r1) / safe_dr)
        radius = r1 + dr * t
        height = y1 + (y2 - y1) * t
        angle = self.theta[0] + (self.theta[1] - self.theta[0]) * rng.random(count)
        cos, sin = np.cos(angle), np.sin(angle)
        length = np.maximum(self.lengths[segment], 1e-12)
        n_radial, n_y = (y2 - y1) / length, -dr / length
        points = np.stack([radius * cos, height, radius * sin], axis=1)
        normals = np.stack([n_radial * cos, n_y, n_radial * sin], axis=1)
        return points, normals


@dataclass
class Part:
    """A primitive placed in the shape: ``p @ rotation.T + offset``."""

    primitive: Mesh | Revolution
    rotation: Array
    offset: Array


def _place(primitive: Mesh | Revolution, offset: Vec3 = (0.0, 0.0, 0.0), rotation: Array | None = None) -> Part:
    return Part(primitive, np.eye(3) if rotation is None else rotation, np.asarray(offset, dtype=float))


def rot_x(angle: float) -> Array:
    """(3, 3) rotation by ``angle`` radians about x."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(angle: float) -> Array:
    """(3, 3) rotation by ``angle`` radians about y."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(angle: float) -> Array:
    """(3, 3) rotation by ``angle`` radians about z."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


# --------------------------------------------------------------------------------------------
# part makers (sizes are full extents)
# --------------------------------------------------------------------------------------------

_BOX_FACES = {  # corner indices of each face, corners indexed by bits (x, y, z)
    "-x": (0, 2, 6, 4),
    "+x": (1, 5, 7, 3),
    "-y": (0, 4, 5, 1),
    "+y": (2, 3, 7, 6),
    "-z": (0, 1, 3, 2),
    "+z": (4, 6, 7, 5),
}


def box(size: Vec3, offset: Vec3 = (0.0, 0.0, 0.0), rotation: Array | None = None, skip: tuple[str, ...] = ()) -> Part:
    """An axis-aligned box of full extents ``size``; ``skip`` leaves faces open (e.g. "+y")."""
    half = np.asarray(size, dtype=float) / 2
    corners = np.array([[(i & 1) * 2 - 1, (i >> 1 & 1) * 2 - 1, (i >> 2 & 1) * 2 - 1] for i in range(8)]) * half
    # bit 0 = x, bit 1 = y, bit 2 = z
    triangles = []
    for name, (a, b, c, d) in _BOX_FACES.items():
        if name not in skip:
            triangles += [corners[[a, b, c]], corners[[a, c, d]]]
    return _place(Mesh(np.array(triangles)), offset, rotation)


def prism(polygon: Array, height: float, offset: Vec3 = (0.0, 0.0, 0.0), rotation: Array | None = None) -> Part:
    """Extrude a star-shaped polygon (K, 2) in the xz plane along y, caps fanned from its centroid."""
    k = len(polygon)
    centre = polygon.mean(axis=0)
    bottom = np.column_stack([polygon[:, 0], np.full(k, -height / 2), polygon[:, 1]])
    top = bottom + [0, height, 0]
    c_bottom = np.array([centre[0], -height / 2, centre[1]])
    c_top = c_bottom + [0, height, 0]
    triangles = []
    for i in range(k):
        j = (i + 1) % k
        triangles += [[c_bottom, bottom[j], bottom[i]], [c_top, top[i], top[j]]]
        triangles += [[bottom[i], bottom[j], top[j]], [bottom[i], top[j], top[i]]]
    return _place(Mesh(np.array(triangles)), offset, rotation)


def polyhedron(vertices: Array, faces: list[tuple[int, int, int]], offset: Vec3 = (0.0, 0.0, 0.0)) -> Part:
    """A triangle mesh from vertices (V, 3) and faces given as vertex index triples."""
    return _place(Mesh(vertices[np.array(faces)]), offset)


def revolve(
    profile: Sequence[tuple[float, float]],
    offset: Vec3 = (0.0, 0.0, 0.0),
    rotation: Array | None = None,
    theta: tuple[float, float] = (0.0, 2 * math.pi),
) -> Part:
    """The surface swept by a (radius, y) polyline about y over the angles ``theta``."""
    return _place(Revolution(np.asarray(profile, dtype=float), theta), offset, rotation)


def cylinder(
    radius: float,
    height: float,
    offset: Vec3 = (0.0, 0.0, 0.0),
    rotation: Array | None = None,
    top: bool = True,
    bottom: bool = True,
    top_radius: float | None = None,
) -> Part:
    """A (possibly tapered) cylinder along y, caps optional."""
    upper = radius if top_radius is None else top_radius
    profile = [(radius, -height / 2), (upper, height / 2)]
    if bottom:
        profile.insert(0, (0.0, -height / 2))
    if top:
        profile.append((0.0, height / 2))
    return revolve(profile, offset, rotation)


def arc_profile(
    radius: float, start: float, end: float, centre: tuple[float, float] = (0.0, 0.0), steps: int = 16
) -> list[tuple[float, float]]:
    """Points of a circle arc in the (radius, y) plane, angles in radians from the +radius axis."""
    angles = np.linspace(start, end, steps + 1)
    return [(centre[0] + radius * math.cos(a), centre[1] + radius * math.sin(a)) for a in angles]


def sphere(radius: float, offset: Vec3 = (0.0, 0.0, 0.0), lower: bool = True, upper: bool = True) -> Part:
    """A sphere, or its lower / upper half when one of ``lower`` / ``upper`` is False."""
    start = -math.pi / 2 if lower else 0.0
    end = math.pi / 2 if upper else 0.0
    profile = arc_profile(radius, start, end)
    profile = [(max(r, 0.0), y) for r, y in profile]
    return revolve(profile, offset)


def torus(
    major: float,
    minor: float,
    offset: Vec3 = (0.0, 0.0, 0.0),
    rotation: Array | None = None,
    theta: tuple[float, float] = (0.0, 2 * math.pi),
) -> Part:
    """A torus about y (ring radius ``major``, tube radius ``minor``), or a sector of it."""
    return revolve(arc_profile(minor, -math.pi, math.pi, centre=(major, 0.0), steps=20), offset, rotation, theta)


def regular_polygon(sides: int, radius: float, phase: float = 0.0) -> Array:
    """(sides, 2) corners of a regular polygon of circumradius ``radius``."""
    angles = phase + np.arange(sides) * 2 * math.pi / sides
    return radius * np.column_stack([np.cos(angles), np.sin(angles)])


# --------------------------------------------------------------------------------------------
# the shapes
# --------------------------------------------------------------------------------------------

Builder = Callable[[np.random.Generator], list[Part]]
SHAPES: dict[str, Builder] = {}


def shape(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register a builder in :data:`SHAPES` under ``name``."""

    def register(builder: Builder) -> Builder:
        SHAPES[name] = builder
        return builder

    return register


def _j(rng: np.random.Generator, value: float, spread: float = 0.15) -> float:
    """``value`` jittered by a factor U(1 - spread, 1 + spread)."""
    return value * rng.uniform(1 - spread, 1 + spread)


def _legs(
    half_x: float, half_z: float, height: float, thickness: float, y_top: float, round_legs: bool = False
) -> list[Part]:
    """Four open-ended legs of ``height`` at (±half_x, ±half_z) whose tops are at ``y_top``."""
    parts = []
    for sx in (-1, 1):
        for sz in (-1, 1):
            offset = (sx * half_x, y_top - height / 2, sz * half_z)
            if round_legs:
                parts.append(cylinder(thickness / 2, height, offset, top=False, bottom=False))
            else:
                parts.append(box((thickness, height, thickness), offset, skip=("+y", "-y")))
    return parts


@shape("sphere")
def _sphere(rng):
    return [sphere(1.0)]


@shape("cube")
def _cube(rng):
    return [box((1.0, _j(rng, 1.0, 0.05), 1.0))]


@shape("cylinder")
def _cylinder(rng):
    return [cylinder(0.5, _j(rng, 1.6, 0.1))]


@shape("cone")
def _cone(rng):
    return [cylinder(0.6, _j(rng, 1.4, 0.1), top_radius=0.0, top=False)]


@shape("torus")
def _torus(rng):
    return [torus(1.0, _j(rng, 0.3, 0.15))]


@shape("pyramid")
def _pyramid(rng):
    h = _j(rng, 1.2, 0.1)
    v = np.array([[-0.7, 0, -0.7], [0.7, 0, -0.7], [0.7, 0, 0.7], [-0.7, 0, 0.7], [0, h, 0]])
    return [polyhedron(v, [(0, 1, 2), (0, 2, 3), (0, 4, 1), (1, 4, 2), (2, 4, 3), (3, 4, 0)])]


@shape("tetrahedron")
def _tetrahedron(rng):
    v = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float)
    return [polyhedron(v, [(0, 1, 2), (0, 3, 1), (0, 2, 3), (1, 3, 2)])]


@shape("octahedron")
def _octahedron(rng):
    h = _j(rng, 1.0, 0.1)
    v = np.array([[1, 0, 0], [-1, 0, 0], [0, h, 0], [0, -h, 0], [0, 0, 1], [0, 0, -1]], dtype=float)
    faces = [(0, 2, 4), (4, 2, 1), (1, 2, 5), (5, 2, 0), (0, 4, 3), (4, 1, 3), (1, 5, 3), (5, 0, 3)]
    return [polyhedron(v, faces)]


@shape("capsule")
def _capsule(rng):
    r, h = 0.4, _j(rng, 1.4, 0.1)
    return [
        cylinder(r, h, top=False, bottom=False),
        sphere(r, (0, h / 2, 0), lower=False),
        sphere(r, (0, -h / 2, 0), upper=False),
    ]


@shape("hourglass")
def _hourglass(rng):
    waist = _j(rng, 0.12, 0.2)
    return [revolve([(0, -1), (0.6, -1), (waist, 0), (0.6, 1), (0, 1)])]


@shape("bowl")
def _bowl(rng):
    r = 1.0
    depth = _j(rng, 1.0, 0.1)
    profile = [(r * math.cos(a), depth * r * math.sin(a)) for a in np.linspace(-math.pi / 2, 0, 17)]
    return [revolve([(max(x, 0.0), y) for x, y in profile])]


@shape("mug")
def _mug(rng):
    r, h = 0.45, _j(rng, 1.0, 0.1)
    return [
        cylinder(r, h, top=False),
        torus(0.28, 0.05, (r, 0, 0), rot_x(math.pi / 2), theta=(-math.pi / 2, math.pi / 2)),
    ]


@shape("vase")
def _vase(rng):
    belly, neck = _j(rng, 0.55), _j(rng, 0.2)
    profile = [(0, -1), (0.3, -1), (belly, -0.45), (belly * 0.9, 0.05), (neck, 0.5), (neck, 0.75), (neck * 1.6, 1.0)]
    return [revolve(profile)]


@shape("bottle")
def _bottle(rng):
    body, neck = _j(rng, 0.35, 0.1), _j(rng, 0.11, 0.15)
    return [revolve([(0, -1), (body, -1), (body, 0.2), (neck, 0.55), (neck, 1.0), (0, 1.0)])]


@shape("table")
def _table(rng):
    hx, hz, height = _j(rng, 0.9), _j(rng, 0.6), _j(rng, 0.9)
    return [box((2 * hx + 0.1, 0.06, 2 * hz + 0.1), (0, height, 0))] + _legs(hx - 0.05, hz - 0.05, height, 0.07, height)


@shape("chair")
def _chair(rng):
    w, seat_h, back_h = _j(rng, 0.5), _j(rng, 0.55), _j(rng, 0.6)
    return [
        box((2 * w, 0.06, 2 * w), (0, seat_h, 0)),
        box((2 * w, back_h, 0.06), (0, seat_h + back_h / 2, -w)),
    ] + _legs(w - 0.04, w - 0.04, seat_h, 0.06, seat_h)


@shape("stool")
def _stool(rng):
    r, h = _j(rng, 0.4), _j(rng, 0.8)
    legs = []
    for k in range(3):
        a = 2 * math.pi * k / 3
        legs.append(
            cylinder(0.035, h, (0.75 * r * math.cos(a), h / 2, 0.75 * r * math.sin(a)), top=False, bottom=False)
        )
    return [cylinder(r, 0.08, (0, h + 0.04, 0))] + legs


@shape("bed")
def _bed(rng):
    length, width = _j(rng, 2.0, 0.1), _j(rng, 1.3, 0.15)
    return [
        box((width, 0.35, length), (0, 0.35, 0)),
        box((width, 0.9, 0.08), (0, 0.45, -length / 2)),
        box((width, 0.5, 0.08), (0, 0.25, length / 2)),
    ]


@shape("shelf")
def _shelf(rng):
    w, h, d = _j(rng, 1.0), _j(rng, 1.6), _j(rng, 0.4)
    parts = [
        box((0.04, h, d), (-w / 2, h / 2, 0)),
        box((0.04, h, d), (w / 2, h / 2, 0)),
        box((w, h, 0.02), (0, h / 2, -d / 2)),
    ]
    for level in np.linspace(0, h, 4):
        parts.append(box((w, 0.04, d), (0, level, 0)))
    return parts


@shape("lamp")
def _lamp(rng):
    h = _j(rng, 1.2)
    return [
        cylinder(0.35, 0.05, (0, 0.025, 0)),
        cylinder(0.03, h, (0, h / 2, 0), top=False, bottom=False),
        cylinder(_j(rng, 0.45), 0.45, (0, h, 0), top=False, bottom=False, top_radius=0.2),
    ]


@shape("dumbbell")
def _dumbbell(rng):
    r, length = _j(rng, 0.35), _j(rng, 1.6)
    return [
        sphere(r, (-length / 2, 0, 0)),
        sphere(r, (length / 2, 0, 0)),
        cylinder(0.08, length, rotation=rot_z(math.pi / 2), top=False, bottom=False),
    ]


@shape("mushroom")
def _mushroom(rng):
    cap, stem = _j(rng, 0.9), _j(rng, 0.8)
    return [
        cylinder(0.18, stem, (0, stem / 2, 0), top=False),
        sphere(cap, (0, stem, 0), lower=False),
        cylinder(cap, 0.0, (0, stem, 0), top=False),
    ]


@shape("tent")
def _tent(rng):
    w, h = _j(rng, 1.0), _j(rng, 0.9)
    triangle = np.array([[-w, 0.0], [w, 0.0], [0.0, h]])
    return [prism(triangle, _j(rng, 1.8), rotation=rot_x(math.pi / 2))]


@shape("house")
def _house(rng):
    w, h, roof = 1.0, _j(rng, 0.9), _j(rng, 0.6)
    triangle = np.array([[-w / 2 - 0.1, 0.0], [w / 2 + 0.1, 0.0], [0.0, roof]])
    return [box((w, h, 1.2), (0, h / 2, 0), skip=("+y",)), prism(triangle, 1.3, (0, h, 0), rotation=rot_x(math.pi / 2))]


@shape("stairs")
def _stairs(rng):
    steps, depth, rise = 4, _j(rng, 0.35), _j(rng, 0.3)
    return [box((1.0, rise * (i + 1), depth), (0, rise * (i + 1) / 2, i * depth)) for i in range(steps)]


@shape("l_shape")
def _l_shape(rng):
    t = _j(rng, 0.35)
    return [box((t, 1.6, t), (0, 0.8, 0)), box((1.2, t, t), (0.6 + t / 2, t / 2, 0))]


@shape("t_shape")
def _t_shape(rng):
    t = _j(rng, 0.3)
    return [box((t, 1.4, t), (0, 0.7, 0)), box((1.6, t, t), (0, 1.4 + t / 2, 0))]


@shape("jack")
def _jack(rng):
    t, length = _j(rng, 0.2), 2.0
    return [box((length, t, t)), box((t, length, t)), box((t, t, length))]


@shape("arch")
def _arch(rng):
    w, h, t = _j(rng, 1.4), _j(rng, 1.2), _j(rng, 0.3)
    return [
        box((t, h, t), (-w / 2, h / 2, 0)),
        box((t, h, t), (w / 2, h / 2, 0)),
        box((w + t, t, t), (0, h + t / 2, 0)),
    ]


@shape("pipe")
def _pipe(rng):
    outer, h = 0.6, _j(rng, 1.6)
    inner = outer * _j(rng, 0.7, 0.1)
    return [revolve([(inner, -h / 2), (outer, -h / 2), (outer, h / 2), (inner, h / 2), (inner, -h / 2)])]


@shape("star")
def _star(rng):
    outer = regular_polygon(5, 1.0, math.pi / 2)
    inner = regular_polygon(5, _j(rng, 0.4, 0.1), math.pi / 2 + math.pi / 5)
    polygon = np.empty((10, 2))
    polygon[0::2], polygon[1::2] = outer, inner
    return [prism(polygon, _j(rng, 0.35))]


@shape("airplane")
def _airplane(rng):
    length, span = _j(rng, 2.0, 0.1), _j(rng, 2.0, 0.1)
    return [
        cylinder(0.12, length, rotation=rot_x(math.pi / 2)),
        box((span, 0.04, 0.4), (0, 0, 0.1)),
        box((0.7, 0.04, 0.2), (0, 0, -length / 2 + 0.1)),
        box((0.04, 0.4, 0.25), (0, 0.2, -length / 2 + 0.1)),
    ]


@shape("car")
def _car(rng):
    length, width = _j(rng, 2.0, 0.1), _j(rng, 0.9, 0.1)
    wheels = [
        cylinder(0.2, 0.12, (sx * (width / 2), 0.2, sz * length * 0.32), rot_z(math.pi / 2))
        for sx in (-1, 1)
        for sz in (-1, 1)
    ]
    return [box((width, 0.35, length), (0, 0.4, 0)), box((width * 0.85, 0.3, length * 0.5), (0, 0.72, -0.05))] + wheels


@shape("sofa")
def _sofa(rng):
    w, d = _j(rng, 1.8, 0.1), _j(rng, 0.8, 0.1)
    return [
        box((w, 0.4, d), (0, 0.2, 0)),
        box((w, 0.5, 0.2), (0, 0.65, -d / 2 + 0.1)),
        box((0.2, 0.3, d), (-w / 2 + 0.1, 0.55, 0)),
        box((0.2, 0.3, d), (w / 2 - 0.1, 0.55, 0)),
    ]


@shape("door")
def _door(rng):
    w, h = _j(rng, 0.9, 0.1), 2.0
    return [
        box((w, h, 0.06), (0, h / 2, 0)),
        sphere(0.06, (w * 0.38, h * 0.48, 0.09)),
        sphere(0.06, (w * 0.38, h * 0.48, -0.09)),
    ]


@shape("monitor")
def _monitor(rng):
    w, h = _j(rng, 1.6, 0.1), _j(rng, 0.95, 0.1)
    return [
        box((w, h, 0.06), (0, 0.45 + h / 2, 0)),
        box((0.1, 0.45, 0.05), (0, 0.225, -0.05), skip=("+y", "-y")),
        box((0.6, 0.03, 0.35), (0, 0.015, -0.05)),
    ]


@shape("guitar")
def _guitar(rng):
    lower, upper = _j(rng, 0.45, 0.1), _j(rng, 0.33, 0.1)
    return [
        cylinder(lower, 0.15, (0, -0.4, 0), rot_x(math.pi / 2)),
        cylinder(upper, 0.15, (0, 0.15, 0), rot_x(math.pi / 2)),
        box((0.1, 1.1, 0.05), (0, 0.95, 0)),
    ]


@shape("bathtub")
def _bathtub(rng):
    length, width, h = _j(rng, 1.8, 0.1), _j(rng, 0.8, 0.1), _j(rng, 0.55, 0.1)
    return [box((width, h, length), (0, h / 2, 0), skip=("+y",)), box((width * 0.8, 0.02, length * 0.9), (0, 0.1, 0))]


@shape("bench")
def _bench(rng):
    length, h = _j(rng, 2.0, 0.1), _j(rng, 0.5, 0.1)
    return [
        box((length, 0.06, 0.45), (0, h, 0)),
        box((0.06, h, 0.4), (-length / 2 + 0.15, h / 2, 0), skip=("+y", "-y")),
        box((0.06, h, 0.4), (length / 2 - 0.15, h / 2, 0), skip=("+y", "-y")),
    ]


@shape("laptop")
def _laptop(rng):
    w, d = _j(rng, 1.4, 0.1), _j(rng, 1.0, 0.1)
    tilt = math.radians(rng.uniform(95, 125))
    screen_centre = (0, d / 2 * math.sin(tilt), -d / 2 - d / 2 * math.cos(tilt))
    return [box((w, 0.05, d), (0, 0, 0)), box((w, 0.03, d), screen_centre, rotation=rot_x(tilt))]


@shape("bag")
def _bag(rng):
    w, h, d = _j(rng, 0.9, 0.1), _j(rng, 0.7, 0.1), _j(rng, 0.3, 0.15)
    return [box((w, h, d), (0, h / 2, 0)), torus(w * 0.28, 0.03, (0, h, 0), rot_x(math.pi / 2), theta=(0, math.pi))]


@shape("bin")
def _bin(rng):
    r, h = _j(rng, 0.45, 0.1), _j(rng, 1.3, 0.1)
    return [cylinder(r * 0.85, h, (0, h / 2, 0), top=False, top_radius=r)]


@shape("cabinet")
def _cabinet(rng):
    w, h, d = _j(rng, 1.0, 0.1), _j(rng, 1.8, 0.1), _j(rng, 0.55, 0.1)
    return [
        box((w, h, d), (0, h / 2, 0)),
        box((w * 1.05, 0.1, d * 1.05), (0, 0.05, 0)),
        box((0.04, 0.3, 0.05), (-0.08, h * 0.55, d / 2 + 0.025)),
        box((0.04, 0.3, 0.05), (0.08, h * 0.55, d / 2 + 0.025)),
    ]


@shape("desk")
def _desk(rng):
    w, d, h = _j(rng, 1.6, 0.1), _j(rng, 0.8, 0.1), _j(rng, 0.75, 0.1)
    block = w * 0.3
    return [
        box((w, 0.05, d), (0, h, 0)),
        box((block, h, d * 0.95), (w / 2 - block / 2, h / 2, 0), skip=("+y",)),
        box((0.06, h, 0.06), (-w / 2 + 0.05, h / 2, -d / 2 + 0.05), skip=("+y", "-y")),
        box((0.06, h, 0.06), (-w / 2 + 0.05, h / 2, d / 2 - 0.05), skip=("+y", "-y")),
    ]


@shape("pillow")
def _pillow(rng):
    # a sphere squashed into a flat cushion: the anisotropy is in the profile, so sampling stays uniform
    thickness = _j(rng, 0.3, 0.15)
    profile = [
        (max(math.cos(a), 0.0), thickness * math.sin(a) * (1 - 0.3 * math.cos(a) ** 2))
        for a in np.linspace(-math.pi / 2, math.pi / 2, 25)
    ]
    return [revolve(profile)]


@shape("sink")
def _sink(rng):
    r, depth = _j(rng, 0.5, 0.1), _j(rng, 0.35, 0.15)
    basin = [(max(r * math.cos(a), 0.0), depth * math.sin(a)) for a in np.linspace(-math.pi / 2, 0, 13)]
    rim = 0.3 * r  # a counter frame around the basin's opening
    frame = [
        box((2 * r + 2 * rim, 0.04, rim), (0, 0, -(r + rim / 2))),
        box((2 * r + 2 * rim, 0.04, rim), (0, 0, r + rim / 2)),
        box((rim, 0.04, 2 * r), (-(r + rim / 2), 0, 0)),
        box((rim, 0.04, 2 * r), (r + rim / 2, 0, 0)),
    ]
    return [revolve(basin), cylinder(0.05, 0.3, (0, 0.15, -(r + rim / 2)))] + frame


@shape("toilet")
def _toilet(rng):
    bowl = [(max(0.4 * math.cos(a), 0.0), 0.45 + 0.3 * math.sin(a)) for a in np.linspace(-math.pi / 2, 0, 13)]
    return [
        cylinder(0.18, 0.3, (0, 0.15, 0), top=False),
        revolve(bowl),
        torus(0.4, 0.04, (0, 0.46, 0)),
        box((0.7, _j(rng, 0.55, 0.1), 0.22), (0, 0.75, -0.45)),
    ]


def sample_shape(name: str, count: int, rng: np.random.Generator) -> tuple[Array, Array]:
    """``count`` points uniformly over the surface of one random instance of shape ``name``.

    Returns:
        points (count, 3) and unit normals (count, 3), float64, in the shape's own frame.
    """
    parts = SHAPES[name](rng)
    areas = np.array([part.primitive.area for part in parts])
    counts = rng.multinomial(count, areas / areas.sum())
    points, normals = [], []
    for part, part_count in zip(parts, counts, strict=True):
        if part_count == 0:
            continue
        p, n = part.primitive.sample(int(part_count), rng)
        points.append(p @ part.rotation.T + part.offset)
        normals.append(n @ part.rotation.T)
    return np.concatenate(points), np.concatenate(normals)
