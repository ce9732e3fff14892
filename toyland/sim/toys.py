"""Procedural toys after "Learning to grasp anything by playing with random toys" (arXiv 2510.12866).

A toy is 1 to 5 rigidly connected primitives (sphere, cuboid, cylinder, ring). Everything about a
toy (part kinds, sizes, colours, how the parts are glued together, density, friction) follows from
one integer seed and the generator's ranges, so a toy is reproducible from ``(generator, seed)``
and serializable as a plain dict for ``info`` and datasets.

Parts are glued by moving the support point of the new part (its extreme point towards an existing
part) onto a surface point of that part and a few millimetres inside, so every part overlaps its parent: the toy is connected
and compiles into one MuJoCo body whose mass and inertia MuJoCo derives from the geoms.
"""

from __future__ import annotations

import colorsys
import dataclasses
from dataclasses import dataclass

import mujoco
import numpy as np

from toyland.config_keys import reject_unknown_keys
from toyland.sim import geometry as geo

KINDS = ("sphere", "cuboid", "cylinder", "ring")
RING_SEGMENTS = 12  # capsules per torus; 12 keeps the tube within 2% of a true torus
MAX_PARTS = 5
MAX_GRASP_WIDTH = 0.07
NOUNS = {"sphere": "ball", "cuboid": "block", "cylinder": "cylinder", "ring": "ring"}  # the parallel-jaw gripper opens to 8 cm; keep a 1 cm margin

# Field names of each kind's size tuple and the range that can be built and grasped.
SIZE_FIELDS = {
    "sphere": ("radius",),
    "cuboid": ("half_x", "half_y", "half_z"),
    "cylinder": ("radius", "half_length"),
    "ring": ("major_radius", "tube_radius"),
}
BUILD_LIMITS = {
    "radius": (0.006, 0.045),
    "half_x": (0.005, 0.06),
    "half_y": (0.005, 0.06),
    "half_z": (0.005, 0.06),
    "half_length": (0.005, 0.06),
    "major_radius": (0.012, 0.06),
    "tube_radius": (0.003, 0.02),
    "density": (50.0, 3000.0),
    "friction": (0.2, 2.0),
}


def _check_range(name: str, value: float) -> None:
    lo, hi = BUILD_LIMITS[name]
    if not lo <= value <= hi:
        raise ValueError(f"toy field '{name}' = {value:g} is outside the buildable range [{lo:g}, {hi:g}]")


@dataclass(frozen=True)
class PartSpec:
    """One primitive of a toy, posed in the toy's frame. Sizes are radii and half-lengths (metres)."""

    kind: str
    size: tuple[float, ...]
    pos: tuple[float, float, float] = (0.0, 0.0, 0.0)
    quat: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)
    rgba: tuple[float, float, float, float] = (0.8, 0.2, 0.2, 1.0)

    def __post_init__(self):
        if self.kind not in SIZE_FIELDS:
            raise ValueError(f"unknown part kind '{self.kind}'; valid kinds: {', '.join(KINDS)}")
        fields = SIZE_FIELDS[self.kind]
        if len(self.size) != len(fields):
            raise ValueError(f"a {self.kind} needs size {fields}, got {self.size}")
        for name, value in zip(fields, self.size):
            _check_range(name, value)
        if self.kind == "ring" and self.size[1] >= 0.8 * self.size[0]:
            raise ValueError(
                f"ring field 'tube_radius' = {self.size[1]:g} must be below 0.8 * major_radius ({0.8 * self.size[0]:g})"
            )
        if min_width(self) > MAX_GRASP_WIDTH:
            raise ValueError(
                f"{self.kind} of size {self.size} is {min_width(self):.3f} m across at its narrowest, "
                f"wider than the gripper can grasp ({MAX_GRASP_WIDTH} m)"
            )

    @property
    def rot(self) -> np.ndarray:
        return geo.quat_to_mat(np.asarray(self.quat))

    def min_size(self) -> float:
        return float(min(self.size[1:] if self.kind == "ring" else self.size))


def min_width(part: PartSpec) -> float:
    """Narrowest width of a part across any direction: what a gripper must span at least once."""
    if part.kind == "ring":
        return 2 * part.size[1]  # across the tube
    if part.kind == "cuboid":
        return 2 * min(part.size)
    return 2 * part.size[0]  # sphere diameter, cylinder diameter


def part_support_point(part: PartSpec, u: np.ndarray) -> np.ndarray:
    """The point of a part (relative to its centre, toy frame) farthest along unit vector ``u``."""
    rot = part.rot
    local = rot.T @ u
    if part.kind == "sphere":
        return u * part.size[0]
    if part.kind == "cuboid":
        return rot @ (np.sign(local) * np.asarray(part.size))
    radial = np.array([local[0], local[1], 0.0])
    norm = np.linalg.norm(radial)
    radial = radial / norm if norm > 1e-9 else radial
    if part.kind == "cylinder":
        return rot @ (radial * part.size[0] + np.array([0.0, 0.0, np.sign(local[2]) * part.size[1]]))
    return rot @ (radial * part.size[0] + local * part.size[1])  # ring: tube circle point plus tube


