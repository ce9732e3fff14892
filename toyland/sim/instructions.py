"""Instructions that show the object instead of naming it, after Interleave-VLA (issue 27).

An env's ``instruction`` mode says how the target is given:

- ``text``: words only, "pick up the blue ring" (the default, and every dataset before this mode).
- ``interleaved``: words with the object as a picture in its slot, "pick up the <image>".
- ``image``: the picture alone, "<image>".

In the two picture modes every observation carries ``observation.instruction_picture``: the target
toy rendered alone, in its episode's colours (a hue shift of the ``target_appearance`` factor
included), from one canonical view and framed to its size, on a plain grey background. It is a
picture of that object, as a cropped photo would be on a robot, not of the scene: the camera,
lighting and table factors do not reach it.
"""

from __future__ import annotations

import numpy as np

IMAGE_TOKEN = "<image>"  # where the picture sits in the instruction's words
INSTRUCTION_PICTURE = "observation.instruction_picture"  # [S, S, 3] uint8, the same every frame of an episode
MODES = ("text", "interleaved", "image")

VIEW_AZIMUTH, VIEW_ELEVATION = np.deg2rad(-35.0), np.deg2rad(40.0)  # the canonical view, from the front right
FOVY = 30.0
MARGIN = 1.25  # the toy's bounding sphere fills 1 / MARGIN of the frame
BACKGROUND = (0.5, 0.5, 0.5)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"instruction={mode!r}; valid: {', '.join(MODES)} (text names the object, interleaved puts "
                         f"its picture among the words, image gives the picture alone)")
    return mode


def phrase(template: str, description: str, mode: str) -> str:
    """The instruction of ``template`` (with an ``{object}`` slot) for the object ``description``."""
    if mode == "text":
        return template.format(object=description)
    if mode == "interleaved":
        return template.format(object=IMAGE_TOKEN)
    return IMAGE_TOKEN


def split(instruction: str) -> tuple[str, str] | None:
    """(the words before the picture, the words after), or None for a text-only instruction."""
    if IMAGE_TOKEN not in instruction:
        return None
    before, after = instruction.split(IMAGE_TOKEN, 1)
    if IMAGE_TOKEN in after:
        raise ValueError(f"instruction {instruction!r} holds more than one {IMAGE_TOKEN}; toyland's show one object")
    return before.strip(), after.strip()


class PortraitRenderer:
    """Renders a toy alone from the canonical view. Owns a GL context of its own (the env's renderer
    stays bound to the scene), made on the first picture."""

    def __init__(self, size: int):
        from toyland.sim.cameras import RendererPool

        if not 8 <= int(size) <= 256:
            raise ValueError(f"instruction_picture_size={size} must lie in [8, 256] pixels")
        self.size = int(size)
        self.pool = RendererPool(self.size, self.size)

    def render(self, toy, rgba: np.ndarray | None = None) -> np.ndarray:
        """[S, S, 3] uint8 of ``toy`` (anything with ``add_to(spec, name)``); ``rgba``: per-geom colours
        to paint it with (the scene's, so that appearance factors show), in its geoms' order."""
        import mujoco

        from toyland.sim import geometry as geo

        spec = mujoco.MjSpec()
        spec.visual.global_.offwidth = spec.visual.global_.offheight = self.size
        spec.visual.quality.shadowsize = 0  # no shadows are cast, and no multisampling: nothing to allocate
        spec.visual.quality.offsamples = 0
        spec.visual.headlight.ambient = [0.35, 0.35, 0.35]
        spec.visual.headlight.diffuse = [0.3, 0.3, 0.3]
        spec.visual.headlight.specular = [0.0, 0.0, 0.0]
        spec.add_texture(name="sky", type=mujoco.mjtTexture.mjTEXTURE_SKYBOX, builtin=mujoco.mjtBuiltin.mjBUILTIN_FLAT,
                         rgb1=list(BACKGROUND), rgb2=list(BACKGROUND), width=8, height=8)
        spec.worldbody.add_light(dir=[0.3, 0.5, -1.0], diffuse=[0.6, 0.6, 0.6], castshadow=False,
                                 type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL)
        toy.add_to(spec, "toy")
        spec.worldbody.add_camera(name="portrait", fovy=FOVY)
        model = spec.compile()
        data = mujoco.MjData(model)
        mujoco.mj_kinematics(model, data)
        geoms = np.flatnonzero(model.geom_bodyid == model.body("toy").id)
        if rgba is not None:
            if len(rgba) != len(geoms):
                raise ValueError(f"{len(rgba)} colours for a toy of {len(geoms)} geoms")
            model.geom_rgba[geoms] = rgba
        centre, radius = _bounding_sphere(model, data, geoms)
        direction = np.array([np.cos(VIEW_ELEVATION) * np.cos(VIEW_AZIMUTH),
                              np.cos(VIEW_ELEVATION) * np.sin(VIEW_AZIMUTH), np.sin(VIEW_ELEVATION)])
        distance = MARGIN * radius / np.sin(np.deg2rad(FOVY) / 2)
        pos = centre + distance * direction
        model.cam_pos[0], model.cam_quat[0] = pos, geo.look_at_quat(pos, centre)
        mujoco.mj_camlight(model, data)  # mj_kinematics leaves cameras where they were
        self.pool.set_model(model)
        return self.pool.render(data, "portrait", self.size, self.size).copy()

    def close(self) -> None:
        self.pool.close()


def _bounding_sphere(model, data, geoms: np.ndarray) -> tuple[np.ndarray, float]:
    """A sphere around every geom's bounding box (world frame)."""
    corners = []
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
    for g in geoms:
        local = model.geom_aabb[g, :3] + signs * model.geom_aabb[g, 3:]
        corners.append(data.geom_xpos[g] + local @ data.geom_xmat[g].reshape(3, 3).T)
    corners = np.concatenate(corners)
    centre = 0.5 * (corners.min(0) + corners.max(0))
    return centre, float(np.linalg.norm(corners - centre, axis=1).max())


__all__ = ["IMAGE_TOKEN", "INSTRUCTION_PICTURE", "MODES", "PortraitRenderer", "check_mode", "phrase", "split"]
