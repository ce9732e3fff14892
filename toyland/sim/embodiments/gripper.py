"""The parallel-jaw gripper shared by every embodiment (proportions of the Franka Hand).

Frame convention: the hand's +z points from the flange towards the fingertips, the fingers slide
along the hand's y axis, and the tool-centre-point site ``tcp`` sits between the finger pads.
"""

from __future__ import annotations

import mujoco
import numpy as np

from toyland.sim import geometry as geo

FINGER_TRAVEL = 0.04  # each finger slides 0..4 cm: 8 cm opening
FINGER_BODY_Z = 0.0584  # finger bodies below the hand frame (Franka Hand)
FINGER_HALF = (0.011, 0.006, 0.026)  # pad half sizes: across, thickness, length
TCP_Z = FINGER_BODY_Z + 0.034
TIP_BELOW_TCP = FINGER_BODY_Z + 2 * FINGER_HALF[2] - TCP_Z
CLOSED_TARGET = -0.01  # commanding past the stop keeps a squeeze on thin objects
FINGER_JOINTS = ("finger_left", "finger_right")

# Collision bits: robot geoms never collide with each other, only with the world and objects.
ROBOT_CONTYPE, ROBOT_CONAFFINITY = 2, 1


def robot_geom(body: mujoco.MjsBody, **kwargs) -> mujoco.MjsGeom:
    kwargs.setdefault("contype", ROBOT_CONTYPE)
    kwargs.setdefault("conaffinity", ROBOT_CONAFFINITY)
    return body.add_geom(**kwargs)


def add_hand(parent: mujoco.MjsBody, pos=(0, 0, 0), quat=(1, 0, 0, 0)) -> mujoco.MjsBody:
    hand = parent.add_body(name="hand", pos=list(pos), quat=list(quat), gravcomp=1.0)
    dark, light = [0.15, 0.15, 0.17, 1], [0.92, 0.92, 0.92, 1]
    robot_geom(hand, name="hand_palm", type=geo.BOX, size=[0.022, 0.09, 0.026], pos=[0, 0, 0.03], rgba=light, density=600)
    robot_geom(hand, name="hand_mount", type=geo.CYLINDER, size=[0.04, 0.006, 0], pos=[0, 0, 0.0], rgba=dark, density=600)
    for name, sign in zip(FINGER_JOINTS, (1.0, -1.0)):
        finger = hand.add_body(name=name, pos=[0, 0, FINGER_BODY_Z], gravcomp=1.0)
        finger.add_joint(
            name=name,
            type=mujoco.mjtJoint.mjJNT_SLIDE,
            axis=[0, sign, 0],
            range=[0, FINGER_TRAVEL],
            damping=2.0,
            armature=0.01,
        )
        robot_geom(
            finger,
            name=f"{name}_pad",
            type=geo.BOX,
            size=list(FINGER_HALF),
            pos=[0, sign * FINGER_HALF[1], FINGER_HALF[2]],
            rgba=dark,
            friction=[1.5, 0.01, 0.001],
            condim=4,
            # Stiffer than the default 0.02 s: MuJoCo scales contact stiffness by mass, and a 15 g toy
            # squeezed at 10 N let the pads sink 6 mm into it and wedge it out of the jaw while lifting.
            solref=[0.004, 1.0],
            density=1500,
        )
    hand.add_site(name="tcp", pos=[0, 0, TCP_Z], size=[0.005, 0, 0], rgba=[1, 0, 0, 0.0], group=3)
    cam_pos = np.array([0.075, 0.0, 0.0])
    cam_quat = geo.look_at_quat(cam_pos, np.array([0.0, 0.0, TCP_Z + 0.06]), up=np.array([-1.0, 0.0, 0.0]))
    hand.add_camera(name="wrist", pos=list(cam_pos), quat=list(cam_quat), fovy=75.0)
    return hand


def add_finger_actuators(spec: mujoco.MjSpec) -> None:
    for name in FINGER_JOINTS:
        act = spec.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=400.0, kv=20.0)
        act.ctrlrange = [CLOSED_TARGET, FINGER_TRAVEL]
        act.forcerange = [-40.0, 40.0]


def finger_target(command: float) -> float:
    """Map the normalized gripper command (-1 open .. +1 closed) to a finger position target."""
    return FINGER_TRAVEL + (command + 1.0) * 0.5 * (CLOSED_TARGET - FINGER_TRAVEL)
