"""Lift: one toy at a random pose on the table; succeed by holding it 10 cm above the table."""

from __future__ import annotations

import numpy as np

from toyland.sim import geometry as geo
from toyland.sim.scene import TABLE_TOP_Z, Scene
from toyland.sim.tasks.base import SPAWN_HIGH, SPAWN_LOW, TASKS, Task, place_on_table

LIFT_HEIGHT = 0.10
HOLD_STEPS = 3


@TASKS.register("lift")
class Lift(Task):
    name = "lift"

    def sample_objects(self, rng: np.random.Generator) -> None:
        self.toys = [self.toy_set.toy(self.toy_set.sample_seed(rng))]

    def initialize_episode(self, scene: Scene, rng: np.random.Generator) -> None:
        body, geoms = scene.object_bodies[0], scene.object_geoms[0]
        place_on_table(scene, body, geoms, rng.uniform(SPAWN_LOW, SPAWN_HIGH), geo.random_rotation(rng))
        self._held_steps = 0
        self._table = scene.model.geom("table").id

    def evaluate(self, scene: Scene) -> dict:
        geoms = scene.object_geoms[0]
        height = scene.lowest_point(geoms) - TABLE_TOP_Z
        touching = scene.contacts_with(geoms)
        grasped = all(f in touching for f in scene.finger_geoms)
        held = grasped and self._table not in touching and height >= LIFT_HEIGHT
        self._held_steps = self._held_steps + 1 if held else 0
        return {
            "success": self._held_steps >= HOLD_STEPS,
            "grasped": grasped,
            "object_height": height,
        }

    @property
    def instruction(self) -> str:
        return "pick up the toy"
