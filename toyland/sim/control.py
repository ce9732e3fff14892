"""Action modes. Actions are normalized to [-1, 1] (but ``lerobot_joint``'s); the last entry is always
the gripper (-1 open, +1 closed).

``ee_delta``: end-effector delta pose (dx, dy, dz, droll, dpitch, dyaw in the world frame, scaled
by the maximal linear and angular speed times the control period) tracked through differential
IK with joint position and velocity limits (mink, on the embodiment's own compiled model).
``ee_pose`` (the default): absolute end-effector pose (x, y, z mapped from the workspace box onto [-1, 1]; the
rotation vector from the embodiment's home tool orientation, divided by pi), approached at no more
than ``ee_delta``'s top speed. Position control: a chunk of poses means the same wherever the
controller's command currently leads the tool, which a delta chunk does not (the command leads the
tool by up to 3 cm at top speed, and nothing in one observation shows by how much).
``joint_position``: absolute arm joint targets, [-1, 1] mapped onto each joint's range.
``lerobot_joint``: absolute joint targets in lerobot's units (degrees; the gripper 0 closed .. 100
open), not normalized: the action space's bounds are the joints' ranges. Its state is in the same
units, so the data reads as a lerobot arm's.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import mink
import mujoco
import numpy as np

from toyland.registry import Registry
from toyland.sim import geometry as geo
from toyland.sim.embodiments import Embodiment
from toyland.sim.embodiments.gripper import FINGER_TRAVEL, finger_target
from toyland.sim.scene import Scene

try:  # mink's compiled Lie-group operations (its wheels since 1.1); mink's tasks use the same
    from mink.lie import _lie_ops_c as _lie
except ImportError:  # older mink: its tasks' pure-Python operations, which ToolObjective then mirrors
    _lie = None

CONTROLLERS: Registry[type] = Registry("control mode")


@dataclass(frozen=True)
class ControlConfig:
    mode: str = "ee_pose"
    rate_hz: float = 20.0
    max_linear_speed: float = 0.4  # m/s at action 1
    max_angular_speed: float = 2.0  # rad/s at action 1
    max_lead: float = 0.05  # the commanded pose stays within this distance of the real tool
    workspace_low: tuple[float, float, float] = (0.15, -0.5, 0.0)
    workspace_high: tuple[float, float, float] = (0.9, 0.5, 0.65)

    def __post_init__(self):
        if self.mode not in CONTROLLERS:
            raise ValueError(f"unknown control mode '{self.mode}'; valid modes: {', '.join(CONTROLLERS.names())}")
        if not 1.0 <= self.rate_hz <= 500.0:
            raise ValueError(f"control field 'rate_hz' = {self.rate_hz}; allowed range [1, 500]")


def validate_action(action, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    a = np.asarray(action, dtype=np.float64)
    if a.shape != low.shape:
        raise ValueError(f"action must have shape {low.shape}, got {a.shape}")
    slack = 1e-6 * np.maximum(1.0, np.abs(high - low))
    if not np.isfinite(a).all():
        raise ValueError(f"action contains NaN or inf: {a}")
    if not ((a >= low - slack) & (a <= high + slack)).all():
        outside = [i for i in range(a.size) if not low[i] - slack[i] <= a[i] <= high[i] + slack[i]]
        raise ValueError(f"action entries {outside} lie outside the action space [{low[outside]}, {high[outside]}]: {a}")
    return a


class BoxIK:
    """mink's differential-IK step (its tasks' objective, its configuration and velocity limits)
    solved with MuJoCo's box QP. On an arm of hinge and slide joints both limits bound each joint's
    step on its own, so the constraints are a box, and ``mju_boxQP`` solves the problem in C where
    ``mink.solve_ik`` stacks constraint matrices and goes through qpsolvers' general QP: the same
    step to 1e-13, in 80 us against 240-290 us (docs/performance.md)."""

    def __init__(self, model: mujoco.MjModel, position: mink.ConfigurationLimit, velocity: mink.VelocityLimit, dt: float):
        if model.nq != model.nv or np.any((model.jnt_type != mujoco.mjtJoint.mjJNT_HINGE) & (model.jnt_type != mujoco.mjtJoint.mjJNT_SLIDE)):
            raise ValueError("BoxIK needs an arm of hinge and slide joints only (a joint's position and velocity share an index)")
        nv, self.dt = model.nv, dt
        self.step_low, self.step_high = np.full(nv, -np.inf), np.full(nv, np.inf)
        self.step_high[velocity.indices] = velocity.limit * dt
        self.step_low[velocity.indices] = -velocity.limit * dt
        limited = np.asarray(position.indices, dtype=int)
        self.q_low, self.q_high, self.gain = position.lower[limited], position.upper[limited], position.gain
        # a run of joints (every joint of toyland's arms) as a slice: views, not fancy-indexed copies
        contiguous = limited.size and np.array_equal(limited, np.arange(limited[0], limited[0] + limited.size))
        self.limited = slice(int(limited[0]), int(limited[0]) + limited.size) if contiguous else limited
        self._res, self._work, self._index = np.zeros(nv), np.zeros(nv * (nv + 7)), np.zeros(nv, dtype=np.int32)

    def step(self, configuration: mink.Configuration, H: np.ndarray, c: np.ndarray) -> np.ndarray:
        """The joint velocity that minimizes ``0.5 v'Hv + c'v`` (the objective in joint steps) within
        the limits."""
        q = configuration.q[self.limited]
        low, high = self.step_low.copy(), self.step_high.copy()
        low[self.limited] = np.maximum(low[self.limited], self.gain * (self.q_low - q))
        high[self.limited] = np.minimum(high[self.limited], self.gain * (self.q_high - q))
        self._res[:] = 0.0
        if mujoco.mju_boxQP(self._res, self._work, self._index, H, c, low, high) < 0:
            raise RuntimeError("the differential IK's box QP has no solution (its Hessian is not positive definite)")
        return self._res / self.dt


class ToolObjective:
    """The QP objective of the controller's IK, a ``mink.FrameTask`` on a site plus a
    ``mink.PostureTask`` plus damping, in one pass: mink's formulas, operations and order, so (H, c)
    equal the sum of the tasks' ``compute_qp_objective`` bit for bit (tested), without an objective
    object per task, the posture's identity Jacobian multiplied out, or fresh buffers. Inside an
    episode rendering evicts the caches between control steps and every small array operation costs
    microseconds, so their number is the IK's cost (docs/performance.md)."""

    def __init__(self, model: mujoco.MjModel, frame: mink.FrameTask, posture: mink.PostureTask, damping: float):
        if frame.frame_type != "site":
            raise ValueError(f"ToolObjective needs a site frame, got a {frame.frame_type}")
        if np.any(model.jnt_type == mujoco.mjtJoint.mjJNT_FREE):  # mink's posture zeroes free joints' columns
            raise ValueError("ToolObjective needs a model without free joints (the posture task's Jacobian is then the identity)")
        self.model, self.frame, self.posture, self.damping = model, frame, posture, damping
        self.site = model.site(frame.frame_name).id
        self._jac, self._qvel = np.empty((6, model.nv)), np.empty(model.nv)
        self._diagonal = np.arange(model.nv) * (model.nv + 1)  # flat indices of H's diagonal

    def __call__(self, configuration: mink.Configuration) -> tuple[np.ndarray, np.ndarray]:
        m, d, frame, posture = self.model, configuration.data, self.frame, self.posture
        xmat = d.site_xmat[self.site]
        target = frame.transform_target_to_world.wxyz_xyz
        mujoco.mj_jacSite(m, d, self._jac[:3], self._jac[3:], self.site)
        if _lie is not None:
            pose = _lie.xmat_xpos_to_wxyz_xyz(xmat, d.site_xpos[self.site])
            error = _lie.se3_rminus(target, pose)
            jacobian = -_lie.se3_jlog(_lie.se3_inverse_multiply(target, pose)) @ (_lie.se3_rotation_adjoint_from_xmat(xmat) @ self._jac)
        else:
            R = mink.SO3.from_matrix(xmat.reshape(3, 3))
            pose = mink.SE3.from_rotation_and_translation(R, d.site_xpos[self.site])
            goal = mink.SE3(wxyz_xyz=target)
            error = goal.minus(pose)
            jacobian = -(goal.inverse() @ pose).jlog() @ (mink.SE3.from_rotation(R.inverse()).adjoint() @ self._jac)
        # the frame task: FrameTask._weighted_residual and _assemble_qp
        weighted_error = frame.cost * (-frame.gain * error)
        weighted_jacobian = frame.cost[:, None] * jacobian
        mu = frame.lm_damping * float(weighted_error @ weighted_error)
        H = weighted_jacobian.T @ weighted_jacobian
        c = -weighted_error @ weighted_jacobian
        # the posture task: its Jacobian is the identity, so its H is diagonal and its c elementwise
        mujoco.mj_differentiatePos(m, self._qvel, 1.0, posture.target_q, configuration.q)
        posture_error = posture.cost * (-posture.gain * self._qvel)
        mu_posture = posture.lm_damping * float(posture_error @ posture_error) if posture.lm_damping else 0.0
        # summed as mink's solve_ik sums them: damping, then the frame's, then the posture's
        H.flat[self._diagonal] = (self.damping + (H.flat[self._diagonal] + mu)) + (posture.cost * posture.cost + mu_posture)
        c -= posture_error * posture.cost
        return H, c


