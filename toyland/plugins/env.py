"""toyland's tasks as a lerobot env type: ``lerobot-eval --env.type=toyland --env.task=Lift-v0``.

Registered with lerobot's ``EnvConfig`` when lerobot's CLIs import the ``lerobot_env_toyland``
plugin distribution (plugins/ in this repository). Observations are renamed to what lerobot's
``preprocess_observation`` reads: ``pixels/<camera>`` (uint8 HWC) becomes
``observation.images.<camera>``, ``agent_pos`` becomes ``observation.state``; depth, segmentation
and masks pass through as ``observation.<modality>.<camera>``. The instruction is the env's
``task_description``, success is ``info["is_success"]`` at the step it happens, and episode ``k`` of
``lerobot-eval --seed=S`` is the scene of toyland seed ``S + k``, so ``toyland eval`` with
``seed_start=S`` scores the same episodes (tests/test_lerobot_plugins.py checks both agree). Actions
outside the action space are clipped into it, as toyland's runner does (lerobot sends them raw).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig

PASSED_THROUGH = ("observation.depth.", "observation.segmentation.", "observation.masks.")


def toyland_task(task: str) -> str:
    """A toyland task name from lerobot's ``--env.task``: ``Lift-v0``, ``toyland/Lift-v0`` or ``lift``."""
    from toyland.sim.env import env_id
    from toyland.sim.tasks import TASKS

    by_id = {env_id(TASKS.get(name)).split("/", 1)[1]: name for name in TASKS.names()}
    key = task.split("/", 1)[1] if task.startswith("toyland/") else task
    if key in TASKS.names():
        return key
    if key in by_id:
        return by_id[key]
    raise ValueError(f"--env.task={task!r} is not a toyland task; use one of {sorted(by_id)} (or {TASKS.names()})")


class LeRobotView(gym.ObservationWrapper):
    """A toyland env with lerobot's observation names, its instruction as ``task_description``."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        spaces = env.observation_space.spaces
        self._cameras = [k.removeprefix("observation.images.") for k in spaces if k.startswith("observation.images.")]
        out = {"agent_pos": spaces["observation.state"]}
        if self._cameras:
            out["pixels"] = gym.spaces.Dict({c: spaces[f"observation.images.{c}"] for c in self._cameras})
        for key, space in spaces.items():
            if key.startswith(PASSED_THROUGH):
                out[key.removeprefix("observation.")] = space
        self.observation_space = gym.spaces.Dict(out)
        self.clipped_actions = 0  # steps whose action was clipped into the action space

    def reset(self, *, seed=None, options=None):
        from lerobot.envs.utils import NEW_ROLLOUT_OPTION

        # lerobot's rollout marks a new rollout for its freeze wrapper; toyland's env refuses unknown options
        options = {k: v for k, v in (options or {}).items() if k != NEW_ROLLOUT_OPTION}
        return super().reset(seed=seed, options=options or None)

    def step(self, action):
        # lerobot's rollout sends a policy's raw actions; toyland's env refuses any outside its space, so
        # they are clipped here, as toyland's own runner does, and flagged in the step's info
        action = np.asarray(action, dtype=np.float32)
        sent = np.clip(action, self.action_space.low, self.action_space.high)
        obs, reward, terminated, truncated, info = super().step(sent)
        self.clipped_actions += int(not np.array_equal(sent, action))
        return obs, reward, terminated, truncated, {**info, "clipped_action": not np.array_equal(sent, action)}

    def observation(self, obs: dict) -> dict:
        out = {"agent_pos": obs["observation.state"]}
        if self._cameras:
            out["pixels"] = {c: obs[f"observation.images.{c}"] for c in self._cameras}
        for key, value in obs.items():
            if key.startswith(PASSED_THROUGH):
                out[key.removeprefix("observation.")] = value
        return out

    @property
    def task_description(self) -> str:
        return self.env.unwrapped.task.instruction

    @property
    def task(self) -> str:
        return self.task_description


@EnvConfig.register_subclass("toyland")
@dataclass
class ToylandEnvConfig(EnvConfig):
    """A toyland env (the keys of toyland's configs/env/*.yaml that a policy's inputs depend on)."""

    task: str | None = "Lift-v0"
    fps: int = 20  # toyland's control rate; set control_hz with it
    embodiment: str = "panda"
    toy_set: str = "train"
    cameras: list[str] = field(default_factory=lambda: ["front"])  # toyland camera specs, e.g. front:rgb+depth
    image_size: int = 96
    control_mode: str = "ee_pose"
    max_episode_steps: int | None = None  # null: the task's own
    placement: str = "target_first"
    state: str = "full"  # full | tool (the opening and tool pose only: the same on every embodiment)
    masks: str = "target"  # target | objects (every object's id: a policy trained with det_pool_masks=objects)
    factors: dict[str, str] = field(default_factory=dict)  # factor -> level, e.g. {camera_viewpoint: ood_1}

    def __post_init__(self):
        self.task = toyland_task(self.task or "Lift-v0")
        probe = self._make_one()
        try:
            spaces = probe.observation_space.spaces
            self.features = {"agent_pos": PolicyFeature(FeatureType.STATE, tuple(spaces["agent_pos"].shape)),
                             "action": PolicyFeature(FeatureType.ACTION, tuple(probe.action_space.shape))}
            self.features_map = {"agent_pos": "observation.state", "action": "action"}
            for cam, space in spaces.get("pixels", gym.spaces.Dict({})).spaces.items():
                self.features[f"pixels/{cam}"] = PolicyFeature(FeatureType.VISUAL, tuple(space.shape))
                self.features_map[f"pixels/{cam}"] = f"observation.images.{cam}"
        finally:
            probe.close()

    @property
    def toyland_env(self) -> dict:
        """The toyland env config this lerobot config stands for (``toyland eval``'s ``env``)."""
        cfg = {"task": self.task, "embodiment": self.embodiment, "toy_set": self.toy_set, "cameras": list(self.cameras),
               "image_size": self.image_size, "control_mode": self.control_mode, "control_hz": self.fps,
               "placement": self.placement, "state": self.state, "masks": self.masks,
               "max_episode_steps": self.max_episode_steps}
        if self.factors:
            cfg["factors"] = dict(self.factors)
        return cfg

    @property
    def gym_kwargs(self) -> dict:
        return self.toyland_env

    def _make_one(self) -> gym.Env:
        from toyland.sim import make_env

        # lerobot records its evaluation videos through env.render (rendered only when it asks)
        return LeRobotView(make_env(self.toyland_env, render_mode="rgb_array"))

    def create_envs(self, n_envs: int, use_async_envs: bool = False) -> dict[str, dict[int, gym.vector.VectorEnv]]:
        from lerobot.envs.utils import freeze_after_episode_end

        fns = [freeze_after_episode_end(self._make_one) for _ in range(n_envs)]
        if use_async_envs and n_envs > 1:
            from toyland.sim.vector import WorkerVectorEnv

            # a process per core, each stepping a block of envs per message (gymnasium's async env: one env each)
            vec = WorkerVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        else:
            vec = gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        return {self.type: {0: vec}}