def bounding_radius(part: PartSpec) -> float:
    s = part.size
    if part.kind == "cuboid":
        return float(np.linalg.norm(s))
    if part.kind == "cylinder":
        return float(np.hypot(s[0], s[1]))
    return float(sum(s))  # sphere: radius; ring: major + tube


@dataclass(frozen=True)
class ToySpec:
    """A whole toy: its parts in the toy frame plus material. ``seed`` records where it came from."""

    parts: tuple[PartSpec, ...]
    density: float = 400.0
    friction: float = 1.0
    seed: int | None = None

    def __post_init__(self):
        if not 1 <= len(self.parts) <= MAX_PARTS:
            raise ValueError(f"toy field 'parts' has {len(self.parts)} parts; allowed range [1, {MAX_PARTS}]")
        _check_range("density", self.density)
        _check_range("friction", self.friction)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(p.kind for p in self.parts)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def max_scale(self) -> float:
        """The largest uniform scale that keeps every part buildable and graspable."""
        limit = np.inf
        for part in self.parts:
            for field, value in zip(SIZE_FIELDS[part.kind], part.size):
                limit = min(limit, BUILD_LIMITS[field][1] / value)
            limit = min(limit, MAX_GRASP_WIDTH / min_width(part))
        return float(limit)

    def scaled(self, scale: float) -> "ToySpec":
        """The toy grown or shrunk about its centre (clamped to what can be built); see ``max_scale``."""
        low = max(BUILD_LIMITS[f][0] / v for p in self.parts for f, v in zip(SIZE_FIELDS[p.kind], p.size))
        scale = float(np.clip(scale, low, self.max_scale() * (1 - 1e-9)))
        parts = tuple(
            dataclasses.replace(p, size=tuple(v * scale for v in p.size), pos=tuple(c * scale for c in p.pos))
            for p in self.parts
        )
        return dataclasses.replace(self, parts=parts)

    def recoloured(self, rgba) -> "ToySpec":
        return dataclasses.replace(self, parts=tuple(dataclasses.replace(p, rgba=tuple(rgba)) for p in self.parts))

    @property
    def radius(self) -> float:
        """Radius of the toy's bounding sphere about its centre."""
        return max(float(np.linalg.norm(p.pos)) + bounding_radius(p) for p in self.parts)

    def add_to(self, spec: mujoco.MjSpec, name: str) -> mujoco.MjsBody:
        return add_toy(spec.worldbody, self, name)

    def describe(self) -> str:
        """A noun for the toy: its kind when all parts share one, else "toy"."""
        kinds = set(self.kinds)
        return NOUNS[kinds.pop()] if len(kinds) == 1 else "toy"

    @classmethod
    def from_dict(cls, data: dict) -> "ToySpec":
        parts = tuple(
            PartSpec(
                kind=p["kind"],
                size=tuple(p["size"]),
                pos=tuple(p["pos"]),
                quat=tuple(p["quat"]),
                rgba=tuple(p["rgba"]),
            )
            for p in data["parts"]
        )
        return cls(parts=parts, density=data["density"], friction=data["friction"], seed=data.get("seed"))


