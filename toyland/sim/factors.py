"""Generalization factors: named, seeded, serializable axes of variation (after The Colosseum and
Factor World), each with an in-distribution ``train`` range and graded out-of-distribution levels.

A factor has one or more axes. A continuous axis is an offset from the scene's nominal value: at
``train`` it is drawn from ``train = (lo, hi)``; at ``ood_k`` its magnitude is drawn from the k-th
band ``(a, b)`` (with a random sign when ``symmetric``), and every band lies outside the train range.
A categorical axis draws from a list of choices, disjoint between train and OOD levels. The level
``nominal`` leaves the scene as built; a dict of axis values pins them (grids, shortcut cues).

Factors act at two times: ``edit_task`` before the model is compiled (what must be rebuilt:
distractor objects, object size) and ``apply`` right after (what MuJoCo can change in place:
cameras, lights, colours, materials, masses, frictions, the robot's start). Camera, light and colour
changes therefore never need a recompile. Every factor draws from its own random stream derived
from the episode seed, so changing one factor's level leaves the toys, poses and other factors of
the episode unchanged: cells of an evaluation grid are paired episode by episode.
"""

from __future__ import annotations

import colorsys
import zlib
from dataclasses import dataclass

import numpy as np

from toyland.registry import Registry
from toyland.sim import geometry as geo

FACTORS: Registry["Factor"] = Registry("factor")
NOMINAL, TRAIN = "nominal", "train"
OOD_LEVELS = ("ood_1", "ood_2", "ood_3")


@dataclass(frozen=True)
class Axis:
    """One axis of a factor. Continuous: ``train=(lo, hi)`` offsets, ``ood`` magnitude bands.
    Categorical: ``train`` and each entry of ``ood`` are lists of choices."""

    train: tuple | list
    ood: tuple
    symmetric: bool = True
    unit: str = ""

    @property
    def categorical(self) -> bool:
        return isinstance(self.train, list)

    def check(self, factor: str, name: str) -> None:
        if len(self.ood) != len(OOD_LEVELS):
            raise ValueError(f"factor '{factor}' axis '{name}' needs {len(OOD_LEVELS)} OOD levels")
        if self.categorical:
            for level, choices in zip(OOD_LEVELS, self.ood):
                if set(choices) & set(self.train):
                    raise ValueError(f"factor '{factor}' axis '{name}' level {level} overlaps train {self.train}")
            return
        lo, hi = self.train
        reach = max(abs(lo), abs(hi)) if self.symmetric else hi
        for level, (a, b) in zip(OOD_LEVELS, self.ood):
            if not reach < a <= b:
                raise ValueError(f"factor '{factor}' axis '{name}' level {level} band {(a, b)} must lie beyond train {self.train}")

    def sample(self, level: str, rng: np.random.Generator):
        if level == TRAIN:
            if self.categorical:
                return self.train[int(rng.integers(len(self.train)))]
            return float(rng.uniform(*self.train))
        band = self.ood[OOD_LEVELS.index(level)]
        if self.categorical:
            return band[int(rng.integers(len(band)))]
        sign = rng.choice([-1.0, 1.0]) if self.symmetric else 1.0
        return float(sign * rng.uniform(*band))

    def limits(self) -> tuple[float, float]:
        """The declared range of a continuous axis: train and every OOD band."""
        outer = max(b for _, b in self.ood)
        return (-outer if self.symmetric else min(self.train[0], 0.0), outer)

    def check_value(self, factor: str, name: str, value) -> None:
        if self.categorical:
            allowed = [*self.train, *(c for band in self.ood for c in band)]
            if value not in allowed:
                raise ValueError(f"factor '{factor}' axis '{name}' = {value!r}; allowed: {allowed}")
            return
        lo, hi = self.limits()
        if not lo <= float(value) <= hi:
            raise ValueError(f"factor '{factor}' axis '{name}' = {value} is outside its declared range [{lo}, {hi}]")

    def contains(self, level: str, value) -> bool:
        """Whether ``value`` can be drawn at ``level`` (used to check pinned values and in tests)."""
        if level == TRAIN:
            return value in self.train if self.categorical else self.train[0] <= value <= self.train[1]
        band = self.ood[OOD_LEVELS.index(level)]
        if self.categorical:
            return value in band
        magnitude = abs(value) if self.symmetric else value
        return band[0] <= magnitude <= band[1]