class Controller(ABC):
    """Turns a normalized action into actuator targets on ``scene.data.ctrl``."""

    def __init__(self, embodiment: Embodiment, cfg: ControlConfig):
        self.embodiment, self.cfg = embodiment, cfg
        self.dt = 1.0 / cfg.rate_hz
        self.robot_model = embodiment.build().compile()  # the robot alone, base at the origin
        joints = [self.robot_model.joint(n).id for n in embodiment.arm_joints]
        self.joint_low = self.robot_model.jnt_range[joints, 0].copy()
        self.joint_high = self.robot_model.jnt_range[joints, 1].copy()
        self.scene: Scene | None = None

    @property
    @abstractmethod
    def action_dim(self) -> int: ...

    @property
    @abstractmethod
    def action_names(self) -> list[str]: ...

    @property
    def action_low(self) -> np.ndarray:
        return -np.ones(self.action_dim)

    @property
    def action_high(self) -> np.ndarray:
        return np.ones(self.action_dim)

    @property
    def state_names(self) -> list[str]:
        """The entries of ``observation.state``: arm joints (rad), the finger opening (m), the tool's
        position (m) and orientation quaternion."""
        return ([f"{j}.pos" for j in self.embodiment.arm_joints] + ["gripper.opening"]
                + [f"tcp.{a}" for a in "xyz"] + [f"tcp.q{a}" for a in "wxyz"])

    def state(self, scene: Scene) -> np.ndarray:
        d = scene.data
        tcp_quat = np.empty(4)
        mujoco.mju_mat2Quat(tcp_quat, d.site_xmat[scene.tcp_site])
        return np.concatenate([d.qpos[scene.arm_qpos], [scene.finger_opening()], d.site_xpos[scene.tcp_site], tcp_quat])

    end_effector = False  # whether actions move the tool, so scripted experts can act in this mode

    def from_ee_delta(self, action: np.ndarray) -> np.ndarray:
        """This mode's action that does what the ``ee_delta`` ``action`` would do now (scripted
        experts plan in end-effector deltas)."""
        raise NotImplementedError(f"control mode '{self.cfg.mode}' has no end-effector actions")

    def reset(self, scene: Scene, qpos_arm: np.ndarray) -> None:
        """Binds a freshly built scene and holds the arm at ``qpos_arm`` with the gripper open."""
        self.scene = scene
        scene.data.ctrl[scene.arm_ctrl] = qpos_arm
        self._set_gripper(-1.0)

    @abstractmethod
    def apply(self, action: np.ndarray) -> None:
        """Writes actuator targets for one control step."""

    def _set_gripper(self, command: float) -> None:
        self.scene.data.ctrl[self.scene.finger_ctrl] = finger_target(command)


