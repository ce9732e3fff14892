"""A 7-DoF arm with the Franka Emika Panda's kinematics, built from primitive geoms.

Link offsets, joint axes and limits follow Franka's published (modified DH) parameters:
d1 = 0.333, d3 = 0.316, a4 = 0.0825, a5 = -0.0825, d5 = 0.384, a7 = 0.088, flange 0.107.
"""

from __future__ import annotations

import mujoco
import numpy as np

from toyland.sim import geometry as geo
from toyland.sim.embodiments.base import Embodiment, register_embodiment
from toyland.sim.embodiments.gripper import add_finger_actuators, add_hand, robot_geom

S = np.sqrt(0.5)
# (body pos, body quat, joint range, capsule to the next joint origin or None, radius)
LINKS = [
    ((0, 0, 0.333), (1, 0, 0, 0), (-2.8973, 2.8973)),
    ((0, 0, 0), (S, -S, 0, 0), (-1.7628, 1.7628)),
    ((0, -0.316, 0), (S, S, 0, 0), (-2.8973, 2.8973)),
    ((0.0825, 0, 0), (S, S, 0, 0), (-3.0718, -0.0698)),
    ((-0.0825, 0.384, 0), (S, -S, 0, 0), (-2.8973, 2.8973)),
    ((0, 0, 0), (S, S, 0, 0), (-0.0175, 3.7525)),
    ((0.088, 0, 0), (S, S, 0, 0), (-2.8973, 2.8973)),
]
FLANGE = (0.0, 0.0, 0.107)
HAND_QUAT = (np.cos(-np.pi / 8), 0.0, 0.0, np.sin(-np.pi / 8))  # hand turned -45 deg about the flange
KP = (4500, 4500, 3500, 3500, 2000, 2000, 2000)
KV = (450, 450, 350, 350, 200, 200, 200)
TORQUE = (87, 87, 87, 87, 12, 12, 12)
HOME = (0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785)
WHITE = [0.95, 0.95, 0.95, 1]


def _capsule(body, a, b, radius, name):
    a, b = np.asarray(a, float), np.asarray(b, float)
    if np.linalg.norm(b - a) < 1e-6:
        robot_geom(body, name=name, type=geo.SPHERE, size=[radius, 0, 0], pos=list(a), rgba=WHITE)
    else:
        robot_geom(body, name=name, type=geo.CAPSULE, size=[radius, 0, 0], fromto=list(a) + list(b), rgba=WHITE)


def build_panda() -> mujoco.MjSpec:
    spec = mujoco.MjSpec()
    spec.compiler.degree = False  # every angle here is in radians
    base = spec.worldbody.add_body(name="base")
    robot_geom(base, name="base_plate", type=geo.CYLINDER, size=[0.09, 0.01, 0], pos=[0, 0, 0.01], rgba=[0.2, 0.2, 0.22, 1])
    _capsule(base, (0, 0, 0.06), (0, 0, 0.2), 0.065, "link0_col")
    parent = base
    # Capsules along each link, from its joint origin to the next joint origin.
    segments = {
        1: [((0, 0, -0.12), (0, 0, 0), 0.065)],
        2: [((0, 0, 0), (0, -0.2, 0), 0.06)],
        3: [((0, 0, -0.11), (0, 0, 0), 0.058), ((0, 0, 0), (0.0825, 0, 0), 0.055)],
        4: [((0, 0, 0), (-0.0825, 0, 0), 0.055), ((-0.0825, 0.0, 0), (-0.0825, 0.22, 0), 0.052)],
        5: [((0, 0, -0.16), (0, 0, -0.02), 0.048)],
        6: [((0, 0, 0), (0.088, 0, 0), 0.05)],
        7: [((0, 0, 0.0), (0, 0, 0.085), 0.045)],
    }
    for i, (pos, quat, jrange) in enumerate(LINKS, start=1):
        body = parent.add_body(name=f"link{i}", pos=list(pos), quat=list(quat), gravcomp=1.0)
        body.add_joint(name=f"joint{i}", axis=[0, 0, 1], range=list(jrange), armature=0.1, damping=1.0)
        for k, (a, b, r) in enumerate(segments[i]):
            _capsule(body, a, b, r, f"link{i}_col{k}")
        parent = body
    add_hand(parent, pos=FLANGE, quat=HAND_QUAT)
    for i in range(7):
        act = spec.add_actuator(name=f"joint{i + 1}", target=f"joint{i + 1}", trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=float(KP[i]), kv=float(KV[i]))
        act.ctrlrange = list(LINKS[i][2])
        act.forcerange = [-TORQUE[i], TORQUE[i]]
    add_finger_actuators(spec)
    return spec


PANDA = register_embodiment(
    Embodiment(
        name="panda",
        arm_joints=tuple(f"joint{i}" for i in range(1, 8)),
        home=HOME,
        mount_pos=(0.0, 0.0, 0.0),
        max_joint_velocity=(2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61),
        build_fn=build_panda,
    )
)
