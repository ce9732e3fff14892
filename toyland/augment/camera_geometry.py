"""Pinhole geometry of E0's viewpoint warp, batched in torch.

Conventions. Camera frame: OpenCV's (x right, y down, z forward; MuJoCo's camera looks along -z
with y up, so OpenCV = diag(1, -1, -1) MuJoCo). Intrinsics ``K`` map camera-frame points to pixel
coordinates whose integer values are pixel centres (``K[0, 2] = (W - 1) / 2`` for a centred
principal point), the convention grid_sample's ``align_corners=True`` uses. Depth is z-depth
(metres along the optical axis), what toyland's depth modality records.

The move. A spherical offset (yaw, pitch) orbits the camera about the pivot ``P = (0, 0, d0)`` on
its optical axis, as toyland's ``camera_viewpoint`` factor orbits a world camera about its look-at
target: the camera's centre and axes turn by ``Rc = R(up, yaw) R(x, -pitch)`` about ``P`` (yaw about
an up axis, positive counter-clockwise seen from above; pitch positive raising the camera), so the
new centre is ``c = P - Rc P`` and a source-frame point ``X`` has new-camera coordinates
``Rc^T (X - c)``. The pivot stays at the image centre.

The warp is backward: each target pixel's ray ``c + t Rc K^-1 u'`` is cut with the source-frame plane
``z = d`` and the cut projected with ``K``: for ``d = d0`` everywhere this is the homography induced
by the plane at depth d0 (E0's ``Pi R Pi^-1(u, v, d0)``, for an orbit rather than a turn in place).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

MUJOCO_TO_OPENCV = np.diag([1.0, -1.0, -1.0])
CAMERA_UP = (0.0, -1.0, 0.0)  # the camera's own up axis, OpenCV frame


def fovy_intrinsics(fovy_deg: float, height: int, width: int) -> torch.Tensor:
    """MuJoCo's camera: vertical field of view over the whole image height, square pixels, centred."""
    f = height / (2.0 * math.tan(math.radians(fovy_deg) / 2.0))
    rows = [[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]]
    return torch.tensor(rows, dtype=torch.float64)


def world_up_in_camera(camera_to_world: np.ndarray | torch.Tensor) -> torch.Tensor:
    """World +z in the OpenCV camera frame from MuJoCo camera-to-world rotations [..., 3, 3]."""
    rot = torch.as_tensor(camera_to_world, dtype=torch.float64)
    up_mujoco = rot[..., 2, :]  # R^T e_z: the third row
    return up_mujoco * torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)


def axis_angle(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [N, 3, 3] about unit axes [N, 3] by angles [N] (Rodrigues)."""
    axis = axis / axis.norm(dim=-1, keepdim=True)
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    cross = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).view(*axis.shape[:-1], 3, 3)
    s, c = angle.sin()[..., None, None], angle.cos()[..., None, None]
    eye = torch.eye(3, dtype=axis.dtype, device=axis.device).expand_as(cross)
    return eye + s * cross + (1 - c) * cross @ cross


def orbit(yaw: torch.Tensor, pitch: torch.Tensor, up: torch.Tensor, pivot_depth: torch.Tensor):
    """The camera's turn ``Rc`` [N, 3, 3] and new centre ``c`` [N, 3] in the source camera frame for
    offsets (radians) [N] about the pivot at ``pivot_depth`` [N] on the optical axis, yaw about ``up`` [N, 3]."""
    x_axis = torch.zeros_like(up)
    x_axis[..., 0] = 1.0
    rot = axis_angle(up, yaw) @ axis_angle(x_axis, -pitch)
    pivot = torch.zeros_like(up)
    pivot[..., 2] = pivot_depth
    centre = pivot - (rot @ pivot[..., None])[..., 0]
    return rot, centre


@dataclass(frozen=True)
class Rays:
    """The moved camera's pixel rays ``centre + t q`` in the source frame, kept as what cutting them
    with planes ``z = d`` needs: ``q``'s z [N, H, W], ``K q`` [N, H, W, 3], ``K centre`` [N, 3], centre's z [N]."""

    qz: torch.Tensor
    kq: torch.Tensor
    kc: torch.Tensor
    cz: torch.Tensor


def target_rays(K: torch.Tensor, rot: torch.Tensor, centre: torch.Tensor, height: int, width: int,
                points: int | None = None) -> Rays:
    """The new camera's rays through every pixel (with ``points``, through a ``points`` x ``points``
    grid spread over the image instead)."""
    dtype, device = rot.dtype, rot.device
    if points is None:
        rows, cols = torch.arange(height, dtype=dtype, device=device), torch.arange(width, dtype=dtype, device=device)
    else:
        rows = torch.linspace(0, height - 1, points, dtype=dtype, device=device)
        cols = torch.linspace(0, width - 1, points, dtype=dtype, device=device)
    v, u = torch.meshgrid(rows, cols, indexing="ij")
    pixels = torch.stack([u, v, torch.ones_like(u)], -1)  # [H, W, 3]
    K = K.to(dtype)
    to_source = rot @ torch.linalg.inv(K)  # [N, 3, 3]
    # K q in one product: K Rc K^-1 is the homography of the turn in place
    kq = torch.einsum("nij,hwj->nhwi", K @ to_source, pixels)
    qz = torch.einsum("nj,hwj->nhw", to_source[:, 2], pixels)
    return Rays(qz=qz, kq=kq, kc=(K @ centre[..., None])[..., 0], cz=centre[:, 2])


def cut_plane(rays: Rays, depth: torch.Tensor):
    """Source pixels [N, H, W, 2] where the rays meet the source-frame planes ``z = depth`` ([N, 1, 1]
    or [N, H, W]), and whether they meet them in front of the camera."""
    t = (depth - rays.cz[:, None, None]) / rays.qz
    ok = (rays.qz > 1e-9) & (t > 0) & torch.isfinite(t)
    pix = rays.kc[:, None, None, :] + torch.where(ok, t, torch.zeros_like(t))[..., None] * rays.kq
    return pix[..., :2] / pix[..., 2:].clamp_min(1e-9), ok


def inside(uv: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Whether pixel coordinates fall on the image (pixel centres are integers, edges at -0.5)."""
    u, v = uv.unbind(-1)
    return (u >= -0.5) & (u <= width - 0.5) & (v >= -0.5) & (v <= height - 0.5)


