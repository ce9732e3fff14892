"""Scene assembly with mujoco.MjSpec: arena (table, floor, lights, cameras), an embodiment
attached under its name prefix, and the task's objects. Compiles into a :class:`Scene` holding
the model, data and the ids that controllers, tasks and experts need."""

from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np

from toyland.sim import geometry as geo
from toyland.sim.cameras import WORLD_CAMERAS
from toyland.sim.embodiments import Embodiment
from toyland.sim.embodiments.gripper import FINGER_JOINTS

TABLE_TOP_Z = 0.0
TABLE_CENTRE = (0.35, 0.0)
TABLE_HALF = (0.6, 0.7)
# Segmentation labels: 0 background, 1 arena, 2 robot, 3+ objects in the order the task adds them.
LABEL_BACKGROUND, LABEL_ARENA, LABEL_ROBOT, FIRST_OBJECT_LABEL = 0, 1, 2, 3


@dataclass(frozen=True)
class ArenaConfig:
    """Visual parameters of the arena; factors edit these (colours also at run time)."""

    table_rgba: tuple[float, ...] = (0.62, 0.5, 0.38, 1.0)
    floor_rgba: tuple[float, ...] = (0.32, 0.34, 0.38, 1.0)
    table_texture: str = "plain"  # plain | checker | grid
    floor_texture: str = "checker"
    light_pos: tuple[float, float, float] = (0.4, -0.3, 1.8)
    light_dir: tuple[float, float, float] = (-0.05, 0.15, -1.0)
    light_diffuse: tuple[float, float, float] = (0.75, 0.75, 0.75)
    ambient: tuple[float, float, float] = (0.35, 0.35, 0.35)

    def __post_init__(self):
        for name in ("table_texture", "floor_texture"):
            if getattr(self, name) not in TEXTURES:
                raise ValueError(f"arena field '{name}' = {getattr(self, name)!r}; valid: {', '.join(TEXTURES)}")


TEXTURES = ("plain", "checker", "grid")


def _materials(spec: mujoco.MjSpec, surface: str, rgba, repeat) -> None:
    """One material per texture kind, ``{surface}_mat_{texture}``, so that the appearance factors
    can switch texture and colour on the compiled model. Textures are grey; the material's rgba
    tints them."""
    for texture in TEXTURES:
        name = f"{surface}_mat_{texture}"
        if texture == "plain":
            spec.add_material(name=name, rgba=list(rgba))
            continue
        spec.add_texture(
            name=f"{name}_tex",
            type=mujoco.mjtTexture.mjTEXTURE_2D,
            builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER if texture == "checker" else mujoco.mjtBuiltin.mjBUILTIN_FLAT,
            mark=mujoco.mjtMark.mjMARK_EDGE if texture == "grid" else mujoco.mjtMark.mjMARK_NONE,
            rgb1=[1.0, 1.0, 1.0],
            rgb2=[0.8, 0.8, 0.8],
            markrgb=[0.6, 0.6, 0.6],
            width=256,
            height=256,
        )
        mat = spec.add_material(name=name, texrepeat=list(repeat), texuniform=True, rgba=list(rgba))
        mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = f"{name}_tex"


