"""E0's spherical viewpoint warp (arXiv 2511.21542; ../shared/DESIGN.md section 1) as a train-time
augmentation: per sample and camera a (yaw, pitch) offset drawn uniformly from +-(max_yaw_deg,
max_pitch_deg), the camera orbited by it about the pivot at depth d0 on its optical axis, and the
recorded frames resampled as the moved camera would see them (geometry in ``camera_geometry``).

* Fixed depth (default): the scene is taken as the plane at depth d0, a homography per sample.
* ``depth_aware: true``: the recorded metric depth ``observation.depth.<cam>`` places each pixel
  instead: the homography's guess refined by reading the depth where it lands, a fixed-point step
  and then secant steps in inverse depth (``camera_geometry.source_pixels``).

Images are read bilinearly, depth, segmentation and masks at the nearest pixel (labels are not
blended); depth is re-expressed as the moved camera's z-depth. Target pixels whose source lies off the
recorded image are holes: zero in every warped input, their share per sample in
``augment.viewpoint_warp.holes`` ([B], mean over warped cameras; per camera in ``...holes.<cam>``).
The offsets are returned as ``augment.viewpoint_offset.<cam>`` ([B, 2], yaw and pitch in radians)
for a policy to embed, as E0 adds an embedding of the offset to its image tokens. Every history frame
of a sample gets its sample's offset.

The pivot and the yaw axis default to what toyland's ``camera_viewpoint`` factor does to the world
cameras (front, side): the orbit is about the camera's look-at target, yaw about the world vertical
(the factor's azimuth), pitch about the camera's horizontal axis (its elevation). ``yaw_axis:
camera`` turns about the camera's own up axis instead, E0's camera-frame offset, for cameras whose
pose is unknown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from toyland.augment import camera_geometry as geo
from toyland.augment.base import (INPUTS, Augmentation, MissingInputError, check_number, image_cameras, require)
from toyland.augment.registry import AUGMENTATIONS

MIN_SHOWN = 0.5  # the least share of a warped view that must come from the recorded one
YAW_AXES = ("world", "camera")
OFFSET_KEY = "augment.viewpoint_offset."
HOLES_KEY = "augment.viewpoint_warp.holes"


@dataclass(frozen=True)
class ViewpointWarpConfig:
    max_yaw_deg: float = 20.0  # yaw drawn uniformly in [-max, max] (camera_viewpoint ood_1 reaches 20)
    max_pitch_deg: float = 10.0
    strength: float = 1.0  # scales both ranges; 0 is the identity
    depth_aware: bool = False  # place pixels by the recorded depth (needs observation.depth.<cam>)
    iterations: int = 3  # depth reads of the depth-aware warp (a fixed-point step, then secant steps)
    depth_m: float | None = None  # pivot and plane distance d0; None: the camera's look-at distance
    fovy_deg: float | None = None  # without camera.intrinsics.<cam> in the batch; None: the camera's own
    yaw_axis: str = "world"  # world: about the vertical (camera.pose.<cam> or the nominal pose); camera: its up axis
    cameras: tuple[str, ...] = ()  # () warps the world cameras (front, side) the batch has

    def __post_init__(self):
        where = "viewpoint_warp"
        check_number(where, "max_yaw_deg", self.max_yaw_deg, 0.0, 89.0)
        check_number(where, "max_pitch_deg", self.max_pitch_deg, 0.0, 89.0)
        check_number(where, "strength", self.strength, 0.0, 1.0)
        if not isinstance(self.depth_aware, bool):
            raise ValueError(f"{where}.depth_aware={self.depth_aware!r}: give true or false")
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or not 1 <= self.iterations <= 10:
            raise ValueError(f"{where}.iterations={self.iterations!r}: give an integer in [1, 10]")
        if self.depth_m is not None:
            check_number(where, "depth_m", self.depth_m, 0.01, 100.0)
        if self.fovy_deg is not None:
            check_number(where, "fovy_deg", self.fovy_deg, 1.0, 179.0)
        if self.yaw_axis not in YAW_AXES:
            raise ValueError(f"{where}.yaw_axis={self.yaw_axis!r}; valid: {', '.join(YAW_AXES)}")
        if not all(isinstance(c, str) for c in self.cameras):
            raise ValueError(f"{where}.cameras={self.cameras!r}: give camera names")

    def ranges(self) -> tuple[float, float]:
        """Effective (yaw, pitch) maxima in degrees."""
        return self.max_yaw_deg * self.strength, self.max_pitch_deg * self.strength


@dataclass(frozen=True)
class CameraModel:
    """One camera's warp inputs, per sample: intrinsics [B, 3, 3], world up [B, 3] (OpenCV frame), d0 [B]."""

    K: torch.Tensor
    up: torch.Tensor
    d0: torch.Tensor


