"""Push: slide the named toy across the table onto a marked spot ("push the red ring to the marker").

The marker is a flat disc on the table with no collision (a mocap body, placed at reset without a
recompile), 10 to 18 cm from the toy in a random direction. Success is a ground-truth predicate
held for a few control steps: the toy's centre of mass lies within ``SUCCESS_RADIUS`` of the
marker's centre (over the disc), the toy rests on the table and the gripper does not hold it (both
fingers touching it), so carrying the toy there does not count. ``wrong_object`` and
``cue_success`` count other objects brought onto the marker.
"""

from __future__ import annotations

import mujoco
import numpy as np

from toyland.sim import geometry as geo
from toyland.sim.scene import TABLE_TOP_Z, Scene
from toyland.sim.tasks.base import (DISTRACTOR_HIGH, DISTRACTOR_LOW, PLACEMENT_RESTARTS, PLACEMENT_TRIES, SPAWN_HIGH,
                                    SPAWN_LOW, TASKS, Task, place_on_table)

SUCCESS_RADIUS = 0.03  # the marker disc's radius: the toy's centre must lie over it
MARKER_HALF_HEIGHT = 0.0008
MARKER_RGBA = (0.95, 0.95, 0.92, 1.0)  # off-white, apart from the table's wood and the named toy colours
PUSH_DISTANCE = (0.10, 0.18)  # marker centre from the toy's start
# where the marker may lie: inside the distractor area, away from its edges, so the tool can get behind the toy
MARKER_LOW = np.array([0.36, -0.24])
MARKER_HIGH = np.array([0.66, 0.24])
HOLD_STEPS = 3


def add_marker(spec: mujoco.MjSpec, name: str = "marker") -> mujoco.MjsBody:
    body = spec.worldbody.add_body(name=name, mocap=True)
    body.add_geom(name=f"{name}/disc", type=geo.CYLINDER, size=[SUCCESS_RADIUS, MARKER_HALF_HEIGHT, 0],
                  pos=[0, 0, TABLE_TOP_Z + MARKER_HALF_HEIGHT], rgba=list(MARKER_RGBA), contype=0, conaffinity=0)
    return body


@TASKS.register("push")
class Push(Task):
    name = "push"
    max_episode_steps = 150
    phrasings = {
        "canonical": ("push the {object} to the marker",),
        "train": (
            "push the {object} to the marker",
            "slide the {object} onto the marker",
            "move the {object} to the white spot by pushing it",
            "shove the {object} over to the marker",
        ),
        "heldout": (
            "could you nudge the {object} onto the white disc?",
            "the {object} should end up on the marker, slide it there",
            "without lifting it, get the {object} to the marked spot",
        ),
    }

    def add_objects(self, spec: mujoco.MjSpec) -> tuple[str, ...]:
        names = super().add_objects(spec)
        add_marker(spec)
        return names

    def initialize_episode(self, scene: Scene, rng: np.random.Generator) -> None:
        """The target in the spawn area, the marker at a push distance from it (from the episode's
        stream, so it does not depend on the distractors), then the distractors off the push's path."""
        t = self.target_index
        target_xy = rng.uniform(SPAWN_LOW, SPAWN_HIGH)
        place_on_table(scene, scene.object_bodies[t], scene.object_geoms[t], target_xy, geo.random_rotation(rng))
        for _ in range(PLACEMENT_TRIES):
            angle, distance = rng.uniform(0, 2 * np.pi), rng.uniform(*PUSH_DISTANCE)
            marker_xy = target_xy + distance * np.array([np.cos(angle), np.sin(angle)])
            if np.all((MARKER_LOW <= marker_xy) & (marker_xy <= MARKER_HIGH)):
                break
        else:  # the spawn area lies inside the marker area, so a direction always fits
            raise RuntimeError(f"no marker position {PUSH_DISTANCE} m from {target_xy} inside the marker area")
        self.marker_xy = marker_xy
        m, d = scene.model, scene.data
        d.mocap_pos[m.body("marker").mocapid[0]] = [*marker_xy, 0.0]
        self._place_distractors(scene, target_xy, marker_xy)
        self._in_steps = [0] * len(self.toys)
        self._placed_ever = [False] * len(self.toys)
        self._table = m.geom("table_top").id

    def _place_distractors(self, scene: Scene, target_xy: np.ndarray, marker_xy: np.ndarray) -> None:
        t = self.target_index
        others = [i for i in range(len(self.toys)) if i != t]
        reach = self.toys[t].radius
        # the target, the marker, the path between them and the spot behind the target the tool pushes from
        u = (marker_xy - target_xy) / np.linalg.norm(marker_xy - target_xy)
        keep_out = [(target_xy, reach), (marker_xy, SUCCESS_RADIUS + reach), ((target_xy + marker_xy) / 2, reach + 0.03),
                    (target_xy - u * (reach + 0.04), 0.05)]
        for _restart in range(PLACEMENT_RESTARTS):
            placed: dict[int, np.ndarray] = {}
            for i in others:
                r = self.toys[i].radius
                for _ in range(PLACEMENT_TRIES):
                    xy = self._side_rng.uniform(DISTRACTOR_LOW, DISTRACTOR_HIGH)
                    if all(np.linalg.norm(xy - p) > r + q + 0.01 for p, q in keep_out) and \
                            all(np.linalg.norm(xy - p) > r + self.toys[j].radius + 0.01 for j, p in placed.items()):
                        placed[i] = xy
                        break
                else:
                    break
            if len(placed) == len(others):
                break
        else:
            raise RuntimeError(f"could not place {len(others)} distractors off the push's path; use fewer distractors")
        for i in others:
            place_on_table(scene, scene.object_bodies[i], scene.object_geoms[i], placed[i], geo.random_rotation(self._side_rng))

    def centre_distance(self, scene: Scene, k: int) -> float:
        """How far object ``k``'s centre of mass lies from the marker's centre, in the table plane."""
        return float(np.linalg.norm(scene.data.xipos[scene.object_bodies[k], :2] - self.marker_xy))

    def evaluate(self, scene: Scene) -> dict:
        contacts = scene.object_contacts()
        placed = []
        for k, touching in enumerate(contacts):
            held = all(f in touching for f in scene.finger_geoms)
            there = self.centre_distance(scene, k) < SUCCESS_RADIUS and self._table in touching and not held
            self._in_steps[k] = self._in_steps[k] + 1 if there else 0
            placed.append(self._in_steps[k] >= HOLD_STEPS)
            self._placed_ever[k] = self._placed_ever[k] or placed[k]
        t = self.target_index
        result = {
            "success": placed[t],
            "distance": self.centre_distance(scene, t),  # of the target's centre from the marker's
            "grasped": all(f in contacts[t] for f in scene.finger_geoms),
            "on_table": self._table in contacts[t],
            "wrong_object": any(v for k, v in enumerate(self._placed_ever) if k != t),
        }
        if self.cue_index is not None:
            result["cue_success"] = self.cue_index != t and self._placed_ever[self.cue_index]
        return result

    def episode_info(self) -> dict:
        return {**super().episode_info(), "marker_xy": [float(v) for v in self.marker_xy]}
