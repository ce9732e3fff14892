"""Scripted experts with privileged simulator access, used to collect demonstrations.

The Lift expert plans a top-down grasp on one of the toy's parts or across the whole toy: for every
part (and the whole) and gripper yaw it computes the jaw width from support functions, rejects grasps
wider than the gripper, checks with signed distances that the open fingers, the path they sweep
while closing and the palm clear the toy and everything else, and picks the clear grasp nearest the
toy's centre of mass. It then approaches, descends (slowly for the last few cm), closes until the
fingers stall and lifts, with end-effector delta actions (in whichever end-effector mode the env
uses), and re-plans if the toy is not in the hand.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from toyland.registry import Registry
from toyland.sim import geometry as geo
from toyland.sim.annotations import (GRASP_ANNOTATION, GRASP_NAMES, PHASE_ANNOTATION, TARGET_ANNOTATION, phase_feature,
                                     phase_one_hot, target_feature)
from toyland.sim.embodiments.gripper import FINGER_HALF, FINGER_TRAVEL, TCP_Z, TIP_BELOW_TCP
from toyland.sim.scene import TABLE_TOP_Z, Scene
from toyland.sim.tasks.pick_place import RIM_Z
from toyland.sim.toys import MAX_GRASP_WIDTH

EXPERTS: Registry[type] = Registry("expert")
YAWS = np.linspace(0.0, np.pi, 12, endpoint=False)


def nearest_jaw_yaw(scene, yaw: float) -> float:
    """``yaw`` or ``yaw + k pi``, whichever is nearest the tool's current yaw (of the finger axis, tcp
    y): the parallel jaw is symmetric, so the two are the same grasp and the nearer turns least."""
    _, rot = scene.tcp_pose()
    current = np.arctan2(rot[1, 1], rot[0, 1])
    return yaw + np.pi * np.round((current - yaw) / np.pi)


@dataclass(frozen=True)
class Grasp:
    pos: np.ndarray  # tool-centre-point target
    yaw: float  # fingers close along (cos yaw, sin yaw, 0)
    width: float
    clearance: float  # smallest signed distance from the open gripper and its closing sweep to anything


def _gripper_points(pos: np.ndarray, yaw: float, width: float) -> np.ndarray:
    """Sample points on the open finger pads, on the path their inner faces sweep while closing
    down to ``width``, and on the palm's underside, for a top-down grasp at ``pos``."""
    d = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    e = np.array([-np.sin(yaw), np.cos(yaw), 0.0])
    pad = [FINGER_TRAVEL + 0.001, FINGER_TRAVEL + FINGER_HALF[1], FINGER_TRAVEL + 2 * FINGER_HALF[1]]
    # Another part in the sweep stops the fingers early, on a wider and looser span than planned.
    sweep = np.linspace(min(width / 2 + 0.004, FINGER_TRAVEL), FINGER_TRAVEL, 4)
    pts = []
    for side in (-1.0, 1.0):
        for s in (*pad, *sweep):
            for t in (-FINGER_HALF[0], 0.0, FINGER_HALF[0]):
                for z in (-TIP_BELOW_TCP, -0.005, 0.012, 0.03):
                    pts.append(pos + side * s * d + t * e + np.array([0, 0, z]))
    palm_z = TCP_Z - 0.056  # the palm's underside, measured from the tcp
    for s in (-0.08, -0.04, 0.0, 0.04, 0.08):
        for t in (-0.02, 0.02):
            pts.append(pos + s * d + t * e + np.array([0, 0, palm_z]))
    return np.asarray(pts)