@dataclass(frozen=True)
class ToyGenerator:
    """Ranges a toy is drawn from. ``generate(seed)`` is a pure function of these and the seed."""

    num_parts: tuple[int, int] = (1, 4)
    kinds: tuple[str, ...] = KINDS
    max_same_kind: int = MAX_PARTS  # cap on how many parts share the most common kind
    min_same_kind: int = 1  # floor on the same (used to hold out mono-kind compositions)
    sphere_radius: tuple[float, float] = (0.015, 0.03)
    cuboid_half: tuple[float, float] = (0.012, 0.03)
    cylinder_radius: tuple[float, float] = (0.012, 0.025)
    cylinder_half_length: tuple[float, float] = (0.015, 0.04)
    ring_major_radius: tuple[float, float] = (0.02, 0.035)
    ring_tube_radius: tuple[float, float] = (0.006, 0.011)
    density: tuple[float, float] = (250.0, 600.0)
    friction: tuple[float, float] = (0.8, 1.2)
    max_extent: float = 0.09  # radius of the toy's bounding sphere about its centre

    def __post_init__(self):
        lo, hi = self.num_parts
        if not 1 <= lo <= hi <= MAX_PARTS:
            raise ValueError(f"toy generator field 'num_parts' = {self.num_parts}; need 1 <= min <= max <= {MAX_PARTS}")
        unknown = set(self.kinds) - set(KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"toy generator field 'kinds' has {sorted(unknown) or 'nothing'}; valid kinds: {', '.join(KINDS)}")
        if not 1 <= self.min_same_kind <= self.max_same_kind:
            raise ValueError("toy generator fields need 1 <= min_same_kind <= max_same_kind")
        if self.min_same_kind > hi:
            raise ValueError(f"min_same_kind={self.min_same_kind} cannot be met with at most {hi} parts")
        if self.max_same_kind * len(self.kinds) < lo:
            raise ValueError(f"max_same_kind={self.max_same_kind} with kinds {self.kinds} cannot fill {lo} parts")
        checks = {
            "sphere_radius": "radius",
            "cuboid_half": "half_x",
            "cylinder_radius": "radius",
            "cylinder_half_length": "half_length",
            "ring_major_radius": "major_radius",
            "ring_tube_radius": "tube_radius",
            "density": "density",
            "friction": "friction",
        }
        for attr, limit in checks.items():
            a, b = getattr(self, attr)
            if a > b:
                raise ValueError(f"toy generator field '{attr}' = {(a, b)} has min > max")
            for v in (a, b):
                try:
                    _check_range(limit, v)
                except ValueError as err:
                    raise ValueError(f"toy generator field '{attr}': {err}") from None
        if not 0.02 <= self.max_extent <= 0.2:
            raise ValueError(f"toy generator field 'max_extent' = {self.max_extent}; allowed range [0.02, 0.2]")

    @classmethod
    def from_config(cls, cfg: dict | None) -> "ToyGenerator":
        cfg = dict(cfg or {})
        known = {f.name for f in dataclasses.fields(cls)}
        reject_unknown_keys(cfg, known, "toy generator")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})

    # ----------------------------------------------------------------------------------------
    def generate(self, seed: int) -> ToySpec:
        rng = np.random.default_rng([int(seed), 0x70F])
        n = int(rng.integers(self.num_parts[0], self.num_parts[1] + 1))
        kinds = self._draw_kinds(rng, n)
        sizes = [self._draw_size(rng, k) for k in kinds]
        colours = [toy_colour(rng) for _ in kinds]
        density = float(rng.uniform(*self.density))
        friction = float(rng.uniform(*self.friction))
        for _attempt in range(100):
            parts = self._assemble(rng, kinds, sizes, colours)
            if parts is not None:
                return ToySpec(parts=parts, density=density, friction=friction, seed=int(seed))
        # Shrinking is deterministic too; only very long parts under a tight max_extent get here.
        raise ValueError(f"could not assemble toy seed {seed} within max_extent={self.max_extent}; raise max_extent")

    def _draw_kinds(self, rng, n: int) -> list[str]:
        for _ in range(1000):
            kinds = [str(k) for k in rng.choice(self.kinds, size=n)]
            top = max(kinds.count(k) for k in set(kinds))
            if self.min_same_kind <= top <= self.max_same_kind:
                return kinds
        # Constructive fallback: fill the most common kind first, then the rest.
        main = str(rng.choice(self.kinds))
        count = min(n, max(self.min_same_kind, 1))
        others = [k for k in self.kinds if k != main] or [main]
        return [main] * count + [str(rng.choice(others)) for _ in range(n - count)]

    def _draw_size(self, rng, kind: str) -> tuple[float, ...]:
        u = rng.uniform
        if kind == "sphere":
            return (u(*self.sphere_radius),)
        if kind == "cuboid":
            size = [u(*self.cuboid_half) for _ in range(3)]
            return tuple(size)
        if kind == "cylinder":
            return (u(*self.cylinder_radius), u(*self.cylinder_half_length))
        major = u(*self.ring_major_radius)
        tube = min(u(*self.ring_tube_radius), 0.5 * major)
        return (major, tube)

    def _assemble(self, rng, kinds, sizes, colours):
        placed: list[PartSpec] = []
        for kind, size, rgba in zip(kinds, sizes, colours):
            quat = tuple(geo.random_rotation(rng))
            if not placed:
                placed.append(PartSpec(kind, size, (0.0, 0.0, 0.0), quat, rgba))
                continue
            child = PartSpec(kind, size, (0.0, 0.0, 0.0), quat, rgba)
            parent = placed[int(rng.integers(len(placed)))]
            anchor, normal = _surface_anchor(parent, rng)
            overlap = 0.002 + 0.3 * min(parent.min_size(), child.min_size())
            # put the child's deepest point along -normal just below the anchor, inside the parent
            centre = anchor - normal * overlap - part_support_point(child, -normal)
            placed.append(dataclasses.replace(child, pos=tuple(float(c) for c in centre)))
        centre = np.mean([p.pos for p in placed], axis=0)
        parts = tuple(
            dataclasses.replace(p, pos=tuple(round(float(c), 6) for c in np.asarray(p.pos) - centre)) for p in placed
        )
        extent = max(np.linalg.norm(p.pos) + bounding_radius(p) for p in parts)
        return parts if extent <= self.max_extent else None