class Factor:
    """A named axis group. Subclasses declare ``axes``, ``nominal`` values and what they touch."""

    name: str = ""
    axes: dict[str, Axis] = {}
    nominal: dict = {}
    touches: tuple[str, ...] = ()  # MjModel fields (or "qpos"/"task") this factor may change
    changes_inertia: bool = False  # edits masses in place: the model's derived constants need mj_setConst

    def __init__(self):
        if type(self).edit_task is Factor.edit_task and type(self).apply is Factor.apply:
            raise TypeError(f"factor '{self.name}' overrides neither edit_task nor apply")
        for axis_name, axis in self.axes.items():
            axis.check(self.name, axis_name)

    def levels(self) -> tuple[str, ...]:
        return (NOMINAL, TRAIN, *OOD_LEVELS)

    def sample(self, level, rng: np.random.Generator) -> dict:
        """Axis values for one episode at ``level`` (a level name or a dict pinning axis values)."""
        if isinstance(level, dict) or hasattr(level, "items"):
            level = dict(level)
            unknown = set(level) - set(self.axes)
            if unknown:
                raise ValueError(f"factor '{self.name}' has no axes {sorted(unknown)}; axes: {sorted(self.axes)}")
            for axis_name, value in level.items():
                self.axes[axis_name].check_value(self.name, axis_name, value)
            return {**self.nominal, **level}
        if level not in self.levels():
            raise ValueError(f"factor '{self.name}' has no level {level!r}; levels: {', '.join(self.levels())}")
        if level == NOMINAL:
            return dict(self.nominal)
        return {name: axis.sample(level, rng) for name, axis in self.axes.items()}

    # A factor overrides one hook or both: edit_task for what needs a rebuild, apply for what the
    # compiled model can change in place.
    def edit_task(self, task, values: dict) -> None:
        """Before compiling: change the task's objects or instruction."""

    def apply(self, env, values: dict) -> None:
        """After compiling, before the episode starts: change the model or initial state in place."""


def factor_rng(episode_seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([episode_seed, zlib.crc32(name.encode())])


def _register(cls):
    FACTORS.register(cls.name)(cls())
    return cls


# --- camera viewpoint --------------------------------------------------------------------------


def spherical_camera(pos, target, d_azimuth: float, d_elevation: float, d_radius: float, roll: float):
    """Moves a camera on the sphere around ``target``: returns (pos, quat) aimed at ``target``.

    Angles in degrees: azimuth about world z, elevation above the horizontal, roll about the
    viewing axis."""
    offset = np.asarray(pos, float) - np.asarray(target, float)
    radius = np.linalg.norm(offset) + d_radius
    azimuth = np.arctan2(offset[1], offset[0]) + np.deg2rad(d_azimuth)
    elevation = np.arcsin(offset[2] / np.linalg.norm(offset)) + np.deg2rad(d_elevation)
    direction = np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])
    new_pos = np.asarray(target, float) + radius * direction
    rot = geo.quat_to_mat(geo.look_at_quat(new_pos, target))
    rot = rot @ geo.quat_to_mat(geo.axis_angle_quat([0.0, 0.0, 1.0], np.deg2rad(roll)))  # about the view axis
    return new_pos, geo.mat_to_quat(rot)


@_register
class CameraViewpoint(Factor):
    name = "camera_viewpoint"
    axes = {
        "azimuth": Axis((-5.0, 5.0), ((10.0, 20.0), (20.0, 35.0), (35.0, 50.0)), unit="deg"),
        "elevation": Axis((-3.0, 3.0), ((5.0, 10.0), (10.0, 15.0), (15.0, 20.0)), unit="deg"),
        "radius": Axis((-0.03, 0.03), ((0.05, 0.1), (0.1, 0.15), (0.15, 0.2)), unit="m"),
        "roll": Axis((-2.0, 2.0), ((4.0, 8.0), (8.0, 12.0), (12.0, 16.0)), unit="deg"),
        "fov": Axis((-2.0, 2.0), ((4.0, 8.0), (8.0, 12.0), (12.0, 16.0)), unit="deg"),
    }
    nominal = {"azimuth": 0.0, "elevation": 0.0, "radius": 0.0, "roll": 0.0, "fov": 0.0}
    touches = ("cam_pos", "cam_quat", "cam_fovy")

    def apply(self, env, values: dict) -> None:
        from toyland.sim.cameras import WORLD_CAMERAS

        m = env.scene.model
        for name, (pos, target, fovy) in WORLD_CAMERAS.items():
            cam = m.camera(name).id
            new_pos, quat = spherical_camera(
                pos, target, values["azimuth"], values["elevation"], values["radius"], values["roll"]
            )
            m.cam_pos[cam], m.cam_quat[cam] = new_pos, quat
            m.cam_fovy[cam] = fovy + values["fov"]


