"""The Panda's gripper on an actuated free-floating 6-DoF base (x, y, z, yaw, pitch, roll).

Same hand, fingers, tcp and wrist camera as the arm, so demonstrations from both embodiments share
an end-effector action space: a second embodiment for cross-embodiment co-training.
"""

from __future__ import annotations

import mujoco

from toyland.sim.embodiments.base import Embodiment, register_embodiment
from toyland.sim.embodiments.gripper import add_finger_actuators, add_hand

# (name, type, axis, range, kp, kv)
AXES = [
    ("x", mujoco.mjtJoint.mjJNT_SLIDE, (1, 0, 0), (-0.4, 0.4), 4000.0, 400.0),
    ("y", mujoco.mjtJoint.mjJNT_SLIDE, (0, 1, 0), (-0.4, 0.4), 4000.0, 400.0),
    ("z", mujoco.mjtJoint.mjJNT_SLIDE, (0, 0, 1), (-0.45, 0.3), 4000.0, 400.0),
    ("yaw", mujoco.mjtJoint.mjJNT_HINGE, (0, 0, 1), (-3.1, 3.1), 300.0, 30.0),
    ("pitch", mujoco.mjtJoint.mjJNT_HINGE, (0, 1, 0), (-1.4, 1.4), 300.0, 30.0),
    ("roll", mujoco.mjtJoint.mjJNT_HINGE, (1, 0, 0), (-1.4, 1.4), 300.0, 30.0),
]
MOUNT = (0.5, 0.0, 0.45)


def build_floating_gripper() -> mujoco.MjSpec:
    spec = mujoco.MjSpec()
    spec.compiler.degree = False  # every angle here is in radians
    parent = spec.worldbody.add_body(name="base")
    for name, jtype, axis, jrange, _, _ in AXES:
        body = parent.add_body(name=f"{name}_link", gravcomp=1.0)
        body.mass = 0.5
        body.inertia = [0.002, 0.002, 0.002]
        body.explicitinertial = True
        body.add_joint(name=name, type=jtype, axis=list(axis), range=list(jrange), armature=0.05, damping=2.0)
        parent = body
    # Hand pointing down at zero configuration: rotate 180 degrees about x.
    add_hand(parent, quat=(0.0, 1.0, 0.0, 0.0))
    for name, _, _, jrange, kp, kv in AXES:
        act = spec.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=kp, kv=kv)
        act.ctrlrange = list(jrange)
        act.forcerange = [-200.0, 200.0] if name in "xyz" else [-30.0, 30.0]
    add_finger_actuators(spec)
    return spec


FLOATING_GRIPPER = register_embodiment(
    Embodiment(
        name="floating_gripper",
        arm_joints=tuple(a[0] for a in AXES),
        home=(0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        mount_pos=MOUNT,
        max_joint_velocity=(1.0, 1.0, 1.0, 3.0, 3.0, 3.0),
        build_fn=build_floating_gripper,
    )
)
