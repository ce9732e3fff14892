"""Task API (after ManiSkill): objects are chosen at rebuild time, posed at reset time, and
``evaluate`` turns the simulator state into success and diagnostics once per control step.

Every task has one target object (``target_index``) and optional distractors. With more than one
object on the table each object gets its own named colour, so an instruction ("pick up the blue
ring") singles out the target. Factors reach tasks through the ``set_*`` hooks, which hold for
one episode (``begin_episode`` restores the defaults).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import mujoco
import numpy as np

from toyland.registry import Registry
from toyland.sim import geometry as geo
from toyland.sim.instructions import check_mode, phrase
from toyland.sim.scene import TABLE_TOP_Z, Scene
from toyland.sim.toy_sets import ToySet, get_toy_set
from toyland.sim.toys import ToySpec

TASKS: Registry[type] = Registry("task")

# Where the target may be spawned on the table, in front of the robot; distractors use a wider area.
SPAWN_LOW = np.array([0.42, -0.15])
SPAWN_HIGH = np.array([0.6, 0.15])
DISTRACTOR_LOW = np.array([0.3, -0.32])
DISTRACTOR_HIGH = np.array([0.72, 0.32])
# placement "exchangeable": every toy drawn alike from one area, in a random order, so that where a
# toy lies says nothing about whether it is the target (with "target_first" the target is the toy
# nearest the spawn area's centre in about 90% of Language Lift episodes)
TOY_LOW = np.array([0.38, -0.22])
TOY_HIGH = np.array([0.64, 0.22])
PLACEMENTS = ("target_first", "exchangeable")
PLACEMENT_TRIES = 100
PLACEMENT_RESTARTS = 30

# Named colours that tell objects apart in instructions (distinct under the default lighting).
COLOURS = {
    "red": (0.85, 0.12, 0.12, 1.0),
    "green": (0.15, 0.65, 0.2, 1.0),
    "blue": (0.12, 0.3, 0.9, 1.0),
    "yellow": (0.95, 0.85, 0.1, 1.0),
    "purple": (0.55, 0.2, 0.75, 1.0),
    "orange": (0.98, 0.5, 0.05, 1.0),
    "pink": (0.98, 0.55, 0.75, 1.0),
    "cyan": (0.1, 0.8, 0.85, 1.0),
}


class Task(ABC):
    name: str = ""
    default_distractors: int = 0
    max_episode_steps: int = 100  # control steps before truncation
    fixtures: dict[str, float] = {}  # static things the task adds (name -> footprint radius), e.g. a bowl
    # Instruction templates with an {object} slot: "canonical" is the default phrasing, "train"
    # and "heldout" are disjoint paraphrase sets for the language factor.
    phrasings: dict[str, tuple[str, ...]] = {}

    def __init__(self, toy_set: ToySet, placement: str = "target_first", instruction: str = "text"):
        if placement not in PLACEMENTS:
            raise ValueError(f"placement {placement!r}; valid: {', '.join(PLACEMENTS)}")
        self.toy_set, self.placement = toy_set, placement
        self.instruction_mode = check_mode(instruction)  # text | interleaved | image (toyland/sim/instructions.py)
        self.toys: list[ToySpec] = []
        self.colour_names: list[str | None] = []
        self.target_index = 0
        self.cue_index: int | None = None
        self.begin_episode()

    # -- per-episode settings (factor and scenario hooks) ---------------------------------------
    def begin_episode(self) -> None:
        self.num_distractors = self.default_distractors
        self.distractor_set = self.toy_set
        self.phrasing, self.template = "canonical", 0
        self.target_scale = 1.0
        self.slot_colours: tuple[str, ...] | None = None
        self.target_slot = 0

    def set_distractors(self, count: int | None, toy_set: str | None) -> None:
        if count is not None:
            self.num_distractors = int(count)
        if toy_set is not None:
            self.distractor_set = get_toy_set(toy_set)

    def scale_target(self, scale: float) -> None:
        self.target_scale = float(scale)

    def set_phrasing(self, phrasing: str, template: int = 0) -> None:
        if phrasing not in self.phrasings:
            raise ValueError(f"task '{self.name}' has no phrasing '{phrasing}'; valid: {sorted(self.phrasings)}")
        self.phrasing, self.template = phrasing, int(template)

    def set_slots(self, colours: tuple[str, ...], target_slot: int) -> None:
        """Shortcut scenarios: objects 0..K-1 get these colours and object ``target_slot`` is the target."""
        unknown = set(colours) - set(COLOURS)
        if unknown:
            raise ValueError(f"unknown colours {sorted(unknown)}; valid: {', '.join(COLOURS)}")
        self.slot_colours, self.target_slot = tuple(colours), int(target_slot)
        self.num_distractors = max(self.num_distractors, len(colours) - 1)

    # -- rebuild time ---------------------------------------------------------------------------
    def sample_objects(self, rng: np.random.Generator, target_seed: int | None = None) -> None:
        """Chooses the target (``target_seed`` of the toy set if given) and distractor toys and their colours."""
        seed = self.toy_set.sample_seed(rng)  # drawn either way: the rest of the episode stays the same
        target = self.toy_set.toy(seed if target_seed is None else int(target_seed))
        # Distractors and placements draw from their own stream so that the target and its pose
        # do not depend on how many distractors an episode has.
        self._side_rng = np.random.default_rng(rng.integers(2**63))
        if self.target_scale != 1.0:
            target = target.scaled(self.target_scale)
        others = [self.distractor_set.toy(self.distractor_set.sample_seed(self._side_rng)) for _ in range(self.num_distractors)]
        toys = [target, *others]
        self.target_index = 0
        if self.slot_colours is not None:  # the target sits in its slot among the cue objects
            toys.insert(self.target_slot, toys.pop(0))
            self.target_index = self.target_slot
        self.colour_names = [None] * len(toys)
        if len(toys) > 1:
            fixed = list(self.slot_colours or ())
            rest = [c for c in COLOURS if c not in fixed]
            self._side_rng.shuffle(rest)
            names = (fixed + rest)[: len(toys)]
            if len(names) < len(toys):
                raise ValueError(f"at most {len(COLOURS)} objects can be told apart by colour, asked for {len(toys)}")
            self.colour_names = names
            toys = [t.recoloured(COLOURS[n]) for t, n in zip(toys, names)]
        self.toys = toys

    def add_objects(self, spec: mujoco.MjSpec) -> tuple[str, ...]:
        names = []
        for i, toy in enumerate(self.toys):
            toy.add_to(spec, f"toy{i}")
            names.append(f"toy{i}")
        return tuple(names)

    # -- reset time -----------------------------------------------------------------------------
    def initialize_episode(self, scene: Scene, rng: np.random.Generator) -> None:
        """Poses the target in the spawn area, then the task's fixtures and the distractors around
        it, without overlaps; fixture positions end up in ``fixture_xy``."""
        t = self.target_index
        radii = {**self.fixtures, **{i: self.toys[i].radius for i in range(len(self.toys))}}
        if self.placement == "exchangeable":  # every toy from one area in a random order, fixtures around them
            first = {}
            toys = [int(i) for i in rng.permutation(len(self.toys))]
            others = [*toys, *self.fixtures]
            area = {**{i: (TOY_LOW, TOY_HIGH) for i in toys}, **{f: (DISTRACTOR_LOW, DISTRACTOR_HIGH) for f in self.fixtures}}
            draw = rng
        else:
            target_xy = rng.uniform(SPAWN_LOW, SPAWN_HIGH)
            place_on_table(scene, scene.object_bodies[t], scene.object_geoms[t], target_xy, geo.random_rotation(rng))
            first = {t: target_xy}
            others = [*self.fixtures, *(i for i in range(len(self.toys)) if i != t)]
            area = {i: (DISTRACTOR_LOW, DISTRACTOR_HIGH) for i in others}
            draw = self._side_rng
        for _restart in range(PLACEMENT_RESTARTS):  # random sequential packing, restarted when stuck
            placed = dict(first)
            for i in others:
                for _ in range(PLACEMENT_TRIES):
                    xy = draw.uniform(*area[i])
                    if all(np.linalg.norm(xy - p) > radii[i] + radii[j] + 0.01 for j, p in placed.items()):
                        placed[i] = xy
                        break
                else:
                    break
            if len(placed) == len(radii):
                break
        else:
            raise RuntimeError(f"could not place {len(radii)} objects on the table without overlaps; use fewer distractors")
        self.fixture_xy = {name: placed[name] for name in self.fixtures}
        for i in (i for i in others if i not in self.fixtures):
            quat = geo.random_rotation(rng if self.placement == "exchangeable" else self._side_rng)
            place_on_table(scene, scene.object_bodies[i], scene.object_geoms[i], placed[i], quat)

    @abstractmethod
    def evaluate(self, scene: Scene) -> dict:
        """Returns at least {'success': bool}; called once per control step."""

    def describe(self, index: int) -> str:
        noun = self.toys[index].describe()
        colour = self.colour_names[index] if self.colour_names else None
        return f"{colour} {noun}" if colour else noun

    @property
    def instruction(self) -> str:
        templates = self.phrasings[self.phrasing]
        return phrase(templates[self.template % len(templates)], self.describe(self.target_index), self.instruction_mode)

    def episode_info(self) -> dict:
        return {
            "toys": [t.to_dict() for t in self.toys],
            "target_index": self.target_index,
            "colours": list(self.colour_names),
            "instruction": self.instruction,
        }


def place_on_table(scene: Scene, body: int, geoms: np.ndarray, xy, quat, clearance: float = 0.002) -> None:
    """Puts a free body at ``xy`` with orientation ``quat`` so its lowest point just clears the table."""
    m, d = scene.model, scene.data
    adr = m.jnt_qposadr[m.body_jntadr[body]]
    d.qpos[adr : adr + 3] = [xy[0], xy[1], 0.5]
    d.qpos[adr + 3 : adr + 7] = quat
    mujoco.mj_kinematics(m, d)
    d.qpos[adr + 2] += TABLE_TOP_Z + clearance - scene.lowest_point(geoms)