# --- lighting ----------------------------------------------------------------------------------


@_register
class Lighting(Factor):
    name = "lighting"
    axes = {
        "tilt": Axis((0.0, 10.0), ((20.0, 35.0), (35.0, 50.0), (50.0, 65.0)), symmetric=False, unit="deg"),
        "tilt_direction": Axis([0, 90, 180, 270], ([45], [135], [225]), unit="deg"),
        "intensity": Axis((-0.1, 0.1), ((0.25, 0.4), (0.4, 0.55), (0.55, 0.7)), unit="scale"),
        "warmth": Axis((-0.05, 0.05), ((0.15, 0.3), (0.3, 0.45), (0.45, 0.6))),
    }
    nominal = {"tilt": 0.0, "tilt_direction": 0, "intensity": 0.0, "warmth": 0.0}
    touches = ("light_dir", "light_diffuse")

    def apply(self, env, values: dict) -> None:
        m = env.scene.model
        light = m.light("key").id
        nominal_dir = np.asarray(env.arena.light_dir, float)
        nominal_dir /= np.linalg.norm(nominal_dir)
        # tilt the direction away from nominal, towards the compass direction ``tilt_direction``
        heading = np.deg2rad(values["tilt_direction"])
        axis = np.cross(nominal_dir, [np.cos(heading), np.sin(heading), 0.0])
        if np.linalg.norm(axis) > 1e-9 and values["tilt"]:
            rot = geo.mat_from_rotvec(axis / np.linalg.norm(axis) * np.deg2rad(values["tilt"]))
            m.light_dir[light] = rot @ nominal_dir
        else:
            m.light_dir[light] = nominal_dir
        w = values["warmth"]
        tint = np.array([1.0 + w, 1.0, 1.0 - w])
        m.light_diffuse[light] = np.clip(np.asarray(env.arena.light_diffuse) * (1.0 + values["intensity"]) * tint, 0, 2)


# --- table and floor appearance ------------------------------------------------------------------


def shift_hue(rgba, hue_shift: float, value_scale: float = 1.0):
    h, s, v = colorsys.rgb_to_hsv(*rgba[:3])
    r, g, b = colorsys.hsv_to_rgb((h + hue_shift) % 1.0, s, float(np.clip(v * value_scale, 0, 1)))
    return (r, g, b, rgba[3])


class SurfaceAppearance(Factor):
    surface = ""  # geom name: table | floor
    axes = {
        "hue": Axis((-0.03, 0.03), ((0.1, 0.2), (0.2, 0.35), (0.35, 0.5)), unit="turn"),
        "brightness": Axis((-0.05, 0.05), ((0.15, 0.25), (0.25, 0.35), (0.35, 0.45)), unit="scale"),
        "texture": Axis(["plain"], (["grid"], ["checker"], ["grid", "checker"])),
    }
    touches = ("geom_matid", "mat_rgba")

    @property
    def nominal(self):
        return {"hue": 0.0, "brightness": 0.0, "texture": None}  # None: the arena's configured texture

    def apply(self, env, values: dict) -> None:
        m = env.scene.model
        geom = m.geom(self.surface).id
        base = getattr(env.arena, f"{self.surface}_rgba")
        texture = values["texture"] or getattr(env.arena, f"{self.surface}_texture")
        if values["texture"] is None and not values["hue"] and not values["brightness"]:
            return
        mat = m.material(f"{self.surface}_mat_{texture}").id
        m.geom_matid[geom] = mat
        m.mat_rgba[mat] = shift_hue(base, values["hue"], 1.0 + values["brightness"])


@_register
class TableAppearance(SurfaceAppearance):
    name, surface = "table_appearance", "table"


@_register
class FloorAppearance(SurfaceAppearance):
    name, surface = "floor_appearance", "floor"


# --- objects -------------------------------------------------------------------------------------


