"""Held-out objects from meshes nobody here made: pybullet_data's 1,000 random irregular objects and
its household meshes (duck, teddy, mug, ...), or any folder of OBJ/STL files (a user's YCB copy).

Each mesh becomes one free body with one mesh geom (MuJoCo collides with its convex hull and derives
mass and inertia from it), uniformly scaled so that it fits the gripper: its longest side becomes
``longest`` metres unless that leaves its middle side wider than the jaw can take (a resting pose
with the narrow side up would then be ungraspable), in which case the middle side sets the scale. A mesh that cannot be loaded, or that is too thin or flat to be
grasped at any scale, raises an error naming the file.

Meshes are grey by default, a colour no procedural toy has (toys are saturated and bright), so a
mesh cell changes colour as well as shape; ``colour: toys`` gives each object one colour drawn as a
toy part's is, fixed by its index, to measure shape alone.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import mujoco
import numpy as np

from toyland.config_keys import reject_unknown_keys
from toyland.sim.toys import toy_colour

MESH_SUFFIXES = (".obj", ".stl")
MAX_NARROW = 0.05  # the middle side must fit the 8 cm jaw with margin, so any resting pose is graspable
MIN_NARROW = 0.008  # thinner than this at the chosen scale: the fingers cannot hold it
GREY = (0.7, 0.7, 0.7, 1.0)
COLOURS = ("grey", "toys")  # a mesh set's `colour`
COLOUR_STREAM = 0x6D657368  # with the object's index, seeds its colour under `colour: toys`


@lru_cache(maxsize=4096)
def obj_surface(path: str) -> tuple[tuple[float, ...], tuple[int, ...]] | None:
    """Every vertex and triangle of an OBJ file (polygons fanned), or None for other formats.

    MuJoCo's own OBJ reader keeps only the file's first object (``o``) of faces, while its convex
    hull takes every vertex: 977 of pybullet_data's random meshes are convex decompositions in up to
    a dozen objects, and were drawn as their first piece (1-2 cm) while colliding as the whole (5-7 cm).
    """
    if Path(path).suffix.lower() != ".obj":
        return None
    verts: list[float] = []
    faces: list[int] = []
    count = 0
    with open(path, errors="replace") as f:
        for number, line in enumerate(f, 1):
            tokens = line.split("#", 1)[0].split()
            if not tokens:
                continue
            if tokens[0] == "v":
                verts.extend(float(x) for x in tokens[1:4])
                count += 1
            elif tokens[0] == "f":
                # "f 1 2 3", "f 1/1 2/2 3/3", "f 1//1 ..."; negative indices count back from the last vertex
                ids = [int(tok.split("/")[0]) for tok in tokens[1:]]
                if 0 in ids or len(ids) < 3:
                    raise ValueError(f"mesh {path} line {number}: a face needs three or more vertex indices, none 0")
                ids = [i - 1 if i > 0 else count + i for i in ids]
                for k in range(1, len(ids) - 1):  # a fan, exact for convex polygons
                    faces.extend((ids[0], ids[k], ids[k + 1]))
    if not faces:
        raise ValueError(f"mesh {path} has no faces")
    if max(faces) >= count or min(faces) < 0:
        raise ValueError(f"mesh {path} has a face whose vertex index is out of range")
    return tuple(verts), tuple(faces)


def add_mesh(spec: mujoco.MjSpec, name: str, path: str, scale: float = 1.0, **options) -> None:
    """A mesh asset of ``path``, every object of an OBJ file included (see ``obj_surface``)."""
    surface = obj_surface(str(path))
    if surface is None:
        spec.add_mesh(name=name, file=str(path), scale=[scale] * 3, **options)
    else:
        spec.add_mesh(name=name, uservert=list(surface[0]), userface=list(surface[1]), scale=[scale] * 3, **options)


@lru_cache(maxsize=4096)
def mesh_extent(path: str) -> np.ndarray:
    """Axis-aligned size (x, y, z) of a mesh file at scale 1, as MuJoCo loads it for simulation (aligned
    to the inertial frame of its convex hull, as ``MeshObject.add_to`` loads it)."""
    spec = mujoco.MjSpec()
    add_mesh(spec, "m", path, inertia=mujoco.mjtMeshInertia.mjMESH_INERTIA_CONVEX)
    body = spec.worldbody.add_body(name="b")
    body.add_geom(type=mujoco.mjtGeom.mjGEOM_MESH, meshname="m")
    try:
        model = spec.compile()
    except Exception as err:
        raise ValueError(f"mesh {path} cannot be loaded by MuJoCo: {err}") from err
    verts = model.mesh_vert[: model.mesh_vertnum[0]]
    return verts.max(0) - verts.min(0)


def graspable_scale(path: str, longest: float) -> float:
    extent = mesh_extent(path)
    if extent.min() <= 0:
        raise ValueError(f"mesh {path} is flat (extent {extent}); it cannot be grasped")
    middle = float(np.sort(extent)[1])
    scale = min(longest / extent.max(), MAX_NARROW / middle)
    if extent.min() * scale < MIN_NARROW:
        raise ValueError(
            f"mesh {path} is too thin to grasp: at a {extent.max() * scale:.3f} m length its narrowest side is "
            f"{extent.min() * scale * 1000:.1f} mm (need at least {MIN_NARROW * 1000:.0f} mm)"
        )
    return float(scale)


@dataclass(frozen=True)
class MeshObject:
    """A scaled mesh as a graspable object; the counterpart of ToySpec for mesh object sets."""

    path: str
    scale: float
    rgba: tuple[float, float, float, float] = GREY
    density: float = 400.0
    friction: float = 1.0
    label: str = "object"
    seed: int | None = None

    @property
    def kinds(self) -> tuple[str, ...]:
        return ("mesh",)

    @property
    def radius(self) -> float:
        return float(np.linalg.norm(mesh_extent(self.path)) * self.scale / 2)

    def describe(self) -> str:
        return self.label

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def recoloured(self, rgba) -> "MeshObject":
        return dataclasses.replace(self, rgba=tuple(rgba))

    def scaled(self, factor: float) -> "MeshObject":
        limit = MAX_NARROW / (float(np.sort(mesh_extent(self.path))[1]) * self.scale)
        return dataclasses.replace(self, scale=self.scale * float(min(factor, limit)))

    def add_to(self, spec: mujoco.MjSpec, name: str) -> mujoco.MjsBody:
        # mass and inertia of the convex hull, the shape that collides: MuJoCo's default (legacy) takes
        # them from the mesh's own volume, which an open or inconsistently wound mesh makes near zero
        # (34 mg instead of 9 g), and contact then launched the object off the table at reset
        add_mesh(spec, f"{name}/mesh", self.path, self.scale, inertia=mujoco.mjtMeshInertia.mjMESH_INERTIA_CONVEX)
        body = spec.worldbody.add_body(name=name)
        body.add_freejoint(name=f"{name}/free")
        body.add_geom(
            name=f"{name}/p0g0", type=mujoco.mjtGeom.mjGEOM_MESH, meshname=f"{name}/mesh", rgba=list(self.rgba),
            density=self.density, friction=[self.friction, 0.005, 0.0001], condim=4,
        )
        return body


@dataclass(frozen=True)
class MeshSet:
    """A named list of mesh files, indexed like a toy set's seeds."""

    name: str
    files: tuple[str, ...]
    labels: tuple[str, ...]
    longest: float = 0.09
    num_toys: int | None = None
    description: str = ""
    colour: str = "grey"

    def __post_init__(self):
        if not self.files:
            raise ValueError(f"mesh set '{self.name}' has no mesh files")
        if self.colour not in COLOURS:
            raise ValueError(f"mesh set '{self.name}' field 'colour' = {self.colour!r}; valid: {', '.join(COLOURS)}")
        if self.num_toys is not None and not 1 <= self.num_toys <= len(self.files):
            raise ValueError(f"mesh set '{self.name}' field 'num_toys' = {self.num_toys}; allowed range "
                             f"[1, {len(self.files)}] (its number of objects)")

    @property
    def seeds(self) -> tuple[int, int]:
        return (0, len(self.files))

    @property
    def size(self) -> int:
        return self.num_toys or len(self.files)

    def sample_seed(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.size))

    def toy(self, seed: int) -> MeshObject:
        if not 0 <= seed < self.size:
            raise ValueError(f"object {seed} is not in mesh set '{self.name}' (0..{self.size - 1})")
        path = self.files[seed]
        rgba = GREY if self.colour == "grey" else toy_colour(np.random.default_rng([COLOUR_STREAM, seed]))
        return MeshObject(path=path, scale=graspable_scale(path, self.longest), rgba=rgba, label=self.labels[seed],
                          seed=seed)

    def with_num_toys(self, num_toys: int | None) -> "MeshSet":
        return dataclasses.replace(self, num_toys=num_toys)


