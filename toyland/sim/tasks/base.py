"""Task API (after ManiSkill): objects are chosen at rebuild time, posed at reset time, and
``evaluate`` turns the simulator state into success and diagnostics once per control step."""

from __future__ import annotations

from abc import ABC, abstractmethod

import mujoco
import numpy as np

from toyland.registry import Registry
from toyland.sim.scene import TABLE_TOP_Z, Scene
from toyland.sim.toy_sets import ToySet
from toyland.sim.toys import ToySpec, add_toy

TASKS: Registry[type] = Registry("task")

# Where objects may be spawned on the table, in front of the robot.
SPAWN_LOW = np.array([0.42, -0.15])
SPAWN_HIGH = np.array([0.6, 0.15])


class Task(ABC):
    name: str = ""

    def __init__(self, toy_set: ToySet):
        self.toy_set = toy_set
        self.toys: list[ToySpec] = []

    # -- rebuild time ---------------------------------------------------------------------------
    @abstractmethod
    def sample_objects(self, rng: np.random.Generator) -> None:
        """Chooses this episode's objects (stored on the task)."""

    def add_objects(self, worldbody: mujoco.MjsBody) -> tuple[str, ...]:
        names = []
        for i, toy in enumerate(self.toys):
            add_toy(worldbody, toy, f"toy{i}")
            names.append(f"toy{i}")
        return tuple(names)

    # -- reset time -----------------------------------------------------------------------------
    @abstractmethod
    def initialize_episode(self, scene: Scene, rng: np.random.Generator) -> None:
        """Poses the objects and clears per-episode state."""

    @abstractmethod
    def evaluate(self, scene: Scene) -> dict:
        """Returns at least {'success': bool}; called once per control step."""

    @property
    @abstractmethod
    def instruction(self) -> str: ...

    def episode_info(self) -> dict:
        return {"toys": [t.to_dict() for t in self.toys]}


def place_on_table(scene: Scene, body: int, geoms: np.ndarray, xy, quat, clearance: float = 0.002) -> None:
    """Puts a free body at ``xy`` with orientation ``quat`` so its lowest point just clears the table."""
    m, d = scene.model, scene.data
    adr = m.jnt_qposadr[m.body_jntadr[body]]
    d.qpos[adr : adr + 3] = [xy[0], xy[1], 0.5]
    d.qpos[adr + 3 : adr + 7] = quat
    mujoco.mj_kinematics(m, d)
    d.qpos[adr + 2] += TABLE_TOP_Z + clearance - scene.lowest_point(geoms)