def plan_grasp(scene: Scene, geoms: np.ndarray, avoid: tuple[Grasp, ...] = (), obstacles: np.ndarray | None = None) -> Grasp:
    """Best clear top-down grasp on ``geoms``; grasps like one in ``avoid`` (tried and missed) rank
    last. The open gripper must clear the target and ``obstacles`` (other objects' geoms)."""
    m, d = scene.model, scene.data
    com = d.xipos[m.geom_bodyid[geoms[0]]]

    shapes = [_Shape.of(scene, g) for g in geoms]
    blockers = shapes + [_Shape.of(scene, g) for g in (obstacles if obstacles is not None else ())]
    best, best_key = None, None
    narrowest = (np.inf, None)
    min_z = TABLE_TOP_Z + TIP_BELOW_TCP + 0.006
    # Each part alone, and the whole toy: a ring built of segments is held across its hole.
    groups = [(shape.centre, (shape,)) for shape in shapes]
    if len(shapes) > 1:
        groups.append((com.copy(), tuple(shapes)))
    for centre, group in groups:

        def support(u, centre=centre, group=group):  # of the group's convex hull, from its centre
            return max(float((s.centre - centre) @ u) + s.support(u) for s in group)

        top = centre[2] + support(geo.UP)
        z = float(np.clip(centre[2], min_z, max(min_z, top - 0.008)))
        hull = _mesh_points(group)
        for yaw in YAWS:
            direction = np.array([np.cos(yaw), np.sin(yaw), 0.0])
            ahead, behind = support(direction), support(-direction)
            width = ahead + behind
            if width > MAX_GRASP_WIDTH:
                if width < narrowest[0]:  # kept only in case nothing fits: the best bad grasp
                    narrowest = (width, Grasp(np.array([centre[0], centre[1], z]), float(yaw), width, -1.0))
                continue
            mid = centre + 0.5 * (ahead - behind) * direction  # jaw centred on the span (meshes are lopsided)
            pos = np.array([mid[0], mid[1], z])
            face = True
            if hull is not None:  # the pads must meet the widest part with their faces, not their tips
                pos[2], face = _pad_height(hull, direction, z)
            pts = _gripper_points(pos, yaw, width)
            clearance = min(float(b.signed_distance(pts).min()) for b in blockers)
            cost = np.linalg.norm(pos[:2] - com[:2]) + 0.2 * width
            if any(_similar(pos, yaw, g) for g in avoid):
                cost += 1.0
            key = (face, clearance > 0.003, -cost if clearance > 0.003 else clearance)
            if best_key is None or key > best_key:
                best, best_key = Grasp(pos, float(yaw), width, clearance), key
    # Toys always fit (PartSpec validation); a mesh lying on its side might not: try its narrowest span.
    return best if best is not None else narrowest[1]


class _Shape(NamedTuple):
    """A geom posed in the world, for grasp planning. Meshes keep their vertices and bounding box."""

    gtype: int
    size: np.ndarray  # primitive size, or the mesh's bounding-box half sizes
    centre: np.ndarray
    rot: np.ndarray
    verts: np.ndarray | None = None
    box_centre: np.ndarray | None = None  # the mesh's bounding-box centre in its own frame

    @classmethod
    def of(cls, scene: Scene, g: int) -> "_Shape":
        m, d = scene.model, scene.data
        posed = (d.geom_xpos[g].copy(), d.geom_xmat[g].reshape(3, 3).copy())
        if m.geom_type[g] == geo.MESH:
            return cls(m.geom_type[g], m.geom_aabb[g, 3:], *posed, scene.mesh_vertices(g), m.geom_aabb[g, :3])
        return cls(m.geom_type[g], m.geom_size[g], *posed)

    def support(self, u: np.ndarray) -> float:
        if self.verts is not None:  # a mesh: its convex hull's support is the farthest vertex
            return float((self.verts @ (self.rot.T @ u)).max())
        return geo.support(self.gtype, self.size, self.rot, u)

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        if self.verts is not None:  # a mesh: its bounding box, a conservative clearance
            return geo.signed_distance(geo.BOX, self.size, self.centre + self.rot @ self.box_centre, self.rot, points)
        return geo.signed_distance(self.gtype, self.size, self.centre, self.rot, points)


# On a mesh the fingertips may go this far down towards the table (toys keep 6 mm): an irregular
# object is often widest near its base, and a pad whose tip edge meets the slope above the widest
# part squeezes the object down and out of the jaw as it lifts.
MESH_TIP_HEIGHT = 0.002
PAD_REACH = 0.002  # the tips this far below where the pads meet the object
CONTACT_BAND = 0.003  # hull points this close to the extreme along the closing axis are where a pad meets it