def nominal_camera(cam: str):
    """(fovy in degrees, look-at distance, MuJoCo camera-to-world rotation) of a world camera, else None."""
    from toyland.sim.cameras import WORLD_CAMERAS
    from toyland.sim.geometry import look_at_quat, quat_to_mat

    if cam not in WORLD_CAMERAS:
        return None
    pos, target, fovy = WORLD_CAMERAS[cam]
    return fovy, float(np.linalg.norm(np.subtract(pos, target))), quat_to_mat(look_at_quat(pos, target))


def _per_sample(value: torch.Tensor, batch_size: int, shape: tuple, key: str) -> torch.Tensor:
    """[*shape], [B, *shape] or [B, T, *shape] (the first frame: constant over an episode) to [B, *shape]."""
    value = torch.as_tensor(value, dtype=torch.float64).cpu()
    if value.shape == shape:
        return value.expand(batch_size, *shape)
    extra = value.dim() - len(shape)
    if extra in (1, 2) and value.shape[0] == batch_size and value.shape[extra:] == shape:
        return value if extra == 1 else value[:, 0]
    raise ValueError(f"'{key}' has shape {tuple(value.shape)}; give {list(shape)}, [B, {', '.join(map(str, shape))}] "
                     f"or [B, T, {', '.join(map(str, shape))}] for a batch of {batch_size}")


