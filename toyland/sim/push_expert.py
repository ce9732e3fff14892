"""The Push expert: closed gripper behind the toy, pushing its centre of mass towards the marker.

It hovers behind the toy on the line from the marker through the toy's centre of mass (far enough
to clear the toy's convex hull), descends until the fingertips are just above the table, and pushes
along that line. Each step it re-aims at the marker from the toy's centre and steers: most toys
slide off the line they are pushed along by an angle of their own (their shape, where the pad meets
them), so the angle between where the toy goes and the marker is integrated into a turn of the push
direction, and the tool is pulled onto the line through the centre along that turned direction.
Within a few cm of the marker the aim and the turn are held (the direction to the marker swings
with every mm of drift there, and a 3 cm disc forgives the rest). It slows down near the marker and
stops once the toy is over it with little left to go, then backs off. A toy that escapes the pusher
(the tool beside or ahead of it) or rolls out of the marker is approached again from behind;
``attempts`` counts the approaches.
"""

from __future__ import annotations

import numpy as np

from toyland.sim import geometry as geo
from toyland.sim.embodiments.gripper import FINGER_HALF, TIP_BELOW_TCP
from toyland.sim.experts import EXPERTS, Expert, _Shape, nearest_jaw_yaw
from toyland.sim.scene import TABLE_TOP_Z
from toyland.sim.tasks.push import SUCCESS_RADIUS