def build_arena(cfg: ArenaConfig, offscreen: tuple[int, int]) -> mujoco.MjSpec:
    spec = mujoco.MjSpec()
    spec.compiler.degree = False  # every angle here is in radians
    spec.modelname = "toyland"
    spec.option.timestep = 0.002
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 10.0  # stiffer friction: grasps slip less
    # Rendering settings that make offscreen frames ~40x cheaper (DESIGN.md section 4).
    spec.visual.quality.shadowsize = 0
    spec.visual.quality.offsamples = 0
    # Fewer triangles per primitive and one quad per box face: 2.6x faster frames at 96x96, and
    # at these resolutions the silhouettes look the same.
    spec.visual.quality.numslices = 12
    spec.visual.quality.numstacks = 8
    spec.visual.quality.numquads = 1
    spec.visual.global_.offwidth = int(offscreen[1])
    spec.visual.global_.offheight = int(offscreen[0])
    spec.visual.headlight.ambient = list(cfg.ambient)
    spec.visual.headlight.diffuse = [0.25, 0.25, 0.25]
    spec.visual.headlight.specular = [0.0, 0.0, 0.0]
    spec.add_texture(
        name="sky", type=mujoco.mjtTexture.mjTEXTURE_SKYBOX, builtin=mujoco.mjtBuiltin.mjBUILTIN_GRADIENT,
        rgb1=[0.55, 0.65, 0.75], rgb2=[0.1, 0.1, 0.12], width=64, height=64,
    )
    world = spec.worldbody
    world.add_light(name="key", pos=list(cfg.light_pos), dir=list(cfg.light_dir), diffuse=list(cfg.light_diffuse),
                    castshadow=False, type=mujoco.mjtLightType.mjLIGHT_DIRECTIONAL)
    _materials(spec, "floor", cfg.floor_rgba, (8, 8))
    _materials(spec, "table", cfg.table_rgba, (6, 6))
    floor_mat, table_mat = f"floor_mat_{cfg.floor_texture}", f"table_mat_{cfg.table_texture}"
    world.add_geom(name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3, 3, 1.0], pos=[0, 0, -0.75],
                   material=floor_mat, contype=1, conaffinity=3)
    cx, cy = TABLE_CENTRE
    hx, hy = TABLE_HALF
    # The slab is what cameras see; contacts are with a plane on its top. The general convex collider's
    # box-cylinder contacts pushed a cylinder lying still on the slab into rolling by itself (4 cm/s
    # after a second); plane contacts have exact normals. The plane is unbounded, so an object pushed past
    # the slab's edge would rest on air; objects start 20 cm or more inside it.
    world.add_geom(name="table", type=geo.BOX, size=[hx, hy, 0.025], pos=[cx, cy, TABLE_TOP_Z - 0.025],
                   material=table_mat, contype=0, conaffinity=0)
    world.add_geom(name="table_top", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[hx, hy, 0.01], pos=[cx, cy, TABLE_TOP_Z],
                   rgba=[0, 0, 0, 0], group=3, contype=1, conaffinity=3, friction=[0.8, 0.005, 0.0001])
    for i, (sx, sy) in enumerate([(1, 1), (1, -1), (-1, 1), (-1, -1)]):
        world.add_geom(name=f"table_leg{i}", type=geo.BOX, size=[0.03, 0.03, 0.36],
                       pos=[cx + sx * (hx - 0.05), cy + sy * (hy - 0.05), TABLE_TOP_Z - 0.41],
                       rgba=[0.3, 0.25, 0.2, 1], contype=0, conaffinity=0)
    for name, (pos, target, fovy) in WORLD_CAMERAS.items():
        world.add_camera(name=name, pos=list(pos), quat=list(geo.look_at_quat(pos, target)), fovy=fovy)
    return spec