@CONTROLLERS.register("joint_position")
class JointPositionController(Controller):
    @property
    def action_dim(self) -> int:
        return len(self.embodiment.arm_joints) + 1

    @property
    def action_names(self) -> list[str]:
        return [f"{j}.target" for j in self.embodiment.arm_joints] + ["gripper"]

    def apply(self, action: np.ndarray) -> None:
        q = self.joint_low + (action[:-1] + 1.0) * 0.5 * (self.joint_high - self.joint_low)
        self.scene.data.ctrl[self.scene.arm_ctrl] = q
        self._set_gripper(action[-1])

    def normalize(self, qpos_arm: np.ndarray) -> np.ndarray:
        """Inverse of the joint mapping: joint positions -> normalized action entries."""
        return 2.0 * (qpos_arm - self.joint_low) / (self.joint_high - self.joint_low) - 1.0


@CONTROLLERS.register("ee_delta")
class EndEffectorDeltaController(Controller):
    end_effector = True

    def __init__(self, embodiment: Embodiment, cfg: ControlConfig):
        super().__init__(embodiment, cfg)
        emb = embodiment
        self.ik_model = self.robot_model
        self.mount = np.asarray(emb.mount_pos, dtype=float)
        self.ik_qpos = np.array([self.ik_model.joint(n).qposadr[0] for n in emb.arm_joints])
        self.configuration = mink.Configuration(self.ik_model)
        self.task = mink.FrameTask("tcp", "site", position_cost=1.0, orientation_cost=emb.orientation_cost, lm_damping=1e-3)
        self.posture = mink.PostureTask(self.ik_model, cost=1e-3)
        velocity = dict(zip(emb.arm_joints, emb.max_joint_velocity))
        self.limits = [mink.ConfigurationLimit(self.ik_model), mink.VelocityLimit(self.ik_model, velocity)]
        self._box = BoxIK(self.ik_model, *self.limits, self.dt)
        self._objective = ToolObjective(self.ik_model, self.task, self.posture, damping=1e-3)
        self.max_step = cfg.max_linear_speed * self.dt
        self.max_rot = cfg.max_angular_speed * self.dt
        self.low, self.high = np.asarray(cfg.workspace_low), np.asarray(cfg.workspace_high)
        self.target_pos = np.zeros(3)
        self.target_quat = np.array([1.0, 0.0, 0.0, 0.0])  # the commanded tool orientation
        # scratch quaternions for the per-step orientation arithmetic (MuJoCo's, in place)
        self._q_turn, self._q_goal, self._q_conj = np.empty(4), np.empty(4), np.empty(4)

    @property
    def target_rot(self) -> np.ndarray:
        """The commanded tool orientation as a rotation matrix."""
        return geo.quat_to_mat(self.target_quat)

    @property
    def action_dim(self) -> int:
        return 7

    @property
    def action_names(self) -> list[str]:
        return ["dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"]

    def from_ee_delta(self, action: np.ndarray) -> np.ndarray:
        return np.asarray(action, dtype=np.float32)

    def reset(self, scene: Scene, qpos_arm: np.ndarray) -> None:
        super().reset(scene, qpos_arm)
        self._command_from(qpos_arm)
        self.posture.set_target(self.configuration.q)

    def _command_from(self, qpos_arm: np.ndarray) -> None:
        """The IK at these arm joints, and the commanded tool pose where they put the tool."""
        q = self.ik_model.qpos0.copy()
        q[self.ik_qpos] = qpos_arm
        self.configuration.update(q)
        pose = self.configuration.get_transform_frame_to_world("tcp", "site")
        self.target_pos = pose.translation() + self.mount
        self.target_quat = pose.rotation().wxyz.copy()
        self.task.set_target(pose)

    def apply(self, action: np.ndarray) -> None:
        self._track(action)

    def _track(self, action: np.ndarray) -> None:
        """Moves the command by a normalized delta (clipped to the workspace and to ``max_lead``
        ahead of the tool) and drives the arm there through differential IK."""
        self.scene.data.ctrl[self.scene.arm_ctrl] = self._solve(action)
        self._set_gripper(action[-1])

    def _turn(self, out: np.ndarray, rotvec: np.ndarray, quat: np.ndarray) -> None:
        """``out`` = the orientation ``quat`` turned by ``rotvec`` (world axes, rad)."""
        self._q_turn[:] = (1.0, 0.0, 0.0, 0.0)
        mujoco.mju_quatIntegrate(self._q_turn, rotvec, 1.0)
        mujoco.mju_mulQuat(out, self._q_turn, quat)
        mujoco.mju_normalize4(out)  # products of many turns drift off the unit sphere

    def _solve(self, action: np.ndarray) -> np.ndarray:
        """The command moved by a normalized delta and one differential-IK step towards it: the arm's
        joint targets."""
        # (plain ufuncs, MuJoCo's quaternion functions on preallocated buffers, the target written into
        # the task's pose: np.clip, norm, rotation matrices and fresh SE3 objects cost more than the
        # arithmetic on vectors this small, and this runs every control step)
        tcp_pos = self.scene.data.site_xpos[self.scene.tcp_site]
        target = np.minimum(np.maximum(self.target_pos + action[:3] * self.max_step, self.low), self.high)
        lead = target - tcp_pos
        dist = math.sqrt(lead @ lead)
        if dist > self.cfg.max_lead:  # the arm is blocked or lagging: do not wind up
            target = tcp_pos + lead * (self.cfg.max_lead / dist)
        self.target_pos = target
        self._turn(self.target_quat, action[3:6] * self.max_rot, self.target_quat)
        goal = self.task.transform_target_to_world.wxyz_xyz  # the task's own copy, set at reset
        goal[:4] = self.target_quat
        goal[4:] = target - self.mount
        velocity = self._box.step(self.configuration, *self._objective(self.configuration))
        self.configuration.integrate_inplace(velocity, self.dt)
        return self.configuration.q[self.ik_qpos].copy()