def _pybullet_data() -> Path:
    import pybullet_data

    return Path(pybullet_data.getDataPath())


HOUSEHOLD = {  # pybullet_data files and what to call them
    "duck_vhacd.obj": "duck",
    "teddy2_VHACD_CHs.obj": "teddy bear",
    "objects/mug.obj": "mug",
    "bunny.obj": "bunny",
    "lego/lego.obj": "brick",
    "jenga/jenga.obj": "block",
    "domino/domino.obj": "domino",
    "soccerball.obj": "ball",
    "torus/torus_textured.obj": "ring",
}


# pybullet_data's random meshes that cannot be objects (found by scanning all 1,000 with
# ``graspable_scale``; tests/test_object_sets.py rescans them): left out of pybullet_random, so that
# no episode draws one
UNUSABLE_RANDOM = {
    "168/168.obj": "a vertex coordinate is not finite",
    "178/178.obj": "7.9 mm thick at a 9.0 cm length",
    "295/295.obj": "0.8 mm thick at a 5.5 cm length",
    "297/297.obj": "1.5 mm thick at a 6.0 cm length",
    "602/602.obj": "4.5 mm thick at a 5.8 cm length",
    "824/824.obj": "1.4 mm thick at a 5.8 cm length",
}


def unusable(files, longest: float) -> dict[str, str]:
    """Each file of ``files`` that cannot be an object at this scale, with why."""
    out = {}
    for f in files:
        try:
            graspable_scale(f, longest)
        except ValueError as err:
            out[f] = str(err)
    return out


