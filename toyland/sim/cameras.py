"""Cameras and offscreen rendering: RGB, depth and per-object segmentation.

Rendering speed is dominated by settings, not pixels (DESIGN.md section 4): the scene builder turns
shadows and multisampling off and sizes the offscreen buffer to the largest camera, and one
``mujoco.Renderer`` is kept per resolution and rebuilt only when the model changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from toyland.sim import gl

# Fixed cameras in the world; the wrist camera belongs to the gripper. pos, look-at, fovy.
WORLD_CAMERAS = {
    "front": ((1.25, 0.0, 0.55), (0.5, 0.0, 0.05), 50.0),
    "side": ((0.5, -0.85, 0.5), (0.5, 0.0, 0.05), 50.0),
}
CAMERA_NAMES = ("front", "side", "wrist")
MODALITIES = ("rgb", "depth", "segmentation")


@dataclass(frozen=True)
class CameraConfig:
    name: str
    height: int = 96
    width: int = 96
    modalities: tuple[str, ...] = ("rgb",)

    def __post_init__(self):
        if self.name not in CAMERA_NAMES:
            raise ValueError(f"unknown camera '{self.name}'; valid cameras: {', '.join(CAMERA_NAMES)}")
        if not (8 <= self.height <= 2048 and 8 <= self.width <= 2048):
            raise ValueError(f"camera '{self.name}' size {self.height}x{self.width}; allowed 8..2048 pixels per side")
        bad = set(self.modalities) - set(MODALITIES)
        if bad or not self.modalities:
            raise ValueError(f"camera '{self.name}' modalities {sorted(bad) or '[]'}; valid: {', '.join(MODALITIES)}")


def parse_cameras(cameras, image_size: int = 96) -> tuple[CameraConfig, ...]:
    """Accepts ['front', ...] or {'front': {'height': 96, 'modalities': ['rgb', 'depth']}, ...}."""
    if isinstance(cameras, str):
        cameras = [cameras]
    configs = []
    if isinstance(cameras, dict) or hasattr(cameras, "items"):
        for name, opts in cameras.items():
            opts = dict(opts or {})
            opts.setdefault("height", image_size)
            opts.setdefault("width", image_size)
            if "modalities" in opts:
                opts["modalities"] = tuple(opts["modalities"])
            configs.append(CameraConfig(name=name, **opts))
    else:
        configs = [CameraConfig(name=str(n), height=image_size, width=image_size) for n in cameras]
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ValueError(f"camera listed twice in {names}")
    return tuple(configs)


class RendererPool:
    """One renderer per resolution for the current model; segmentation ids mapped to labels."""

    def __init__(self):
        self._model = None
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}

    def set_model(self, model: mujoco.MjModel) -> None:
        if model is not self._model:
            self.close()
            self._model = model

    def _get(self, height: int, width: int) -> mujoco.Renderer:
        key = (height, width)
        if key not in self._renderers:
            try:
                self._renderers[key] = mujoco.Renderer(self._model, height, width)
            except Exception as err:  # GL errors surface as several exception types
                if "offscreen buffer" in str(err) or "framebuffer" in str(err).lower():
                    raise
                raise gl.GLUnavailableError(f"{gl.INSTALL_HINT}\n(original error: {err})") from err
        return self._renderers[key]

    def render(self, data: mujoco.MjData, camera: str, height: int, width: int, modality: str = "rgb") -> np.ndarray:
        renderer = self._get(height, width)
        if modality == "depth":
            renderer.enable_depth_rendering()
        elif modality == "segmentation":
            renderer.enable_segmentation_rendering()
        try:
            renderer.update_scene(data, camera)
            return renderer.render()
        finally:
            if modality == "depth":
                renderer.disable_depth_rendering()
            elif modality == "segmentation":
                renderer.disable_segmentation_rendering()

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()
        self._model = None