def _mesh_points(group) -> np.ndarray | None:
    """The world vertices of a group's mesh parts (None for a group of primitives: toys, whose
    grasps the plain height rule already holds)."""
    meshes = [s for s in group if s.verts is not None]
    if not meshes:
        return None
    return np.concatenate([s.centre + s.verts @ s.rot.T for s in meshes])


def _pad_height(points: np.ndarray, direction: np.ndarray, z: float) -> tuple[float, bool]:
    """The tcp height for closing along ``direction`` on the hull of ``points``, and whether the pads
    then meet both extremes with their faces: the fingertips must reach below the band where the
    hull is widest along the closing axis, on both sides."""
    reach = []
    for u in (direction, -direction):
        along = points @ u
        reach.append(float(points[along >= along.max() - CONTACT_BAND, 2].min()))
    lowest_tip = TABLE_TOP_Z + MESH_TIP_HEIGHT
    tip = min(z - TIP_BELOW_TCP, min(reach) - PAD_REACH)
    return max(tip, lowest_tip) + TIP_BELOW_TCP, tip >= lowest_tip


def _similar(pos: np.ndarray, yaw: float, grasp: Grasp) -> bool:
    turn = abs((yaw - grasp.yaw + np.pi / 2) % np.pi - np.pi / 2)  # jaw yaw is modulo pi
    return np.linalg.norm(pos[:2] - grasp.pos[:2]) < 0.012 and turn < np.deg2rad(25)


class Expert(ABC):
    """Base for scripted experts: ``reset()`` after ``env.reset``, then ``act()`` each step."""

    def __init__(self, env):
        self.env = env.unwrapped
        if not self.env.controller.end_effector:
            raise ValueError(
                f"the scripted experts move the tool, which control mode '{self.env.control_cfg.mode}' cannot express; "
                "collect demonstrations with control_mode=ee_pose, ee_delta or lerobot_joint"
            )

    def reset(self) -> None:
        pass

    # the phases ``self.phase`` takes (in ``annotations.PHASES``); an expert with phases records the
    # current one per frame as ``annotation.phase``
    PHASES: tuple[str, ...] = ()

    def annotation_features(self) -> dict[str, dict]:
        """lerobot features of the privileged labels ``annotation()`` gives per frame."""
        features = {PHASE_ANNOTATION: phase_feature()} if self.PHASES else {}
        if self.env.masks == "objects":
            features[TARGET_ANNOTATION] = target_feature()
        return features

    def noise_scale(self) -> float:
        """How much of collect's gated DART noise this moment takes, 0..1 (after ``act``): where a
        policy's offset is worth showing the expert correct, fading out before the expert's own
        grasp would fail. Everywhere by default."""
        return 1.0

    def annotation(self) -> dict[str, np.ndarray]:
        """Privileged labels of the current step, recorded beside the demo frame (call after ``act``)."""
        labels = {PHASE_ANNOTATION: phase_one_hot(self.phase)} if self.PHASES else {}
        if self.env.masks == "objects":
            labels[TARGET_ANNOTATION] = np.array([self.env.target_mask_id], dtype=np.float32)
        return labels

    @abstractmethod
    def act(self, obs=None) -> np.ndarray:
        """The next normalized action, from privileged simulator state (``obs`` is unused)."""