@dataclass
class Scene:
    """A compiled scene and the ids the rest of the simulator looks up once."""

    model: mujoco.MjModel
    data: mujoco.MjData
    embodiment: Embodiment
    object_names: tuple[str, ...]
    arm_qpos: np.ndarray = field(init=False)
    arm_dofs: np.ndarray = field(init=False)
    arm_ctrl: np.ndarray = field(init=False)
    finger_qpos: np.ndarray = field(init=False)
    finger_ctrl: np.ndarray = field(init=False)
    tcp_site: int = field(init=False)
    finger_geoms: tuple[int, int] = field(init=False)
    object_bodies: tuple[int, ...] = field(init=False)
    object_geoms: tuple[np.ndarray, ...] = field(init=False)
    geom_labels: np.ndarray = field(init=False)
    _support_cache: tuple | None = field(init=False, default=None, repr=False)

    def __post_init__(self):
        m, pre = self.model, self.embodiment.prefix
        joint = lambda n: m.joint(pre + n)  # noqa: E731
        self.arm_qpos = np.array([joint(n).qposadr[0] for n in self.embodiment.arm_joints])
        self.arm_dofs = np.array([joint(n).dofadr[0] for n in self.embodiment.arm_joints])
        self.arm_ctrl = np.array([m.actuator(pre + n).id for n in self.embodiment.arm_joints])
        self.finger_qpos = np.array([joint(n).qposadr[0] for n in FINGER_JOINTS])
        self.finger_ctrl = np.array([m.actuator(pre + n).id for n in FINGER_JOINTS])
        self.tcp_site = m.site(pre + "tcp").id
        self.finger_geoms = tuple(m.geom(f"{pre}{n}_pad").id for n in FINGER_JOINTS)
        self.object_bodies = tuple(m.body(n).id for n in self.object_names)
        self.object_geoms = tuple(np.flatnonzero(m.geom_bodyid == b) for b in self.object_bodies)
        labels = np.full(m.ngeom + 1, LABEL_BACKGROUND, dtype=np.int32)  # last slot: "no geom" (-1)
        labels[: m.ngeom] = LABEL_ARENA
        robot_root = m.body(pre + "base").id
        for g in range(m.ngeom):
            if self._descends(m.geom_bodyid[g], robot_root):
                labels[g] = LABEL_ROBOT
        for k, geoms in enumerate(self.object_geoms):
            labels[geoms] = FIRST_OBJECT_LABEL + k
        self.geom_labels = labels

    def _descends(self, body: int, root: int) -> bool:
        while body > 0:
            if body == root:
                return True
            body = self.model.body_parentid[body]
        return False

    def camera_name(self, name: str) -> str:
        return self.embodiment.prefix + name if name == "wrist" else name

    def segmentation_labels(self) -> dict[int, str]:
        labels = {LABEL_BACKGROUND: "background", LABEL_ARENA: "arena", LABEL_ROBOT: "robot"}
        labels.update({FIRST_OBJECT_LABEL + k: n for k, n in enumerate(self.object_names)})
        return labels

    # --- state read-outs ---------------------------------------------------------------------
    def tcp_pose(self) -> tuple[np.ndarray, np.ndarray]:
        return self.data.site_xpos[self.tcp_site].copy(), self.data.site_xmat[self.tcp_site].reshape(3, 3).copy()

    def finger_opening(self) -> float:
        return float(self.data.qpos[self.finger_qpos].sum())

    def object_contacts(self) -> list[set[int]]:
        """For each object, the geoms touching it (one pass over the contacts)."""
        touching: list[set[int]] = [set() for _ in self.object_bodies]
        ncon = self.data.ncon
        if ncon:
            pairs = self.data.contact.geom[:ncon]
            owners = self.geom_labels[pairs] - FIRST_OBJECT_LABEL  # object index, or < 0
            for (a, b), (oa, ob) in zip(pairs.tolist(), owners.tolist()):
                if oa >= 0:
                    touching[oa].add(b)
                if ob >= 0:
                    touching[ob].add(a)
        return touching

    def lowest_point(self, geoms: np.ndarray) -> float:
        """Lowest world z over a set of primitive geoms, from per-geom support coefficients."""
        const, axial_k, radial_k, box = self._support
        rz = self.data.geom_xmat[geoms, 6:9]  # third row of each rotation: world z in geom axes
        axial = np.abs(rz[:, 2])
        reach = (
            const[geoms]
            + axial_k[geoms] * axial
            + radial_k[geoms] * np.sqrt(np.maximum(0.0, 1.0 - axial * axial))
            + np.einsum("ij,ij->i", np.abs(rz), box[geoms])
        )
        lowest = float(np.min(self.data.geom_xpos[geoms, 2] - reach))
        for g in geoms[self.model.geom_type[geoms] == geo.MESH]:  # meshes: their lowest vertex
            lowest = min(lowest, float(self.data.geom_xpos[g, 2] + (self.mesh_vertices(g) @ self.data.geom_xmat[g, 6:9]).min()))
        return lowest

    def mesh_vertices(self, geom: int) -> np.ndarray:
        """Vertices of a mesh geom in its own frame."""
        m = self.model
        mesh = m.geom_dataid[geom]
        start = m.mesh_vertadr[mesh]
        return m.mesh_vert[start : start + m.mesh_vertnum[mesh]]

    @property
    def _support(self):
        # Support along -z of sphere/capsule/cylinder/box as const + a|cos| + b|sin| + |R_z|.size,
        # computed once per scene so that the per-step evaluation is a handful of array ops.
        if self._support_cache is None:
            m = self.model
            size, gtype = m.geom_size, m.geom_type
            sphere, capsule = gtype == geo.SPHERE, gtype == geo.CAPSULE
            cylinder, box = gtype == geo.CYLINDER, gtype == geo.BOX
            const = np.where(sphere | capsule, size[:, 0], 0.0)
            axial = np.where(capsule | cylinder, size[:, 1], 0.0)
            radial = np.where(cylinder, size[:, 0], 0.0)
            self._support_cache = (const, axial, radial, np.where(box[:, None], size, 0.0))
        return self._support_cache


def compile_scene(
    embodiment: Embodiment,
    arena: ArenaConfig,
    offscreen: tuple[int, int],
    add_objects,
) -> Scene:
    """Builds arena + robot + objects. ``add_objects(spec) -> tuple of object body names``."""
    spec = build_arena(arena, offscreen)
    robot = embodiment.build()
    frame = spec.worldbody.add_frame(pos=list(embodiment.mount_pos))
    spec.attach(robot, prefix=embodiment.prefix, frame=frame)
    names = tuple(add_objects(spec))
    model = spec.compile()
    return Scene(model=model, data=mujoco.MjData(model), embodiment=embodiment, object_names=names)