def to_grid(uv: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pixel coordinates to grid_sample's [-1, 1] (align_corners=True)."""
    scale = torch.tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], dtype=uv.dtype, device=uv.device)
    return uv * scale - 1.0


def sample(image: torch.Tensor, uv: torch.Tensor, mode: str) -> torch.Tensor:
    """``image`` [N, C, H, W] read at pixel coordinates [N, H', W', 2]."""
    h, w = image.shape[-2:]
    grid = to_grid(uv, h, w).to(image.dtype)
    return F.grid_sample(image, grid, mode=mode, padding_mode="border", align_corners=True)


def source_pixels(K, rot, centre, height: int, width: int, d0: torch.Tensor, depth: torch.Tensor | None = None,
                  iterations: int = 3, points: int | None = None):
    """Where each target pixel reads the source image, [N, H, W, 2], and which target pixels have a
    source on the image ([N, H, W]; the rest are holes).

    Without ``depth`` the scene is the plane at depth ``d0`` [N]. With the source's metric depth
    [N, H, W] the pixel's ray is cut with the recorded surface instead: a root of
    ``f(z) = 1 / D(u(z)) - 1 / z``, with ``u(z)`` the source pixel of the ray's point at depth ``z`` and
    ``D`` the recorded depth read there (bilinearly in inverse depth). The plane's cut (``z = d0``) is the first guess;
    the first ``iteration`` is a fixed-point step ``z = D(u(z))``, the later ones secant steps on ``f``
    in inverse depth, where ``f`` is linear for a planar surface: the secant lands on a plane in one
    step where fixed-point steps oscillate or diverge on a surface seen at a grazing angle (the table,
    once the camera rises: benchmarks/viewpoint_warp_accuracy.py). At occlusion edges the
    search settles on either surface, and pixels no source pixel shows (disocclusions) take what it
    lands on rather than a hole: a backward warp reads, it cannot splat."""
    rays = target_rays(K, rot, centre, height, width, points)
    z = d0.to(rays.qz.dtype).view(-1, 1, 1).expand(*rays.qz.shape)
    uv, ok = cut_plane(rays, z)
    if depth is not None:
        depth = depth.to(rays.qz.dtype)[:, None]
        # inverse depth is what is affine across a plane's image, so it is what to interpolate
        inverse = torch.where(depth > 0, 1.0 / depth.clamp_min(1e-9), torch.zeros_like(depth))
        reachable = rays.cz[:, None, None] + 1e-6  # depths in front of the moved camera
        previous = None  # (inverse depth, residual) of the last step, for the secant
        for _ in range(iterations):
            found = 1.0 / sample(inverse, uv, "bilinear")[:, 0]  # inf where nothing was recorded
            # a read off the image, or a depth the new camera cannot reach, keeps the previous guess
            usable = ok & inside(uv, height, width) & (found > reachable) & torch.isfinite(found)
            w, residual = 1.0 / z, 1.0 / found - 1.0 / z
            step = found
            if previous is not None:
                w_old, r_old = previous
                slope = residual - r_old
                good = (slope.abs() > 1e-9) & ((w - w_old).abs() > 1e-12)
                w_new = w - residual * (w - w_old) / torch.where(good, slope, torch.ones_like(slope))
                good = good & torch.isfinite(w_new) & (w_new > 0) & (1.0 / w_new > reachable)
                step = torch.where(good, 1.0 / w_new.clamp_min(1e-9), found)
            previous = (w, residual)
            z = torch.where(usable, step, z)
            uv, ok = cut_plane(rays, z)
    return uv, ok & inside(uv, height, width)


def shown_fraction(K: torch.Tensor, up: torch.Tensor, d0: torch.Tensor, yaw: float, pitch: float,
                   height: int, width: int, points: int = 24) -> torch.Tensor:
    """The fraction [N] of the new view that the source view shows, for the plane at depth d0, at the
    worst corner of the offset range (+-yaw, +-pitch) (radians), on a ``points`` x ``points`` grid."""
    n = K.shape[0]
    worst = torch.ones(n, dtype=torch.float64)
    for sy in (-1.0, 1.0):
        for sp in (-1.0, 1.0):
            offsets = torch.tensor([sy * yaw, sp * pitch], dtype=torch.float64).expand(n, 2)
            rot, centre = orbit(offsets[:, 0], offsets[:, 1], up.to(torch.float64), d0.to(torch.float64))
            _, ok = source_pixels(K.to(torch.float64), rot, centre, height, width, d0, points=points)
            worst = torch.minimum(worst, ok.double().mean(dim=(1, 2)))
    return worst
