"""The gymnasium environment: a task, an embodiment and a toy set, observed through cameras.

Observations use lerobot's names: ``observation.state``, ``observation.images.<camera>`` (RGB,
HxWx3 uint8), plus ``observation.depth.<camera>`` (HxWx1 float32 metres) and
``observation.segmentation.<camera>`` (HxW int32 labels, see ``info['segmentation_labels']``) and
``observation.masks.<camera>`` (HxW uint8, 1 on the instructed target's pixels; with ``masks=objects``
every object's pixels, 1..n, each object under an id shuffled per episode) when asked for, and
``task`` (the instruction), with ``observation.instruction_picture`` (the target alone, HxWx3 uint8)
when the instruction shows the object (``instruction=interleaved|image``). ``info`` carries the episode's toy specs and success.
"""

from __future__ import annotations

import string
import gymnasium as gym
import mujoco
import numpy as np

from toyland.sim.cameras import CameraConfig, RendererPool, parse_cameras
from toyland.sim.control import ControlConfig, make_controller, validate_action
from toyland.sim.embodiments import get_embodiment
from toyland.sim.embodiments.gripper import FINGER_TRAVEL
from toyland.sim.factors import FACTORS, check_levels, factor_rng
from toyland.sim.instructions import INSTRUCTION_PICTURE, PortraitRenderer
from toyland.sim.scene import FIRST_OBJECT_LABEL, ArenaConfig, Scene, compile_scene
from toyland.sim.shortcut import Shortcut
from toyland.sim.tasks import TASKS
from toyland.sim.toy_sets import get_toy_set

INSTRUCTION_CHARSET = string.ascii_letters + string.digits + string.punctuation + " "
MASK_MODES = ("target", "objects")
MAX_MASK_ID = 32  # objects a masks=objects map may hold; policies size their object slots by the scene's count
UNSTABLE = tuple(int(w) for w in (
    mujoco.mjtWarning.mjWARN_BADQACC, mujoco.mjtWarning.mjWARN_BADQVEL,
    mujoco.mjtWarning.mjWARN_BADQPOS, mujoco.mjtWarning.mjWARN_INERTIA,
))


REST_SPEED, REST_SPIN = 0.003, 0.05  # m/s and rad/s below which an object counts as at rest

# which entries of the controller's state ``observation.state`` carries: all of them, or only the
# tool's (finger opening, tcp position and orientation), which mean the same on every embodiment with
# this hand, so demonstrations of two robots share one state space (cross-embodiment co-training)
STATE_ENTRIES = {
    "full": lambda name: True,
    "tool": lambda name: name == "gripper.opening" or name.startswith("tcp."),
}


class SimulationUnstableError(RuntimeError):
    pass


class ToylandEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        task: str = "lift",
        embodiment: str = "panda",
        toy_set: str = "train",
        num_toys: int | None = None,
        cameras=("front",),
        image_size: int = 96,
        control_mode: str = "ee_pose",
        control_hz: float = 20.0,
        physics_dt: float = 0.002,
        arena: dict | None = None,
        render_mode: str | None = None,
        render_camera: str = "front",
        render_size: tuple[int, int] = (256, 256),
        terminate_on_success: bool = True,
        settle_time: float = 2.0,
        factors: dict | None = None,
        shortcut: dict | None = None,
        mask_noise: dict | None = None,
        placement: str = "target_first",
        state: str = "full",
        instruction: str = "text",
        instruction_picture_size: int = 32,
        masks: str = "target",
    ):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode {render_mode!r} is not supported; use 'rgb_array' or None")
        self.embodiment = get_embodiment(embodiment)
        self.toy_set = get_toy_set(toy_set, num_toys)
        self.task = TASKS.get(task)(self.toy_set, placement, instruction)
        self.cameras: tuple[CameraConfig, ...] = parse_cameras(cameras, image_size)
        self.control_cfg = ControlConfig(mode=control_mode, rate_hz=control_hz)
        self.arena = ArenaConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in (arena or {}).items()})
        substeps = 1.0 / (control_hz * physics_dt)
        if abs(substeps - round(substeps)) > 1e-6:
            raise ValueError(f"control_hz={control_hz} must divide the physics rate 1/physics_dt={1 / physics_dt:g}")
        self.substeps, self.physics_dt = int(round(substeps)), physics_dt
        self.render_mode, self.render_camera = render_mode, CameraConfig(render_camera, *render_size)
        self.terminate_on_success, self.settle_steps = terminate_on_success, int(round(settle_time / physics_dt))
        self.controller = make_controller(self.embodiment, self.control_cfg)
        self.factor_levels = check_levels(factors)
        self.shortcut = Shortcut.from_config(shortcut) if shortcut else None
        if masks not in MASK_MODES:
            raise ValueError(f"masks={masks!r}; valid: {', '.join(MASK_MODES)}")
        # objects: what a class-agnostic detector gives a robot, so the instruction has to pick the target
        self.masks = masks
        self.mask_noise = self._mask_noise_config(mask_noise)
        self._mask_generator = None
        self._mask_ids: np.ndarray | None = None  # objects: object index -> its id in the masks this episode
        sizes = [(c.height, c.width) for c in self.cameras] + ([tuple(render_size)] if render_mode else []) + [(8, 8)]
        self._offscreen = (max(s[0] for s in sizes), max(s[1] for s in sizes))
        self.renderers = RendererPool(*self._offscreen)
        # the target alone, for instructions that show it (toyland/sim/instructions.py)
        self.portraits = PortraitRenderer(instruction_picture_size) if instruction != "text" else None
        self._portrait: np.ndarray | None = None
        self.scene: Scene | None = None
        if state not in STATE_ENTRIES:
            raise ValueError(f"state={state!r}; valid: {', '.join(STATE_ENTRIES)}")
        keep = STATE_ENTRIES[state]
        self._state_index = np.array([i for i, n in enumerate(self.controller.state_names) if keep(n)], dtype=np.int64)
        if not len(self._state_index):
            raise ValueError(f"state={state!r}: control mode '{control_mode}' reports no such entries "
                             f"({list(self.controller.state_names)}); use state=full or an end-effector control mode")
        self.state_names = [self.controller.state_names[i] for i in self._state_index]
        self.action_names = self.controller.action_names
        spaces = {"observation.state": gym.spaces.Box(-np.inf, np.inf, (len(self.state_names),), np.float32)}
        for cam in self.cameras:
            if "rgb" in cam.modalities:
                spaces[f"observation.images.{cam.name}"] = gym.spaces.Box(0, 255, (cam.height, cam.width, 3), np.uint8)
            if "depth" in cam.modalities:
                spaces[f"observation.depth.{cam.name}"] = gym.spaces.Box(0, np.inf, (cam.height, cam.width, 1), np.float32)
            if "segmentation" in cam.modalities:
                spaces[f"observation.segmentation.{cam.name}"] = gym.spaces.Box(
                    0, np.iinfo(np.int32).max, (cam.height, cam.width), np.int32
                )
            if "mask" in cam.modalities:
                top = 1 if masks == "target" else MAX_MASK_ID
                spaces[f"observation.masks.{cam.name}"] = gym.spaces.Box(0, top, (cam.height, cam.width), np.uint8)
        if self.portraits is not None:
            size = self.portraits.size
            spaces[INSTRUCTION_PICTURE] = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
        spaces["task"] = gym.spaces.Text(max_length=256, charset=INSTRUCTION_CHARSET)
        self.observation_space = gym.spaces.Dict(spaces)
        self.action_space = gym.spaces.Box(self.controller.action_low.astype(np.float32),
                                           self.controller.action_high.astype(np.float32), dtype=np.float32)
        self._last_eval: dict = {}
        self._episode_seed, self._factor_values = None, {}

    def _mask_noise_config(self, entry: dict | None):
        """A detector's errors on the target masks (toyland/augment/mask_noise.py), or None."""
        if not entry:
            return None
        from toyland.augment.base import parse_config
        from toyland.augment.mask_noise import MaskNoiseConfig

        if self.masks != "target":
            raise ValueError("env mask_noise models a detector's errors on the target's mask; with masks=objects "
                             "there is none: set masks=target or drop mask_noise")
        if not any("mask" in cam.modalities for cam in self.cameras):
            raise ValueError("env mask_noise acts on target masks, and no camera has the mask modality: "
                             "add it, e.g. cameras=[front:rgb+mask]")
        return parse_config(MaskNoiseConfig, dict(entry), "env mask_noise")

    # ------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        episode_seed = int(self.np_random.integers(2**62))
        rng = np.random.default_rng(episode_seed)
        task = self.task
        task.begin_episode()
        levels = dict(self.factor_levels)
        if self.shortcut is not None:  # the instructed target and the nuisance cue, correlated or not
            target_slot, cue_slot, cue_levels = self.shortcut.draw(factor_rng(episode_seed, "shortcut"))
            task.set_slots(self.shortcut.colours, target_slot)
            levels.update(cue_levels)
        factor_values = {name: FACTORS.get(name).sample(level, factor_rng(episode_seed, name)) for name, level in levels.items()}
        self._episode_seed, self._factor_values = episode_seed, factor_values
        if self.mask_noise is not None:  # its own stream: the scene is the same with and without the noise
            import torch

            self._mask_generator = torch.Generator().manual_seed(int(factor_rng(episode_seed, "mask_noise").integers(2**62)))
        for name, values in factor_values.items():
            FACTORS.get(name).edit_task(task, values)
        target_seed = options.pop("toy_seed", None)  # evaluate one particular toy of the set
        if options:
            raise ValueError(f"unknown reset options {sorted(options)}; valid: ['toy_seed']")
        task.sample_objects(rng, target_seed)
        task.cue_index = cue_slot if self.shortcut is not None else None
        self.scene = compile_scene(self.embodiment, self.arena, self._offscreen, task.add_objects)
        self.renderers.set_model(self.scene.model)
        m, d = self.scene.model, self.scene.data
        if self.masks == "objects":  # its own stream, like the mask noise; ids in a shuffled order so that
            # no id marks the target (which is object 0 unless a shortcut scenario moves it)
            n = len(self.scene.object_names)
            if n > MAX_MASK_ID:
                raise ValueError(f"masks=objects labels at most {MAX_MASK_ID} objects; this scene has {n}")
            self._mask_ids = 1 + factor_rng(episode_seed, "mask_ids").permutation(n).astype(np.uint8)
        self.start_qpos = self.embodiment.home_qpos()
        task.initialize_episode(self.scene, rng)
        for name, values in factor_values.items():
            FACTORS.get(name).apply(self, values)
        if any(FACTORS.get(name).changes_inertia for name in factor_values):
            # Constants derived from masses at compile time go stale when masses change in place, and
            # stale ones made contacts blow up (measured: 16 of 20 episodes at mass x1.8 or x0.2).
            mujoco.mj_setConst(m, mujoco.MjData(m))
        d.qpos[self.scene.arm_qpos] = self.start_qpos
        d.qpos[self.scene.finger_qpos] = FINGER_TRAVEL
        self.controller.reset(self.scene, self.start_qpos)
        mujoco.mj_forward(m, d)
        if self.settle_steps:
            self._settle()
        self._check_stable()
        if self.portraits is not None:  # in the episode's colours: after the appearance factors
            t = task.target_index
            self._portrait = self.portraits.render(task.toys[t], m.geom_rgba[self.scene.object_geoms[t]])
        self._last_eval = task.evaluate(self.scene)
        info = {
            "episode_seed": episode_seed,
            "is_success": False,
            **task.episode_info(),
            "factors": factor_values,
            "segmentation_labels": self.scene.segmentation_labels(),
        }
        if self.shortcut is not None:
            info["cue_index"] = cue_slot
        return self._observation(), info

    def step(self, action):
        if self.scene is None:
            raise RuntimeError("call reset() before step()")
        action = validate_action(action, self.action_space.low, self.action_space.high)
        self.controller.apply(action)
        mujoco.mj_step(self.scene.model, self.scene.data, nstep=self.substeps)
        self._check_stable()
        result = self.task.evaluate(self.scene)
        self._last_eval = result
        success = bool(result["success"])
        info = {"is_success": success, **result}
        return self._observation(), float(success), success and self.terminate_on_success, False, info

    def _settle(self) -> None:
        """Let the objects fall into a resting pose, then slide each back to where the task placed it.

        A toy dropped in a random orientation tumbles and rolls, for up to ~1 s and 14 cm; a fixed 0.3 s
        settle left it moving when the episode began, where the expert's grasp, planned on the first
        frame, missed it. Resting orientations keep their contacts on the flat table when moved, so the
        spawn distribution stays the task's.
        """
        m, d, scene = self.scene.model, self.scene.data, self.scene
        joints = np.array([m.body_jntadr[b] for b in scene.object_bodies if m.body_jntnum[b]], dtype=int)
        qpos, dofs = m.jnt_qposadr[joints], m.jnt_dofadr[joints]  # free joints: xyz + quat, linear + angular
        placed = d.qpos[qpos[:, None] + [0, 1]].copy()
        self._step_until_rest(self.settle_steps, dofs)
        d.qpos[qpos[:, None] + [0, 1]] = placed
        d.qvel[:] = 0.0
        mujoco.mj_forward(m, d)
        self._step_until_rest(self.settle_steps // 2, dofs)

    def _step_until_rest(self, max_steps: int, dofs: np.ndarray) -> None:
        m, d = self.scene.model, self.scene.data
        chunk, steps = min(self.substeps, max_steps), 0
        while steps < max_steps:
            mujoco.mj_step(m, d, nstep=chunk)
            steps += chunk
            vel = d.qvel[dofs[:, None] + np.arange(6)]
            if np.abs(vel[:, :3]).max(initial=0) < REST_SPEED and np.abs(vel[:, 3:]).max(initial=0) < REST_SPIN:
                return

    def _check_stable(self) -> None:
        """MuJoCo answers a diverging simulation by silently resetting it; that must not pass as an episode."""
        warnings = self.scene.data.warning.number  # one array read: this runs every step
        if warnings[list(UNSTABLE)].any():
            raise SimulationUnstableError(
                f"the simulation diverged (MuJoCo warnings {[mujoco.mjtWarning(w).name for w in UNSTABLE if warnings[w]]}) "
                f"in the episode of seed {self._episode_seed} with factors {self._factor_values}; "
                "lower the physics factor levels or physics_dt"
            )

    def _observation(self) -> dict:
        scene = self.scene
        d = scene.data
        obs = {"observation.state": self.controller.state(scene)[self._state_index].astype(np.float32)}
        for cam in self.cameras:
            name = scene.camera_name(cam.name)
            if "rgb" in cam.modalities:
                obs[f"observation.images.{cam.name}"] = self.renderers.render(d, name, cam.height, cam.width).copy()
            if "depth" in cam.modalities:
                depth = self.renderers.render(d, name, cam.height, cam.width, "depth")
                obs[f"observation.depth.{cam.name}"] = depth[..., None].astype(np.float32)
            if "segmentation" in cam.modalities or "mask" in cam.modalities:
                seg = self.renderers.render(d, name, cam.height, cam.width, "segmentation")
                ids = np.where(seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM), seg[..., 0], -1)
                labels = scene.geom_labels[ids]
                if "segmentation" in cam.modalities:
                    obs[f"observation.segmentation.{cam.name}"] = labels
                if "mask" in cam.modalities and self.masks == "objects":
                    lookup = np.zeros(FIRST_OBJECT_LABEL + len(self._mask_ids), np.uint8)  # label -> id, 0 not an object
                    lookup[FIRST_OBJECT_LABEL:] = self._mask_ids
                    obs[f"observation.masks.{cam.name}"] = lookup[labels]
                elif "mask" in cam.modalities:
                    target = FIRST_OBJECT_LABEL + self.task.target_index
                    mask = (labels == target).astype(np.uint8)
                    if self.mask_noise is not None:
                        mask = self._detected(mask, labels)
                    obs[f"observation.masks.{cam.name}"] = mask
        if self._portrait is not None:
            obs[INSTRUCTION_PICTURE] = self._portrait.copy()
        obs["task"] = self.task.instruction
        return obs

    def object_mask_id(self, index: int) -> int:
        """With masks=objects, object ``index``'s id in this episode's masks."""
        if self._mask_ids is None:
            raise RuntimeError("mask ids need masks=objects and a reset")
        return int(self._mask_ids[index])

    @property
    def target_mask_id(self) -> int:
        """With masks=objects, the instructed target's id in this episode's masks."""
        return self.object_mask_id(self.task.target_index)

    def _detected(self, mask: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """The mask as the configured detector would give it, drawn from the episode's noise stream."""
        import torch

        from toyland.augment.mask_noise import noisy_masks

        out = noisy_masks(torch.from_numpy(mask)[None], torch.from_numpy(labels.astype(np.int64))[None], self.mask_noise,
                          self._mask_generator)
        return out[0].numpy()

    def render(self):
        if self.render_mode != "rgb_array" or self.scene is None:
            return None
        cam = self.render_camera
        return self.renderers.render(self.scene.data, self.scene.camera_name(cam.name), cam.height, cam.width).copy()

    def close(self):
        self.renderers.close()
        if self.portraits is not None:
            self.portraits.close()
        super().close()


def env_id(task_class) -> str:
    return f"toyland/{task_class.__name__}-v0"


def register_envs() -> None:
    """Registers ``toyland/<Task>-v0`` for every task, truncating at the task's ``max_episode_steps``."""
    for name in TASKS.names():
        cls = TASKS.get(name)
        if env_id(cls) not in gym.registry:
            gym.register(
                id=env_id(cls),
                entry_point="toyland.sim.env:ToylandEnv",
                vector_entry_point="toyland.sim.vector:make_vector_env",
                kwargs={"task": name},
                max_episode_steps=cls.max_episode_steps,
            )


__all__ = ["ToylandEnv", "register_envs", "env_id"]
