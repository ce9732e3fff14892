"""What an embodiment provides to the scene, the controller and the experts."""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from toyland.registry import Registry
from toyland.sim.embodiments.gripper import FINGER_JOINTS


@dataclass(frozen=True)
class Embodiment:
    """A robot that builds its own MjSpec (root body ``base``) and is attached with a name prefix.

    ``arm_joints`` are the joints the end-effector controller drives through differential IK;
    the finger joints follow the gripper command. ``home`` is the arm configuration at reset.
    """

    name: str
    arm_joints: tuple[str, ...]
    home: tuple[float, ...]
    mount_pos: tuple[float, float, float]
    max_joint_velocity: tuple[float, ...]
    build_fn: object  # () -> mujoco.MjSpec
    # the end-effector IK's weight on the tool's orientation against its position (per radian and
    # metre), one number or one per axis of the tool frame: an arm with fewer than six joints gives up
    # some of the orientation to reach a position
    orientation_cost: float | tuple[float, float, float] = 0.5

    def build(self) -> mujoco.MjSpec:
        spec = self.build_fn()
        if spec.body("base") is None:
            raise ValueError(f"embodiment '{self.name}' must build a root body named 'base'")
        return spec

    @property
    def finger_joints(self) -> tuple[str, ...]:
        return FINGER_JOINTS

    @property
    def prefix(self) -> str:
        return f"{self.name}/"

    def home_qpos(self) -> np.ndarray:
        return np.asarray(self.home, dtype=float)


EMBODIMENTS: Registry[Embodiment] = Registry("embodiment")


def register_embodiment(embodiment: Embodiment) -> Embodiment:
    EMBODIMENTS.register(embodiment.name)(embodiment)
    return embodiment


def get_embodiment(name: str) -> Embodiment:
    return EMBODIMENTS.get(name)