@EXPERTS.register("lift")
class LiftExpert(Expert):
    PHASES = ("approach", "descend", "close", "lift", "retreat")
    APPROACH_HEIGHT = 0.10
    LIFT_HEIGHT = 0.22
    # The last few cm of the descent are slow and the close always lasts at least 6 steps: a policy that
    # decides a whole action chunk from one frame misjudges by a step or two, which costs 20 mm at full
    # speed and 6 mm here; lifting before the fingers stall lost the toy.
    SLOW_ZONE, SLOW_SPEED = 0.04, 0.3  # m above the grasp; fraction of the top speed, downwards (sideways: full)
    MIN_CLOSE_STEPS, MAX_CLOSE_STEPS = 6, 20
    SETTLED = 0.0005  # fingers that moved less than this in one step have stalled on the toy (or met)
    LIFT_PATIENCE = 20  # lift steps without the toy in the hand before giving up on a grasp

    @property
    def target_index(self) -> int:
        """The object to lift: the instructed one (a cue-following baseline overrides this)."""
        return self.env.task.target_index

    def reset(self) -> None:
        self.attempts = 0
        self.missed: tuple[Grasp, ...] = ()
        self._plan()

    def noise_scale(self) -> float:
        # Over the descent, in proportion to the height left: a policy fixes its target xy while it
        # approaches and then descends straight, so the demos show offsets at the top of the descent
        # corrected on the way down, and none left when the jaw closes. Elsewhere the tolerances of
        # the phase checks (12 mm, 3 degrees) would stall the expert.
        if self.phase != "descend":
            return 0.0
        tcp, _ = self.env.scene.tcp_pose()
        return float(np.clip((tcp[2] - self.grasp.pos[2]) / self.APPROACH_HEIGHT, 0.0, 1.0))

    def annotation_features(self) -> dict[str, dict]:
        return {**super().annotation_features(),
                GRASP_ANNOTATION: {"dtype": "float32", "shape": (len(GRASP_NAMES),), "names": list(GRASP_NAMES)}}

    def annotation(self) -> dict[str, np.ndarray]:
        g = self.grasp
        return {**super().annotation(),
                GRASP_ANNOTATION: np.array([*g.pos, np.cos(2 * g.yaw), np.sin(2 * g.yaw)], dtype=np.float32)}

    def _plan(self) -> None:
        scene, target = self.env.scene, self.target_index
        others = [g for k, g in enumerate(scene.object_geoms) if k != target]
        obstacles = np.concatenate(others) if others else None
        self.grasp = plan_grasp(scene, scene.object_geoms[target], avoid=self.missed, obstacles=obstacles)
        self.goal_rot = geo.top_down_mat(nearest_jaw_yaw(scene, self.grasp.yaw))
        self.phase, self.phase_steps = "approach", 0
        self.attempts += 1

    def act(self, obs=None) -> np.ndarray:
        scene, ctrl = self.env.scene, self.env.controller
        tcp, _ = scene.tcp_pose()
        g = self.grasp.pos
        self.phase_steps += 1
        speed = 1.0
        if self.phase == "approach":
            goal, grip = g + [0, 0, self.APPROACH_HEIGHT], -1.0
            rot_err = np.linalg.norm(geo.rotvec_from_mat(self.goal_rot @ ctrl.target_rot.T))
            if (np.linalg.norm(tcp - goal) < 0.012 and rot_err < 0.05) or self.phase_steps > 45:
                self.phase, self.phase_steps = "descend", 0
        elif self.phase == "descend":
            goal, grip = g, -1.0
            # (the command sinks from APPROACH_HEIGHT in whole top-speed steps, so it lands on the zone's
            # edge; a 1 um margin decides that case the same way in every control mode, where the float32
            # pose actions of ee_pose would leave it to rounding, ~1e-8 m)
            if ctrl.target_pos[2] - g[2] < self.SLOW_ZONE + 1e-6:
                # Slow downwards only: a tool off to the side is put right at once, not while it sinks.
                speed = np.array([1.0, 1.0, self.SLOW_SPEED])
            if np.linalg.norm(tcp - goal) < 0.006 or self.phase_steps > 25:
                self.phase, self.phase_steps = "close", 0
                self.last_opening = scene.finger_opening()
        elif self.phase == "close":
            # Lift only once the fingers have stopped: lifting while they still close pulls the jaw up
            # past the part before it tightens.
            goal, grip = g, 1.0
            opening = scene.finger_opening()
            stalled = self.phase_steps >= self.MIN_CLOSE_STEPS and abs(opening - self.last_opening) < self.SETTLED
            self.last_opening = opening
            if stalled or self.phase_steps >= self.MAX_CLOSE_STEPS:
                self.phase, self.phase_steps = "lift", 0
        elif self.phase == "lift":
            goal, grip = g + [0, 0, self.LIFT_HEIGHT], 1.0
            empty = scene.finger_opening() < 0.002  # closed on nothing
            if (empty or self.phase_steps > self.LIFT_PATIENCE) and not self._grasped() and self.attempts < 3:
                self.missed += (self.grasp,)
                self._retreat(tcp)
        if self.phase == "retreat":  # open, back off, and re-plan once the toy has come to rest
            goal, grip = self.retreat_to, -1.0
            toy_speed = np.linalg.norm(scene.data.cvel[scene.object_bodies[self.target_index], 3:])
            if (self.phase_steps >= 3 and toy_speed < 0.02) or self.phase_steps > 15:
                self._plan()
        return self._action(ctrl, goal, grip, speed)

    def _grasped(self) -> bool:
        scene = self.env.scene
        touching = scene.object_contacts()[self.target_index]
        return all(f in touching for f in scene.finger_geoms)

    def _retreat(self, tcp: np.ndarray) -> None:
        self.phase, self.phase_steps = "retreat", 0
        self.retreat_to = tcp + [0, 0, 0.05]

    def _action(self, ctrl, goal: np.ndarray, grip: float, speed: float | np.ndarray = 1.0) -> np.ndarray:
        move = np.clip((goal - ctrl.target_pos) / ctrl.max_step, -speed, speed)
        turn = np.clip(geo.rotvec_from_mat(self.goal_rot @ ctrl.target_rot.T) / ctrl.max_rot, -1.0, 1.0)
        return ctrl.from_ee_delta(np.concatenate([move, turn, [grip]]))