def mesh_files(source: str, longest: float = 0.09) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(files, labels) for ``pybullet:random``, ``pybullet:household`` or a folder path (each of
    whose meshes is checked, and every one that cannot be an object named)."""
    if source == "pybullet:random":
        root = _pybullet_data() / "random_urdfs"
        files = sorted(str(p) for p in root.glob("*/*.obj") if p.relative_to(root).as_posix() not in UNUSABLE_RANDOM)
        return tuple(files), ("object",) * len(files)
    if source == "pybullet:household":
        root = _pybullet_data()
        missing = [f for f in HOUSEHOLD if not (root / f).is_file()]
        if missing:
            raise FileNotFoundError(f"pybullet_data lacks {missing}; reinstall pybullet")
        return tuple(str(root / f) for f in HOUSEHOLD), tuple(HOUSEHOLD.values())
    folder = Path(source).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"mesh folder {folder} does not exist")
    files = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in MESH_SUFFIXES)
    if not files:
        raise ValueError(f"mesh folder {folder} holds no {' or '.join(MESH_SUFFIXES)} files")
    bad = unusable(files, longest)
    if bad:  # before any episode: one drawn mid-evaluation would stop it
        raise ValueError(f"mesh folder {folder}: {len(bad)} of {len(files)} meshes cannot be objects; remove or fix "
                         "them: " + "; ".join(bad.values()))
    return tuple(files), tuple(Path(f).stem.replace("_", " ") for f in files)


def mesh_set_from_config(name: str, cfg: dict, num_toys: int | None = None, description: str = "") -> MeshSet:
    reject_unknown_keys(cfg, {"source", "longest", "colour"}, f"mesh set '{name}'")
    longest = float(cfg.get("longest", 0.09))
    files, labels = mesh_files(str(cfg["source"]), longest)
    return MeshSet(name, files, labels, longest, num_toys, description, str(cfg.get("colour", "grey")))
