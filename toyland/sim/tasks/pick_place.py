"""PickPlace: put the named toy in the bowl ("put the red ring in the bowl").

``pick_place`` puts the target among two distractors, as ``language_lift`` does; ``place`` has the
target alone, as ``lift`` does (a new skill for a policy that does not read which toy is meant).

The bowl is a fixture: a mocap body (placed at reset without a recompile) made of a base disc and
a ring of wall segments. Success is a ground-truth predicate held for a few control steps: the
target's centre is inside the bowl's wall, its lowest point is below the rim, and the gripper has
let go of it. ``wrong_object`` and ``cue_success`` count other objects put in the bowl.
"""

from __future__ import annotations

import mujoco
import numpy as np

from toyland.sim import geometry as geo
from toyland.sim.scene import TABLE_TOP_Z, Scene
from toyland.sim.tasks.base import TASKS, Task

BOWL_RADIUS = 0.1  # inner radius of the wall
BOWL_BASE = 0.004  # half thickness of the base disc
WALL_HEIGHT = 0.04
WALL_SEGMENTS = 20
BOWL_RGBA = (0.92, 0.92, 0.88, 1.0)
RIM_Z = TABLE_TOP_Z + 2 * BOWL_BASE + WALL_HEIGHT
HOLD_STEPS = 3


def add_bowl(spec: mujoco.MjSpec, name: str = "bowl") -> mujoco.MjsBody:
    body = spec.worldbody.add_body(name=name, mocap=True)
    body.add_geom(name=f"{name}/base", type=geo.CYLINDER, size=[BOWL_RADIUS + 0.006, BOWL_BASE, 0],
                  pos=[0, 0, TABLE_TOP_Z + BOWL_BASE], rgba=list(BOWL_RGBA))
    half_chord = (BOWL_RADIUS + 0.006) * np.sin(np.pi / WALL_SEGMENTS) + 0.001
    for k in range(WALL_SEGMENTS):
        angle = 2 * np.pi * k / WALL_SEGMENTS
        centre = (BOWL_RADIUS + 0.003) * np.array([np.cos(angle), np.sin(angle)])
        body.add_geom(
            name=f"{name}/wall{k}", type=geo.BOX, size=[0.003, half_chord, WALL_HEIGHT / 2],
            pos=[centre[0], centre[1], TABLE_TOP_Z + 2 * BOWL_BASE + WALL_HEIGHT / 2],
            quat=list(geo.axis_angle_quat([0, 0, 1], angle)), rgba=list(BOWL_RGBA),
        )
    return body


@TASKS.register("pick_place")
class PickPlace(Task):
    name = "pick_place"
    default_distractors = 2
    max_episode_steps = 150
    fixtures = {"bowl": BOWL_RADIUS + 0.01}
    phrasings = {
        "canonical": ("put the {object} in the bowl",),
        "train": (
            "put the {object} in the bowl",
            "place the {object} into the bowl",
            "move the {object} to the bowl",
            "drop the {object} in the bowl",
        ),
        "heldout": (
            "could you set the {object} inside the bowl?",
            "the {object} belongs in the bowl",
            "transfer the {object} over to the bowl",
        ),
    }

    def add_objects(self, spec: mujoco.MjSpec) -> tuple[str, ...]:
        names = super().add_objects(spec)
        add_bowl(spec)
        return names

    def initialize_episode(self, scene: Scene, rng) -> None:
        super().initialize_episode(scene, rng)
        m, d = scene.model, scene.data
        self.bowl_centre = np.array([*self.fixture_xy["bowl"], TABLE_TOP_Z])
        d.mocap_pos[m.body("bowl").mocapid[0]] = self.bowl_centre
        self._in_steps = [0] * len(self.toys)
        self._placed_ever = [False] * len(self.toys)
        self._grasped_ever = False

    def in_bowl(self, scene: Scene, k: int, touching: set[int]) -> bool:
        centre = scene.data.xpos[scene.object_bodies[k]]
        inside = np.linalg.norm(centre[:2] - self.bowl_centre[:2]) < BOWL_RADIUS - 0.01
        released = not any(f in touching for f in scene.finger_geoms)
        return bool(inside and released and scene.lowest_point(scene.object_geoms[k]) < RIM_Z)

    def evaluate(self, scene: Scene) -> dict:
        placed = []
        contacts = scene.object_contacts()
        for k, touching in enumerate(contacts):
            self._in_steps[k] = self._in_steps[k] + 1 if self.in_bowl(scene, k, touching) else 0
            placed.append(self._in_steps[k] >= HOLD_STEPS)
            self._placed_ever[k] = self._placed_ever[k] or placed[k]
        t = self.target_index
        grasped = all(f in contacts[t] for f in scene.finger_geoms)
        self._grasped_ever = self._grasped_ever or grasped
        result = {
            "success": placed[t],
            "grasped": grasped,
            "grasped_ever": self._grasped_ever,
            "wrong_object": any(v for k, v in enumerate(self._placed_ever) if k != t),
        }
        if self.cue_index is not None:
            result["cue_success"] = self.cue_index != t and self._placed_ever[self.cue_index]
        return result


@TASKS.register("place")
class Place(PickPlace):
    name = "place"
    default_distractors = 0
