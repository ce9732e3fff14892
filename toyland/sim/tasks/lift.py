"""Lift: pick up the target toy and hold it 10 cm above the table.

``lift`` has one toy on the table; ``language_lift`` adds two distractors in other colours and names
the target by colour and shape ("pick up the blue ring"). Both report, besides success, whether a
wrong object was lifted and, in shortcut scenarios, whether the object the nuisance cue points to
was lifted (``cue_success``).
"""

from __future__ import annotations

from toyland.sim.scene import TABLE_TOP_Z, Scene
from toyland.sim.tasks.base import TASKS, Task

LIFT_HEIGHT = 0.10
HOLD_STEPS = 3


@TASKS.register("lift")
class Lift(Task):
    name = "lift"
    phrasings = {
        "canonical": ("pick up the {object}",),
        "train": (
            "pick up the {object}",
            "lift the {object}",
            "grab the {object} and lift it",
            "raise the {object} off the table",
            "take the {object} and hold it up",
        ),
        "heldout": (
            "could you hoist the {object}?",
            "get the {object} into the air",
            "elevate the {object}",
            "I need the {object} picked up off the table",
        ),
    }

    def initialize_episode(self, scene: Scene, rng) -> None:
        super().initialize_episode(scene, rng)
        self._held_steps = [0] * len(self.toys)
        self._lifted_ever = [False] * len(self.toys)  # wrong-object and cue outcomes latch
        self._grasped_ever = False  # failure analysis: never grasped, or grasped and then lost
        self._table = scene.model.geom("table_top").id

    def _held(self, scene: Scene, k: int, touching: set[int]) -> tuple[bool, bool, float]:
        geoms = scene.object_geoms[k]
        grasped = all(f in touching for f in scene.finger_geoms)
        if not grasped:
            return False, False, 0.0
        height = scene.lowest_point(geoms) - TABLE_TOP_Z
        return grasped, self._table not in touching and height >= LIFT_HEIGHT, height

    def evaluate(self, scene: Scene) -> dict:
        lifted = []
        for k, touching in enumerate(scene.object_contacts()):
            grasped_k, held, height_k = self._held(scene, k, touching)
            self._held_steps[k] = self._held_steps[k] + 1 if held else 0
            lifted.append(self._held_steps[k] >= HOLD_STEPS)
            self._lifted_ever[k] = self._lifted_ever[k] or lifted[k]
            if k == self.target_index:
                grasped, height = grasped_k, height_k
        t = self.target_index
        self._grasped_ever = self._grasped_ever or grasped
        result = {
            "success": lifted[t],
            "grasped": grasped,
            "grasped_ever": self._grasped_ever,
            "object_height": height,  # lowest point of the target above the table while grasped, else 0
            "wrong_object": any(v for k, v in enumerate(self._lifted_ever) if k != t),
        }
        if self.cue_index is not None:
            result["cue_success"] = self.cue_index != t and self._lifted_ever[self.cue_index]
        return result


@TASKS.register("language_lift")
class LanguageLift(Lift):
    name = "language_lift"
    default_distractors = 2