@EXPERTS.register("push")
class PushExpert(Expert):
    PHASES = ("approach", "descend", "push", "back_off")
    HOVER = 0.04  # fingertips above the toy's top while moving behind it
    TIP_Z, TIP_Z_MAX = 0.006, 0.03  # range of the fingertips' height above the table while pushing
    UNDER_CENTRE = 0.015  # fingertips this far below the toy's centre of mass while pushing
    LEAD = 0.01  # m the controller's target may run ahead of a tool the toy holds back: it presses, no harder
    CLEARANCE = 0.015  # between the toy's hull and the pad before the push starts
    FAST, SLOW = 0.2, 0.08  # push speed, fractions of the top speed: far from the marker, and at it
    SLOW_WITHIN = 0.05  # m from the marker where the push slows down
    STOP = 0.01  # the toy's centre this close to the marker's (a third of its radius): stop pushing
    COAST = 0.005  # ... or over the marker with this little left along the push (it slides a little further)
    FREEZE = 0.04  # m from the marker inside which the aim and the turn are held
    MOVING = 0.0005  # m per step: the toy moves under the push, its heading is worth steering by
    SMOOTHING = 0.5  # of the toy's velocity estimate, per step
    STEER_GAIN, MAX_STEER = 0.1, 1.0  # share of the heading error added to the push's turn per step; rad
    LATERAL_GAIN = 0.5  # share of the tool's offset from the push line corrected per step
    MAX_LATERAL = 0.004  # m per step of that correction: a sideways sweep would bat the toy away
    LOST_LATERAL = 0.05  # the tool this far off the line through the toy's centre: approach again
    MAX_ATTEMPTS = 4

    @property
    def target_index(self) -> int:
        """The object to push: the instructed one (a cue-following baseline overrides this)."""
        return self.env.task.target_index

    def reset(self) -> None:
        self.attempts = 0
        self._approach()

    def noise_scale(self) -> float:
        # while moving behind the toy, where an offset is corrected before contact; none while pushing
        return 1.0 if self.phase == "approach" else 0.0

    # -- geometry of the toy, from privileged state ----------------------------------------------
    def _toy(self) -> tuple[np.ndarray, list[_Shape]]:
        scene = self.env.scene
        centre = scene.data.xipos[scene.object_bodies[self.target_index]].copy()
        return centre, [_Shape.of(scene, g) for g in scene.object_geoms[self.target_index]]

    @staticmethod
    def _extent(centre: np.ndarray, shapes: list[_Shape], u: np.ndarray) -> float:
        """How far the toy's convex hull reaches from ``centre`` along the unit vector ``u``."""
        return max(float((s.centre - centre) @ u) + s.support(u) for s in shapes)

    def _direction(self, centre: np.ndarray) -> tuple[np.ndarray, float]:
        to_marker = self.env.task.marker_xy - centre[:2]
        distance = float(np.linalg.norm(to_marker))
        return to_marker / max(distance, 1e-9), distance

    def _approach(self) -> None:
        """Plans the start of a push: behind the toy, on the line from the marker through its centre."""
        centre, shapes = self._toy()
        u, _ = self._direction(centre)
        self.aim, self.steer, self.velocity = u, 0.0, None
        u3 = np.array([u[0], u[1], 0.0])
        back = self._extent(centre, shapes, -u3) + FINGER_HALF[0] + self.CLEARANCE
        top = centre[2] + self._extent(centre, shapes, geo.UP)
        # the pad's lower edge 1.5 cm under the centre of mass: an edge nearer it rides up a ball and presses
        # it into the table; low enough to meet a flat toy, high enough not to wedge under an overhanging
        # part and tip the toy up
        tip = float(np.clip(centre[2] - TABLE_TOP_Z - self.UNDER_CENTRE, self.TIP_Z, self.TIP_Z_MAX))
        self.push_z = TABLE_TOP_Z + TIP_BELOW_TCP + tip
        self.start = np.array([*(centre[:2] - back * u), self.push_z])
        self.hover_z = max(top + TIP_BELOW_TCP + self.HOVER, self.push_z + 0.05)
        # closed fingers side by side across the push direction: one 2.2 cm pad face towards the toy
        self.goal_rot = geo.top_down_mat(nearest_jaw_yaw(self.env.scene, np.arctan2(u[1], u[0]) + np.pi / 2))
        self.phase, self.phase_steps = "approach", 0
        self.attempts += 1

    def act(self, obs=None) -> np.ndarray:
        scene, ctrl = self.env.scene, self.env.controller
        tcp, _ = scene.tcp_pose()
        self.phase_steps += 1
        speed: float | np.ndarray = 1.0
        if self.phase == "approach":  # over the start point, clear of the toy
            goal = np.array([*self.start[:2], self.hover_z])
            rising = tcp[2] < self.hover_z - 0.02 and np.linalg.norm(tcp[:2] - self.start[:2]) > 0.02
            if rising:  # up first, so the tool never sweeps through the toy on its way behind it
                goal = np.array([*tcp[:2], self.hover_z])
            rot_err = np.linalg.norm(geo.rotvec_from_mat(self.goal_rot @ ctrl.target_rot.T))
            if (not rising and np.linalg.norm(tcp - goal) < 0.012 and rot_err < 0.05) or self.phase_steps > 60:
                self.phase, self.phase_steps = "descend", 0
        elif self.phase == "descend":
            goal = self.start
            if np.linalg.norm(tcp - goal) < 0.006 or self.phase_steps > 25:
                self.phase, self.phase_steps = "push", 0
        if self.phase == "push":
            goal, speed = self._push(ctrl, tcp)
        elif self.phase == "back_off":  # let go of the toy: straight back along the push, a little up
            goal = self.back_to
            centre, _ = self._toy()
            _, distance = self._direction(centre)
            if distance > SUCCESS_RADIUS and self.phase_steps > 3 and self.attempts < self.MAX_ATTEMPTS:
                self._approach()  # it rolled on past the marker: push it back
                goal = np.array([*tcp[:2], self.hover_z])
        return self._action(ctrl, goal, 1.0, speed)

    def _push(self, ctrl, tcp: np.ndarray) -> tuple[np.ndarray, float]:
        centre, _ = self._toy()
        to_marker = self.env.task.marker_xy - centre[:2]
        distance = float(np.linalg.norm(to_marker))
        if distance > self.FREEZE:  # near the marker the direction to it swings with every mm of drift
            self.aim = to_marker / distance
        if self.velocity is None:  # the push's first step
            self.last_centre, self.velocity = centre[:2].copy(), np.zeros(2)
        # the toy's motion per step, smoothed: a toy that rocks on its parts wobbles from step to step
        self.velocity += self.SMOOTHING * (centre[:2] - self.last_centre - self.velocity)
        moved, self.last_centre = self.velocity, centre[:2].copy()
        remaining = float(to_marker @ self.aim)  # still to go along the push
        if distance < self.STOP or (remaining < self.COAST and distance < SUCCESS_RADIUS):
            return self._back_off(tcp, self.aim), 1.0
        # steer: turn the push direction against the angle between where the toy goes and where it should
        if np.linalg.norm(moved) > self.MOVING and distance > self.FREEZE:
            heading_error = np.arctan2(_cross(moved, self.aim), moved @ self.aim)
            self.steer = float(np.clip(self.steer + self.STEER_GAIN * heading_error, -self.MAX_STEER, self.MAX_STEER))
        u = _rotate(self.aim, self.steer)
        offset = tcp[:2] - centre[:2]
        along = float(offset @ u)  # negative: the tool is behind the toy
        lateral = offset - along * u
        behind = float(offset @ self.aim)
        if behind > -0.005 or np.linalg.norm(offset - behind * self.aim) > self.LOST_LATERAL:
            if distance < SUCCESS_RADIUS:
                return self._back_off(tcp, self.aim), 1.0
            if self.attempts < self.MAX_ATTEMPTS:
                self._approach()  # the toy got away from the pad: come round behind it again
                return np.array([*tcp[:2], self.hover_z]), 1.0
        fraction = float(np.clip(distance / self.SLOW_WITHIN, 0.0, 1.0))
        step = ctrl.max_step * (self.SLOW + (self.FAST - self.SLOW) * fraction)
        # advance the controller's target, but never more than LEAD ahead of a tool the toy holds back
        ahead = float((ctrl.target_pos[:2] - tcp[:2]) @ u)
        correction = -self.LATERAL_GAIN * lateral
        correction *= min(1.0, self.MAX_LATERAL / max(float(np.linalg.norm(correction)), 1e-9))
        xy = ctrl.target_pos[:2] + (step if ahead < self.LEAD else 0.0) * u + correction
        return np.array([*xy, self.push_z]), 1.0

    def _back_off(self, tcp: np.ndarray, u: np.ndarray) -> np.ndarray:
        self.phase, self.phase_steps = "back_off", 0
        self.back_to = np.array([*(tcp[:2] - 0.04 * u), self.push_z + 0.03])
        return self.back_to

    def _action(self, ctrl, goal: np.ndarray, grip: float, speed: float | np.ndarray = 1.0) -> np.ndarray:
        move = np.clip((goal - ctrl.target_pos) / ctrl.max_step, -speed, speed)
        turn = np.clip(geo.rotvec_from_mat(self.goal_rot @ ctrl.target_rot.T) / ctrl.max_rot, -1.0, 1.0)
        return ctrl.from_ee_delta(np.concatenate([move, turn, [grip]]))


def _cross(a: np.ndarray, b: np.ndarray) -> float:
    return float(a[0] * b[1] - a[1] * b[0])


def _rotate(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])