EXPERTS.register("language_lift")(LiftExpert)  # the same skill: it reads the target from the task


@EXPERTS.register("pick_place")
class PickPlaceExpert(LiftExpert):
    """Lift's grasp, then carry the toy over the bowl, lower it to just above the rim and let go."""

    PHASES = LiftExpert.PHASES + ("carry", "lower", "release", "clear")
    CARRY_Z = 0.16  # lowest tool height while carrying
    PLACE_PHASES = ("carry", "lower", "release", "clear")

    def act(self, obs=None) -> np.ndarray:
        scene, ctrl = self.env.scene, self.env.controller
        tcp, _ = scene.tcp_pose()
        target = self.target_index
        if self.phase == "lift" and tcp[2] > self.grasp.pos[2] + 0.06 and self._grasped():
            # where the toy hangs relative to the tool: centre its middle over the bowl, clear the rim
            self.hang = tcp - scene.data.xpos[scene.object_bodies[target]]
            self.drop = tcp[2] - scene.lowest_point(scene.object_geoms[target])
            self.phase, self.phase_steps = "carry", 0
        if self.phase in ("carry", "lower") and not self._grasped():  # dropped on the way: grasp again
            self._retreat(tcp)
        if self.phase not in self.PLACE_PHASES:
            return super().act(obs)
        self.phase_steps += 1
        bowl = self.env.task.bowl_centre
        release_z = RIM_Z + self.drop + 0.015
        above = np.array([bowl[0] + self.hang[0], bowl[1] + self.hang[1], max(self.CARRY_Z, release_z + 0.03)])
        grip = 1.0
        if self.phase == "carry":
            goal = above
            if np.linalg.norm(tcp - goal) < 0.015 or self.phase_steps > 40:
                self.phase, self.phase_steps = "lower", 0
        elif self.phase == "lower":
            goal = np.array([above[0], above[1], release_z])
            if np.linalg.norm(tcp - goal) < 0.01 or self.phase_steps > 15:
                self.phase, self.phase_steps = "release", 0
        elif self.phase == "release":
            goal, grip = ctrl.target_pos, -1.0
            if self.phase_steps >= 4:
                self.phase, self.phase_steps = "clear", 0
        else:  # clear: back up out of the bowl
            goal, grip = above, -1.0
        return self._action(ctrl, goal, grip)


EXPERTS.register("place")(PickPlaceExpert)  # the same skill with the target alone
EXPERTS.register_lazy("push", "toyland.sim.push_expert")  # its own module: pushing shares no phase with grasping


def make_expert(env) -> Expert:
    return EXPERTS.get(env.unwrapped.task.name)(env)
