"""Cameras and offscreen rendering: RGB, depth, per-object segmentation, and the instructed target's
mask (what a detector would give a real robot's object-centric policy).

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
MODALITIES = ("rgb", "depth", "segmentation", "mask")


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
    """Accepts ['front', 'wrist:rgb+mask', 'wrist@96', 'front@48x64:rgb+depth', ...]
    (``name[@size or @HxW][:modality+modality]``, a form a Hydra command line and a list-typed config key take) or {'front': {'height': 96, 'modalities': ['rgb', 'depth']}, ...}."""
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
        for spec in map(str, cameras):
            name, _, modalities = spec.partition(":")
            name, at, size = name.partition("@")
            height, width = _parse_size(size, spec) if at else (image_size, image_size)
            configs.append(CameraConfig(name=name, height=height, width=width,
                                        modalities=tuple(modalities.split("+")) if modalities else ("rgb",)))
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
        raise ValueError(f"camera listed twice in {names}")
    return tuple(configs)


def _parse_size(size: str, spec: str) -> tuple[int, int]:
    parts = size.lower().split("x")
    if len(parts) > 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"camera {spec!r}: the size after '@' must be N or HxW in pixels, e.g. 'wrist@96' or 'front@48x64'")
    return int(parts[0]), int(parts[-1])


def intrinsics_matrix(fovy_deg: float, height: int, width: int) -> np.ndarray:
    """MuJoCo's pinhole as OpenCV intrinsics (x right, y down, z forward; integer pixel coordinates at
    pixel centres): vertical field of view over the image height, square pixels, centred."""
    f = height / (2.0 * np.tan(np.deg2rad(fovy_deg) / 2.0))
    return np.array([[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def camera_geometry(model: mujoco.MjModel, data: mujoco.MjData, camera: str, height: int, width: int):
    """(intrinsics [3, 3], camera-to-world pose [4, 4]) of a model camera as last rendered: the pose is
    ``data.cam_xpos``/``data.cam_xmat`` (MuJoCo's camera frame, looking along -z), what the renderer
    used, so it moves with factors and, for the wrist camera, with the hand."""
    cam = model.camera(camera).id
    pose = np.eye(4)
    pose[:3, :3] = data.cam_xmat[cam].reshape(3, 3)
    pose[:3, 3] = data.cam_xpos[cam]
    return intrinsics_matrix(float(model.cam_fovy[cam]), height, width), pose


def _metric_depth(buffer: np.ndarray, model: mujoco.MjModel) -> np.ndarray:
    """Reversed-Z depth buffer (MjrContext.readDepthMap = ZEROFAR: 1 at near, 0 at far) to metres."""
    extent = model.stat.extent
    near, far = model.vis.map.znear * extent, model.vis.map.zfar * extent
    # OpenGL perspective coefficients, remapped for reversed Z; float64 keeps far depths exact
    c = -(far + near) / (far - near)
    d = -2.0 * far * near / (far - near)
    return (-0.5 * d) / (buffer.astype(np.float64) - 0.5 * c - 0.5)


# What an MjrContext uploads or reads from its model: textures, meshes, height fields, the
# built-in primitives' tessellation and the offscreen buffer. Models equal in all of these (the same
# robot and arena, primitive toys) can share one context.
CONTEXT_ARRAYS = ("tex_type", "tex_colorspace", "tex_height", "tex_width", "tex_nchannel", "tex_adr", "tex_data",
                  "mat_texid", "mat_texrepeat", "mat_texuniform", "mesh_vertadr", "mesh_vertnum", "mesh_vert",
                  "mesh_normaladr", "mesh_normal", "mesh_texcoordadr", "mesh_texcoord", "mesh_faceadr", "mesh_facenum",
                  "mesh_face", "mesh_facenormal", "mesh_facetexcoord", "mesh_graphadr", "mesh_graph", "hfield_size",
                  "hfield_nrow", "hfield_ncol", "hfield_data")
CONTEXT_SETTINGS = (("quality", ("shadowsize", "offsamples", "numslices", "numstacks", "numquads")),
                    ("global_", ("offwidth", "offheight", "linewidth")),
                    ("map", ("fogstart", "fogend", "shadowclip", "shadowscale", "znear", "zfar")))


def same_render_assets(a: mujoco.MjModel, b: mujoco.MjModel) -> bool:
    """Whether an MjrContext made for ``a`` renders ``b`` as one made for ``b`` would (no skins or
    flexes, which a context also uploads; those always get their own)."""
    if a.nskin or b.nskin or a.nflex or b.nflex:
        return False
    for group, names in CONTEXT_SETTINGS:
        if any(getattr(getattr(a.vis, group), n) != getattr(getattr(b.vis, group), n) for n in names):
            return False
    if a.stat.extent != b.stat.extent or not np.array_equal(a.vis.rgba.fog, b.vis.rgba.fog):
        return False  # (fog and shadow ranges scale with the extent)
    planes = mujoco.mjtGeom.mjGEOM_PLANE
    if not np.array_equal(a.geom_size[a.geom_type == planes], b.geom_size[b.geom_type == planes]):
        return False  # a context makes one grid per plane size
    return all(np.array_equal(getattr(a, name), getattr(b, name)) for name in CONTEXT_ARRAYS)


class RendererPool:
    """Offscreen renderer over one GL context that outlives model rebuilds.

    ``mujoco.Renderer`` creates a new GL context per instance (about 0.2 s with Mesa); toys change
    the model every episode, so we keep the context and rebuild only the model-bound MjrContext and
    MjvScene, and the MjrContext (tens of milliseconds) only when the new model's textures or meshes differ
    (mesh objects; primitive toys keep it). RGB, depth (metres) and segmentation (object id, object
    type) as mujoco.Renderer.
    """

    def __init__(self, max_height: int, max_width: int):
        self.max_height, self.max_width = max_height, max_width
        self._gl = None
        self._model = None
        self._context = None
        self._scene = None
        self._option = mujoco.MjvOption()

    def _make_current(self) -> None:
        if self._gl is None:
            try:  # GLUnavailableError from context_class passes through unchanged
                self._gl = gl.context_class()(self.max_width, self.max_height)
                self._gl.make_current()
            except gl.GLUnavailableError:
                raise
            except Exception as err:  # GL failures surface as several exception types
                self._gl = None
                raise gl.GLUnavailableError(f"{gl.INSTALL_HINT}\n(original error: {err!r})") from err
        else:
            self._gl.make_current()

    def set_model(self, model: mujoco.MjModel) -> None:
        if self._context is not None and same_render_assets(self._model, model):
            self._model = model
            self._scene = mujoco.MjvScene(model, maxgeom=2000)
            return
        self._model = model
        self._release()  # rebuilt lazily: environments without cameras never touch GL

    def _release(self) -> None:
        """Frees the MjrContext's GL objects in this pool's own GL context. Left to the garbage
        collector, it frees them in whichever context is current, which with several envs in one
        process is another env's: that env's framebuffer is deleted under it mid-episode (measured:
        GL error 0x506 and NaN depth with eight envs stepped in lockstep)."""
        if self._context is not None:
            if self._gl is not None:
                self._gl.make_current()
            self._context.free()
        self._context = None

    def _bind(self) -> None:
        self._make_current()
        if self._context is None:
            m = self._model
            if m.vis.global_.offwidth < self.max_width or m.vis.global_.offheight < self.max_height:
                raise ValueError("the model's offscreen buffer is smaller than the largest camera")
            try:
                self._context = mujoco.MjrContext(m, mujoco.mjtFontScale.mjFONTSCALE_100)
            except Exception as err:
                raise gl.GLUnavailableError(f"{gl.INSTALL_HINT}\n(original error: {err!r})") from err
            mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._context)
            self._context.readDepthMap = mujoco.mjtDepthMap.mjDEPTH_ZEROFAR
            self._scene = mujoco.MjvScene(m, maxgeom=2000)

    def render(self, data: mujoco.MjData, camera: str, height: int, width: int, modality: str = "rgb") -> np.ndarray:
        if height > self.max_height or width > self.max_width:
            raise ValueError(f"{height}x{width} exceeds the offscreen buffer {self.max_height}x{self.max_width}")
        self._bind()
        m, scene, ctx = self._model, self._scene, self._context
        segment = modality != "rgb"  # flat id colours also make the depth buffer exact at range
        scene.flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = segment
        scene.flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = segment
        cam = mujoco.MjvCamera()
        cam.type = mujoco.mjtCamera.mjCAMERA_FIXED
        cam.fixedcamid = m.camera(camera).id
        mujoco.mjv_updateScene(m, data, self._option, None, cam, mujoco.mjtCatBit.mjCAT_ALL, scene)
        rect = mujoco.MjrRect(0, 0, width, height)
        mujoco.mjr_render(rect, scene, ctx)
        if modality == "depth":
            depth = np.empty((height, width), dtype=np.float32)
            mujoco.mjr_readPixels(None, depth, rect, ctx)
            return np.flipud(_metric_depth(depth, m)).astype(np.float32)
        rgb = np.empty((height, width, 3), dtype=np.uint8)
        mujoco.mjr_readPixels(rgb, None, rect, ctx)
        rgb = np.flipud(rgb)
        if not segment:
            return rgb
        # Colours encode (index into scene.geoms) + 1; map to (object id, object type).
        index = rgb[..., 0].astype(np.int32) + rgb[..., 1].astype(np.int32) * 256 + rgb[..., 2].astype(np.int32) * 65536 - 1
        table = np.full((scene.ngeom + 1, 2), -1, dtype=np.int32)
        for i in range(scene.ngeom):
            table[i] = scene.geoms[i].objid, scene.geoms[i].objtype
        return table[np.where(index >= 0, np.minimum(index, scene.ngeom), scene.ngeom)]

    def close(self) -> None:
        self._release()
        self._scene = None
        if self._gl is not None:
            self._gl.free()
            self._gl = None
