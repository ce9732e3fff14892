"""Small rigid-body geometry helpers shared by the toy generator, cameras and experts.

Support functions h(u) = max_{x in shape} <x, u> give widths and extents of primitives
without meshing them; signed distances let the expert check finger clearance.
"""

from __future__ import annotations

import mujoco
import numpy as np

UP = np.array([0.0, 0.0, 1.0])


def quat_to_mat(quat: np.ndarray) -> np.ndarray:
    mat = np.empty(9)
    mujoco.mju_quat2Mat(mat, np.asarray(quat, dtype=float))
    return mat.reshape(3, 3)


def mat_to_quat(mat: np.ndarray) -> np.ndarray:
    quat = np.empty(4)
    mujoco.mju_mat2Quat(quat, np.asarray(mat, dtype=float).reshape(9))
    return quat


def axis_angle_quat(axis, angle: float) -> np.ndarray:
    quat = np.empty(4)
    mujoco.mju_axisAngle2Quat(quat, np.asarray(axis, dtype=float), float(angle))
    return quat


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """Uniform random unit quaternion (w, x, y, z)."""
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def rotvec_from_mat(mat: np.ndarray) -> np.ndarray:
    """Rotation vector (axis * angle) of a rotation matrix."""
    quat = mat_to_quat(mat)
    vel = np.empty(3)
    mujoco.mju_quat2Vel(vel, quat, 1.0)
    return vel


def mat_from_rotvec(rotvec: np.ndarray) -> np.ndarray:
    rotvec = np.asarray(rotvec, dtype=float)
    angle = float(np.linalg.norm(rotvec))
    if angle < 1e-12:
        return np.eye(3)
    return quat_to_mat(axis_angle_quat(rotvec / angle, angle))


def look_at_quat(pos, target, up=UP) -> np.ndarray:
    """Quaternion of a MuJoCo camera at ``pos`` looking at ``target`` (camera looks along -z, y up)."""
    forward = np.asarray(target, float) - np.asarray(pos, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:  # looking straight along `up`: any right vector works
        right = np.cross(forward, [1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    cam_z = -forward
    cam_y = np.cross(cam_z, right)
    return mat_to_quat(np.column_stack([right, cam_y, cam_z]))


def top_down_mat(yaw: float) -> np.ndarray:
    """Gripper frame pointing down (z = -world z) whose fingers close along (cos yaw, sin yaw, 0)."""
    y = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    z = np.array([0.0, 0.0, -1.0])
    return np.column_stack([np.cross(y, z), y, z])


# --- primitives in MuJoCo's conventions: sizes are radii and half-lengths -------------------

SPHERE, CAPSULE, CYLINDER, BOX = (
    mujoco.mjtGeom.mjGEOM_SPHERE,
    mujoco.mjtGeom.mjGEOM_CAPSULE,
    mujoco.mjtGeom.mjGEOM_CYLINDER,
    mujoco.mjtGeom.mjGEOM_BOX,
)
MESH = mujoco.mjtGeom.mjGEOM_MESH


def support(gtype: int, size: np.ndarray, rot: np.ndarray, u: np.ndarray) -> float:
    """max <x - centre, u> over a primitive geom with world rotation ``rot``."""
    local = rot.T @ u
    if gtype == SPHERE:
        return float(size[0])
    if gtype == BOX:
        return float(np.abs(local) @ size[:3])
    axial = abs(local[2])
    if gtype == CAPSULE:
        return float(size[1] * axial + size[0])
    if gtype == CYLINDER:
        radial = np.sqrt(max(0.0, 1.0 - axial * axial))
        return float(size[1] * axial + size[0] * radial)
    raise ValueError(f"support() has no formula for geom type {gtype}")


def signed_distance(gtype: int, size: np.ndarray, pos: np.ndarray, rot: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Signed distance from world ``points`` (N, 3) to a primitive geom (negative inside)."""
    q = (np.asarray(points) - pos) @ rot
    if gtype == SPHERE:
        return np.linalg.norm(q, axis=1) - size[0]
    if gtype == CAPSULE:
        q = q.copy()
        q[:, 2] -= np.clip(q[:, 2], -size[1], size[1])
        return np.linalg.norm(q, axis=1) - size[0]
    if gtype == BOX:
        d = np.abs(q) - size[:3]
    elif gtype == CYLINDER:
        d = np.stack([np.linalg.norm(q[:, :2], axis=1) - size[0], np.abs(q[:, 2]) - size[1]], axis=1)
    else:
        raise ValueError(f"signed_distance() has no formula for geom type {gtype}")
    outside = np.linalg.norm(np.maximum(d, 0.0), axis=1)
    inside = np.minimum(d.max(axis=1), 0.0)
    return outside + inside