@AUGMENTATIONS.register("viewpoint_warp")
class ViewpointWarp(Augmentation):
    name = "viewpoint_warp"
    Config = ViewpointWarpConfig

    def __init__(self, config=None):
        super().__init__(config)
        self._allowed: set = set()  # camera models whose range check passed (usually one per camera per run)

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({"rgb", "depth"} if self.config.depth_aware else {"rgb"})

    def cameras(self, batch: dict) -> list[str]:
        if self.config.cameras:
            return sorted(self.config.cameras)
        have = image_cameras(batch)
        cams = [c for c in have if nominal_camera(c) is not None]
        if not cams:
            raise MissingInputError(
                f"augmentation 'viewpoint_warp' warps the world cameras (front, side) by default but the batch has "
                f"images of {have or 'no camera'}: collect with env.cameras=[front:rgb], or name the cameras to warp "
                "with cameras=[...] (a wrist camera also needs fovy_deg, depth_m and yaw_axis=camera)")
        return cams

    # --- what each camera needs, resolved before anything is warped ----------------------------
    def camera_model(self, batch: dict, cam: str, batch_size: int, height: int, width: int) -> CameraModel:
        cfg, nominal = self.config, nominal_camera(cam)
        key = INPUTS["intrinsics"].key.format(cam=cam)
        if key in batch:
            K = _per_sample(batch[key], batch_size, (3, 3), key)
        elif cfg.fovy_deg is not None or nominal is not None:
            fovy = cfg.fovy_deg if cfg.fovy_deg is not None else nominal[0]
            K = geo.fovy_intrinsics(fovy, height, width).expand(batch_size, 3, 3)
        else:
            raise MissingInputError(f"augmentation 'viewpoint_warp' needs the intrinsics of camera '{cam}': "
                                    f"{INPUTS['intrinsics'].how.format(cam=cam)}")
        if cfg.depth_m is None and nominal is None:
            raise ValueError(f"augmentation 'viewpoint_warp': camera '{cam}' has no look-at target to orbit about; "
                             "give depth_m, the pivot's distance in metres")
        distance = cfg.depth_m if cfg.depth_m is not None else nominal[1]
        d0 = torch.full((batch_size,), float(distance), dtype=torch.float64)
        if cfg.yaw_axis == "camera":
            up = torch.tensor(geo.CAMERA_UP, dtype=torch.float64).expand(batch_size, 3)
        else:
            key = INPUTS["pose"].key.format(cam=cam)
            if key in batch:
                up = geo.world_up_in_camera(_per_sample(batch[key], batch_size, (4, 4), key)[:, :3, :3])
            elif nominal is not None:
                up = geo.world_up_in_camera(nominal[2]).expand(batch_size, 3)
            else:
                raise MissingInputError(f"augmentation 'viewpoint_warp' with yaw_axis=world needs the pose of camera "
                                        f"'{cam}': {INPUTS['pose'].how.format(cam=cam)}, or set yaw_axis=camera")
        return CameraModel(K, up, d0)

    def check(self, batch: dict) -> None:
        for cam, model, (height, width) in self.camera_models(batch):
            key = self._model_key(cam, model, height, width)
            if key is None or key not in self._allowed:  # a camera model seen before passed already
                self._check_range(cam, model, height, width)
                if key is not None:
                    self._allowed.add(key)

    @staticmethod
    def _model_key(cam: str, model: CameraModel, height: int, width: int):
        K, up, d0 = model.K, model.up, model.d0
        if not bool((K == K[:1]).all() and (up == up[:1]).all() and (d0 == d0[:1]).all()):
            return None  # samples with different models: checked every time
        return (cam, height, width, *K[0].flatten().tolist(), *up[0].tolist(), float(d0[0]))

    def camera_models(self, batch: dict) -> list[tuple[str, CameraModel, tuple[int, int]]]:
        """(camera, its model, its image size) for every camera to warp; raises what the batch lacks."""
        out = []
        for cam in self.cameras(batch):
            for need in sorted(self.needs):
                require(batch, self.name, need, cam)
            images = batch[INPUTS["rgb"].key.format(cam=cam)]
            if images.dim() not in (4, 5) or images.shape[-3] != 3:
                raise ValueError(f"augmentation 'viewpoint_warp': images of camera '{cam}' have shape "
                                 f"{tuple(images.shape)}; expected [B, T, 3, H, W] or [B, 3, H, W] "
                                 "(the BatchSampler's layout)")
            height, width = images.shape[-2:]
            out.append((cam, self.camera_model(batch, cam, images.shape[0], height, width), (height, width)))
        return out

    def _check_range(self, cam: str, model: CameraModel, height: int, width: int) -> None:
        yaw, pitch = self.config.ranges()
        if yaw == 0 and pitch == 0:
            return
        # samples sharing one camera model (the usual case) are checked once
        K, up, d0 = model.K, model.up, model.d0
        if bool((K == K[:1]).all() and (up == up[:1]).all() and (d0 == d0[:1]).all()):
            K, up, d0 = K[:1], up[:1], d0[:1]

        def shown(y: float, p: float) -> torch.Tensor:
            return geo.shown_fraction(K, up, d0, math.radians(y), math.radians(p), height, width)

        fractions = shown(yaw, pitch)
        if bool((fractions >= MIN_SHOWN).all()):
            return
        i = int(fractions.argmin())
        K, up, d0 = K[i:i + 1], up[i:i + 1], d0[i:i + 1]

        def largest(fits) -> float | None:
            if not fits(0.0):
                return None
            lo, hi = 0.0, 1.0
            for _ in range(20):
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if fits(mid) else (lo, mid)
            return lo

        by_yaw = largest(lambda s: bool(shown(s * yaw, pitch)[0] >= MIN_SHOWN))
        by_pitch = largest(lambda s: bool(shown(yaw, s * pitch)[0] >= MIN_SHOWN))
        fovy = math.degrees(2 * math.atan((height / 2) / float(K[0, 1, 1])))
        scale, cfg = self.config.strength, self.config
        options = []
        if by_yaw is not None and yaw:
            options.append(f"max_yaw_deg <= {by_yaw * yaw / scale:.1f} with max_pitch_deg={cfg.max_pitch_deg:g}")
        if by_pitch is not None and pitch:
            options.append(f"max_pitch_deg <= {by_pitch * pitch / scale:.1f} with max_yaw_deg={cfg.max_yaw_deg:g}")
        allowed = " or ".join(options) or "smaller ranges for both"
        raise ValueError(
            f"augmentation 'viewpoint_warp': offsets up to yaw +-{yaw:g} deg and pitch +-{pitch:g} deg are beyond what "
            f"camera '{cam}' can show (fovy {fovy:.1f} deg, {height}x{width} px, pivot at {float(d0[0]):.2f} m): "
            "at the "
            f"range's worst corner only {float(fractions[i]):.0%} of the warped view comes from the recorded one, "
            f"{MIN_SHOWN:.0%} is required; allowed: {allowed}" + (f" (at strength={scale:g})" if scale != 1 else ""))

    # --- the warp -------------------------------------------------------------------------------
    def apply(self, batch: dict, generator: torch.Generator) -> dict:
        yaw_max, pitch_max = (math.radians(x) for x in self.config.ranges())
        holes = []
        for cam, model, _ in self.camera_models(batch):  # the range was checked by ``check``
            b = model.K.shape[0]
            u = torch.rand(b, 2, generator=generator, dtype=torch.float64)  # on the generator's device (CPU)
            self.warp(batch, cam, model, (2 * u[:, 0] - 1) * yaw_max, (2 * u[:, 1] - 1) * pitch_max)
            holes.append(batch[f"{HOLES_KEY}.{cam}"])
        batch[HOLES_KEY] = torch.stack(holes).mean(0)
        return batch

    def warp(self, batch: dict, cam: str, model: CameraModel, yaw: torch.Tensor, pitch: torch.Tensor) -> torch.Tensor:
        """Warps camera ``cam``'s inputs in ``batch`` (in place) by per-sample offsets [B] in radians,
        adds its offsets and hole shares, and returns which pixels have a source ([B * T, H, W]).
        No range check: ``apply`` checks the drawn range first."""
        cfg = self.config
        images = batch[INPUTS["rgb"].key.format(cam=cam)]
        device, b = images.device, images.shape[0]
        height, width = images.shape[-2:]
        frames = images.shape[1] if images.dim() == 5 else 1
        rot, centre = geo.orbit(yaw.to(torch.float64), pitch.to(torch.float64), model.up, model.d0)
        # per-pixel work in float32 on the batch's device; each frame of a sample gets the sample's move
        rot, centre, K, d0 = (x.to(device, torch.float32) for x in (rot, centre, model.K, model.d0))
        depth_key = INPUTS["depth"].key.format(cam=cam)
        depth = batch[depth_key].reshape(b * frames, height, width) if depth_key in batch else None
        if cfg.depth_aware:  # each frame's own depth
            rot, centre, K, d0 = (x.repeat_interleave(frames, 0) for x in (rot, centre, K, d0))
            uv, ok = geo.source_pixels(K, rot, centre, height, width, d0, depth, cfg.iterations)
        else:  # one map per sample, shared by its frames
            uv, ok = geo.source_pixels(K, rot, centre, height, width, d0)
            rot, centre, K, uv, ok = (x.repeat_interleave(frames, 0) for x in (rot, centre, K, uv, ok))
        keep = ok[:, None]
        warped = geo.sample(images.reshape(b * frames, 3, height, width), uv, "bilinear")
        batch[INPUTS["rgb"].key.format(cam=cam)] = (warped * keep).reshape(images.shape)
        if depth is not None:
            batch[depth_key] = self._warp_depth(depth, uv, ok, K, rot, centre).reshape(batch[depth_key].shape)
        for need in ("segmentation", "masks"):
            key = INPUTS[need].key.format(cam=cam)
            if key in batch:
                labels = batch[key]
                flat = labels.reshape(b * frames, 1, height, width).to(torch.float32)
                batch[key] = (geo.sample(flat, uv, "nearest") * keep).round().to(labels.dtype).reshape(labels.shape)
        batch[f"{HOLES_KEY}.{cam}"] = (~ok).float().reshape(b, -1).mean(1)
        batch[OFFSET_KEY + cam] = torch.stack([yaw, pitch], -1).to(device, torch.float32)
        return ok

    @staticmethod
    def _warp_depth(depth, uv, ok, K, rot, centre) -> torch.Tensor:
        """The moved camera's z-depth of the surface point each target pixel shows; 0 in holes.
        The point is ``D K^-1 (u, v, 1)`` with the depth ``D`` read at (u, v); its new z is
        ``Rc[:, 2] . (point - centre)``, linear in (u, v) once scaled by D."""
        found = geo.sample(depth[:, None].to(torch.float32), uv, "nearest")[:, 0]
        row = rot[:, :, 2]  # [N, 3]: the new optical axis in the source frame
        m = (row[:, None, :] @ torch.linalg.inv(K))[:, 0]  # [N, 3]
        along = m[:, None, None, 0] * uv[..., 0] + m[:, None, None, 1] * uv[..., 1] + m[:, None, None, 2]
        new_z = found * along - (row * centre).sum(-1)[:, None, None]
        return torch.where(ok, new_z, torch.zeros_like(new_z)).to(depth.dtype)