@CONTROLLERS.register("ee_pose")
class EndEffectorPoseController(EndEffectorDeltaController):
    def __init__(self, embodiment: Embodiment, cfg: ControlConfig):
        super().__init__(embodiment, cfg)
        home = self.ik_model.qpos0.copy()
        home[self.ik_qpos] = embodiment.home_qpos()
        self.configuration.update(home)
        # a fixed reference (the home tool orientation), so an action means the same pose every episode
        reference = self.configuration.get_transform_frame_to_world("tcp", "site").rotation()
        self.reference_rot, self.reference_quat = reference.as_matrix(), reference.wxyz.copy()
        self._half_span = 0.5 * (self.high - self.low)
        self._step = np.empty(7)

    @property
    def action_names(self) -> list[str]:
        return ["x", "y", "z", "rx", "ry", "rz", "gripper"]

    def encode(self, pos: np.ndarray, rot: np.ndarray, grip: float) -> np.ndarray:
        """A tool pose -> this mode's normalized action."""
        p = 2.0 * (np.asarray(pos) - self.low) / (self.high - self.low) - 1.0
        r = geo.rotvec_from_mat(rot @ self.reference_rot.T) / np.pi
        return np.concatenate([p, r, [grip]]).astype(np.float32)

    def _position(self, action: np.ndarray) -> np.ndarray:
        """The tool position an action names (the workspace box mapped onto [-1, 1])."""
        return self.low + (np.asarray(action[:3], dtype=float) + 1.0) * self._half_span

    def decode(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._position(action), geo.mat_from_rotvec(np.asarray(action[3:6], dtype=float) * np.pi) @ self.reference_rot

    def from_ee_delta(self, action: np.ndarray) -> np.ndarray:
        pos = np.clip(self.target_pos + action[:3] * self.max_step, self.low, self.high)
        rot = geo.mat_from_rotvec(action[3:6] * self.max_rot) @ self.target_rot
        return self.encode(pos, rot, float(action[-1]))

    def apply(self, action: np.ndarray) -> None:
        # the commanded pose, approached at no more than the delta mode's top speed per axis
        # (decode's arithmetic, in quaternions on preallocated buffers: see _solve)
        step = self._step
        step[:3] = (self._position(action) - self.target_pos) / self.max_step
        self._turn(self._q_goal, action[3:6] * np.pi, self.reference_quat)
        mujoco.mju_negQuat(self._q_conj, self.target_quat)
        mujoco.mju_mulQuat(self._q_goal, self._q_goal, self._q_conj)
        mujoco.mju_quat2Vel(step[3:6], self._q_goal, self.max_rot)
        np.minimum(np.maximum(step, -1.0, out=step), 1.0, out=step)
        step[6] = action[-1]
        self._track(step)


@CONTROLLERS.register("lerobot_joint")
class LeRobotJointController(EndEffectorDeltaController):
    """lerobot's joint units, as its arms' drivers read and write them (``use_degrees=True``): each arm
    joint's absolute target in degrees from the joint's zero, ``<joint>.pos``, and ``gripper.pos``
    from 0 (closed) to 100 (open); ``observation.state`` holds the same quantities, measured. A
    policy trained on such data drives a real arm of the embodiment's kinematics through
    ``lerobot-rollout`` as it is. Scripted experts plan through the ``ee_delta`` IK and record its
    joint targets."""

    def __init__(self, embodiment: Embodiment, cfg: ControlConfig):
        super().__init__(embodiment, cfg)
        self._planned: np.ndarray | None = None  # the action from_ee_delta made last, until applied

    @property
    def action_dim(self) -> int:
        return len(self.embodiment.arm_joints) + 1

    @property
    def action_names(self) -> list[str]:
        return [f"{j}.pos" for j in self.embodiment.arm_joints] + ["gripper.pos"]

    @property
    def action_low(self) -> np.ndarray:
        return np.concatenate([np.degrees(self.joint_low), [0.0]])

    @property
    def action_high(self) -> np.ndarray:
        return np.concatenate([np.degrees(self.joint_high), [100.0]])

    @property
    def state_names(self) -> list[str]:
        return self.action_names

    def state(self, scene: Scene) -> np.ndarray:
        opening = scene.finger_opening() / (2 * FINGER_TRAVEL)
        return np.concatenate([np.degrees(scene.data.qpos[scene.arm_qpos]), [100.0 * opening]])

    @staticmethod
    def encode(q: np.ndarray, grip: float) -> np.ndarray:
        """Joint targets (rad) and toyland's gripper command (-1 open .. +1 closed) -> this mode's action."""
        return np.concatenate([np.degrees(q), [50.0 * (1.0 - grip)]]).astype(np.float32)

    def from_ee_delta(self, action: np.ndarray) -> np.ndarray:
        self._planned = self.encode(self._solve(action), float(action[-1]))
        return self._planned.copy()

    def apply(self, action: np.ndarray) -> None:
        q = np.radians(np.asarray(action[:-1], dtype=float))
        self.scene.data.ctrl[self.scene.arm_ctrl] = q
        self._set_gripper(1.0 - float(action[-1]) / 50.0)
        if self._planned is None or not np.allclose(action, self._planned, atol=1e-4):
            self._command_from(q)  # not the planned action (a policy's, or a noisy one): the IK starts from it
        self._planned = None


def make_controller(embodiment: Embodiment, cfg: ControlConfig) -> Controller:
    return CONTROLLERS.get(cfg.mode)(embodiment, cfg)