def toy_colour(rng: np.random.Generator) -> tuple[float, float, float, float]:
    """A procedural toy part's colour: any hue, saturated and bright (never grey, black or white)."""
    r, g, b = colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0))
    return (round(r, 4), round(g, 4), round(b, 4), 1.0)


def _surface_anchor(part: PartSpec, rng) -> tuple[np.ndarray, np.ndarray]:
    """A point on the part's surface and an outward direction there, in the toy frame."""
    rot, pos = part.rot, np.asarray(part.pos)
    if part.kind == "cuboid":  # a random face, away from its edges
        axis = int(rng.integers(3))
        sign = rng.choice([-1.0, 1.0])
        local = rng.uniform(-0.5, 0.5, size=3) * np.asarray(part.size)
        local[axis] = sign * part.size[axis]
        normal = np.zeros(3)
        normal[axis] = sign
        return pos + rot @ local, rot @ normal
    u = rng.normal(size=3)
    u /= np.linalg.norm(u)
    if part.kind == "sphere":
        return pos + u * part.size[0], u
    if part.kind == "cylinder":
        local_u = rot.T @ u
        if rng.uniform() < 0.5:  # a cap
            sign = 1.0 if local_u[2] >= 0 else -1.0
            r = part.size[0] * 0.6 * np.sqrt(rng.uniform())
            phi = rng.uniform(0, 2 * np.pi)
            local = np.array([r * np.cos(phi), r * np.sin(phi), sign * part.size[1]])
            return pos + rot @ local, rot @ np.array([0.0, 0.0, sign])
        phi = rng.uniform(0, 2 * np.pi)
        radial = np.array([np.cos(phi), np.sin(phi), 0.0])
        local = radial * part.size[0] + np.array([0, 0, rng.uniform(-0.6, 0.6) * part.size[1]])
        return pos + rot @ local, rot @ radial
    # ring: a point on the tube surface, the outward normal of the tube there
    phi = rng.uniform(0, 2 * np.pi)
    tube_centre = part.size[0] * np.array([np.cos(phi), np.sin(phi), 0.0])
    return pos + rot @ tube_centre + u * part.size[1], u


# --- building into an MjSpec ------------------------------------------------------------------


def part_geoms(part: PartSpec) -> list[dict]:
    """MuJoCo geoms (type, size, pos, quat in the toy frame) that make up one part."""
    pos, quat = np.asarray(part.pos), np.asarray(part.quat)
    if part.kind == "sphere":
        return [dict(type=geo.SPHERE, size=[part.size[0], 0, 0], pos=pos, quat=quat)]
    if part.kind == "cuboid":
        return [dict(type=geo.BOX, size=list(part.size), pos=pos, quat=quat)]
    if part.kind == "cylinder":
        return [dict(type=geo.CYLINDER, size=[part.size[0], part.size[1], 0], pos=pos, quat=quat)]
    major, tube = part.size
    rot = part.rot
    half = major * np.sin(np.pi / RING_SEGMENTS)  # capsule ends meet at the polygon's vertices
    geoms = []
    for j in range(RING_SEGMENTS):
        theta = 2 * np.pi * (j + 0.5) / RING_SEGMENTS
        mid = major * np.cos(np.pi / RING_SEGMENTS) * np.array([np.cos(theta), np.sin(theta), 0.0])
        tangent = np.array([-np.sin(theta), np.cos(theta), 0.0])
        # capsule z along the tangent
        seg_rot = np.column_stack([np.array([np.cos(theta), np.sin(theta), 0.0]), np.array([0.0, 0.0, 1.0]), tangent])
        geoms.append(
            dict(type=geo.CAPSULE, size=[tube, half, 0], pos=pos + rot @ mid, quat=geo.mat_to_quat(rot @ seg_rot))
        )
    return geoms


def add_toy(parent: mujoco.MjsBody, toy: ToySpec, name: str, pos=(0, 0, 0), quat=(1, 0, 0, 0)) -> mujoco.MjsBody:
    """Adds ``toy`` as one free rigid body called ``name``; geoms are ``{name}/p{i}g{j}``."""
    body = parent.add_body(name=name, pos=list(pos), quat=list(quat))
    body.add_freejoint(name=f"{name}/free")
    for i, part in enumerate(toy.parts):
        for j, g in enumerate(part_geoms(part)):
            body.add_geom(
                name=f"{name}/p{i}g{j}",
                type=g["type"],
                size=list(g["size"]),
                pos=list(g["pos"]),
                quat=list(g["quat"]),
                rgba=list(part.rgba),
                density=toy.density,
                friction=[toy.friction, 0.005, 0.0001],
                condim=4,
            )
    return body