@_register
class Distractors(Factor):
    name = "distractors"
    axes = {
        "count": Axis([0, 1], ([2], [3], [4])),  # on top of the task's own distractors
        "toy_set": Axis(["train"], (["heldout"], ["heldout_monokind"], ["heldout_five_parts"])),
    }
    touches = ("task",)

    @property
    def nominal(self):
        return {"count": None, "toy_set": None}  # None: what the task itself asks for

    def edit_task(self, task, values: dict) -> None:
        extra = values["count"]
        task.set_distractors(None if extra is None else task.default_distractors + int(extra), values["toy_set"])


@_register
class TargetAppearance(Factor):
    name = "target_appearance"
    axes = {
        "hue": Axis((-0.05, 0.05), ((0.15, 0.3), (0.3, 0.4), (0.4, 0.5)), unit="turn"),
        "size": Axis((-0.05, 0.05), ((0.12, 0.2), (0.2, 0.28), (0.28, 0.36)), unit="scale"),
    }
    nominal = {"hue": 0.0, "size": 0.0}
    touches = ("geom_rgba", "task", "body_mass", "body_inertia")  # size changes mass too

    def edit_task(self, task, values: dict) -> None:
        if values["size"]:
            task.scale_target(1.0 + values["size"])

    def apply(self, env, values: dict) -> None:
        if values["hue"]:
            m = env.scene.model
            for g in env.scene.object_geoms[env.task.target_index]:
                m.geom_rgba[g] = shift_hue(m.geom_rgba[g], values["hue"])


@_register
class ObjectPhysics(Factor):
    name = "object_physics"
    axes = {
        "mass": Axis((-0.2, 0.2), ((0.35, 0.5), (0.5, 0.65), (0.65, 0.8)), unit="scale"),
        "friction": Axis((-0.1, 0.1), ((0.2, 0.3), (0.3, 0.4), (0.4, 0.5)), unit="scale"),
    }
    nominal = {"mass": 0.0, "friction": 0.0}
    touches = ("body_mass", "body_inertia", "geom_friction")
    changes_inertia = True

    def apply(self, env, values: dict) -> None:
        m = env.scene.model
        for body, geoms in zip(env.scene.object_bodies, env.scene.object_geoms):
            m.body_mass[body] *= 1.0 + values["mass"]
            m.body_inertia[body] *= 1.0 + values["mass"]
            m.geom_friction[geoms, 0] *= 1.0 + values["friction"]


@_register
class RobotInit(Factor):
    name = "robot_init"
    axes = {"spread": Axis((0.0, 0.04), ((0.06, 0.09), (0.09, 0.12), (0.12, 0.15)), symmetric=False,
                           unit="fraction of half joint range")}
    nominal = {"spread": 0.0}
    touches = ("qpos",)

    def sample(self, level, rng: np.random.Generator) -> dict:
        values = super().sample(level, rng)
        # per-joint directions drawn here so the values record the exact start
        values["direction"] = [float(x) for x in rng.uniform(-1.0, 1.0, 7)]
        return values

    def apply(self, env, values: dict) -> None:
        emb = env.embodiment
        low, high = env.controller.joint_low, env.controller.joint_high
        n = len(emb.arm_joints)
        offset = np.asarray(values["direction"][:n]) * values["spread"] * 0.5 * (high - low)
        env.start_qpos = np.clip(emb.home_qpos() + offset, low, high)


@_register
class Language(Factor):
    name = "language"
    axes = {"phrasing": Axis(["train"], (["heldout"], ["heldout"], ["heldout"]))}
    nominal = {"phrasing": "canonical"}
    touches = ("task",)

    def sample(self, level, rng: np.random.Generator) -> dict:
        values = super().sample(level, rng)
        values.setdefault("template", int(rng.integers(1 << 30)))  # which phrasing of the split
        return values

    def edit_task(self, task, values: dict) -> None:
        task.set_phrasing(values["phrasing"], values.get("template", 0))


def check_levels(levels: dict | None) -> dict:
    """Validates an env's ``factors`` config: known factor names, known levels or axis names."""
    levels = dict(levels or {})
    for name, level in levels.items():
        factor = FACTORS.get(name)
        if isinstance(level, dict) or hasattr(level, "items"):
            factor.sample(level, np.random.default_rng(0))
        elif level not in factor.levels():
            raise ValueError(f"factor '{name}' has no level {level!r}; levels: {', '.join(factor.levels())}")
    return levels


__all__ = ["FACTORS", "Axis", "Factor", "OOD_LEVELS", "check_levels", "factor_rng", "spherical_camera"]
