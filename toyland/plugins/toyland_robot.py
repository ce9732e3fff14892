"""A toyland env behind lerobot's ``Robot`` API (``--robot.type=toyland``): the driver interface a real
arm implements (``connect``, ``get_observation``, ``send_action``, ``disconnect``), so that
``lerobot-rollout`` can run a policy end to end with no hardware, through the same code path as on a
robot.

lerobot's rollout routes only scalar features named ``<name>.pos`` (or ``.vel``) to a policy's state
and from its action, in the order the robot lists them; every entry of toyland's state and action
vector is therefore exposed as ``<name>.pos`` (``shoulder_pan.pos`` stays as it is, ``tcp.x`` becomes
``tcp.x.pos``), so the vector a policy sees is the one toyland's datasets record. Cameras are
``(height, width, 3)`` images named as the env's cameras.

Actions outside the robot's limits (toyland's normalized [-1, 1]) are clipped to them before they
are sent and counted in ``clipped_actions``. Latency is kept per control step: ``decide_seconds``
(from an observation to the action sent after it: the policy and lerobot's pipelines),
``step_seconds`` (the simulated arm's step) and ``loop_seconds`` (from one action to the next, paced
by lerobot's fps), written to ``report_path`` at disconnect.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from lerobot.robots.robot import Robot

from toyland.plugins.config_toyland_robot import ToylandRobotConfig

SUFFIX = ".pos"
MASK_SUFFIX = "_mask"


def feature_name(name: str) -> str:
    """A toyland state or action entry -> the scalar feature lerobot's rollout routes."""
    return name if name.endswith((".pos", ".vel")) else name + SUFFIX


class ToylandRobot(Robot):
    config_class = ToylandRobotConfig
    name = "toyland"

    def __init__(self, config: ToylandRobotConfig):
        super().__init__(config)
        from toyland.sim import make_env

        self.config = config
        self.env = None
        probe = make_env(config.toyland_env())  # the feature names, without connecting
        try:
            base = probe.unwrapped
            self._state_names, self._action_names = list(base.state_names), list(base.action_names)
            spaces = base.observation_space.spaces
            self._images = {k.removeprefix("observation.images."): tuple(s.shape)
                            for k, s in spaces.items() if k.startswith("observation.images.")}
            # a camera with the 'mask' modality also gives the target's mask as a one-channel image
            # <camera>_mask (0 or 255), what a detector on a real robot would give
            self._masks = {k.removeprefix("observation.masks.") + MASK_SUFFIX: tuple(s.shape) + (1,)
                           for k, s in spaces.items() if k.startswith("observation.masks.")}
        finally:
            probe.close()
        self._obs: dict | None = None
        self.episodes, self.clipped_actions, self.successes = 0, 0, 0
        self.finished: list[dict] = []  # per finished episode: its seed, success and steps
        self._episode_steps = 0
        self.step_seconds: list[float] = []  # the simulated arm's own step
        self.loop_seconds: list[float] = []  # from one action to the next, all of the control loop
        self.decide_seconds: list[float] = []  # from an observation to the action sent after it
        self._observed_at, self._stay_logged = None, False
        self._next_seed = config.seed
        self._last_step = None

    @property
    def observation_features(self) -> dict:
        return {**{feature_name(n): float for n in self._state_names}, **self._images, **self._masks}

    @property
    def action_features(self) -> dict:
        return {feature_name(n): float for n in self._action_names}

    @property
    def is_connected(self) -> bool:
        return self.env is not None

    @property
    def is_calibrated(self) -> bool:
        return True

    def calibrate(self) -> None:
        pass

    def configure(self) -> None:
        pass

    def connect(self, calibrate: bool = True) -> None:
        if self.env is not None:
            raise RuntimeError("the toyland robot is already connected")
        from toyland.sim import make_env

        self.env = make_env(self.config.toyland_env())
        self.reset()

    def reset(self) -> None:
        """A new episode: the next seed's scene."""
        self._obs, _ = self.env.reset(seed=self._next_seed)
        self._next_seed += 1
        self.episodes += 1
        self._episode_steps = 0

    def get_observation(self) -> dict:
        if self.env is None:
            raise ConnectionError("the toyland robot is not connected; call connect() first")
        self._observed_at = time.perf_counter()
        state = self._obs["observation.state"]
        out = {feature_name(n): float(v) for n, v in zip(self._state_names, state)}
        for cam in self._images:
            out[cam] = self._obs[f"observation.images.{cam}"]
        # a target mask as 0 or 255, like a binary image; object ids as they are (lerobot's /255 is undone
        # by the toyland policy adapter, and 255 x an id would overflow)
        scale = np.uint8(255 if self.config.masks == "target" else 1)
        for name in self._masks:
            out[name] = self._obs["observation.masks." + name.removesuffix(MASK_SUFFIX)][..., None] * scale
        return out

    def send_action(self, action: dict) -> dict:
        """Steps the env with ``action`` (one float per ``action_features`` key), clipped to the limits;
        returns the action sent. A finished episode (success or time limit) starts the next scene."""
        if self.env is None:
            raise ConnectionError("the toyland robot is not connected; call connect() first")
        keys = list(self.action_features)
        if set(action) == {feature_name(n) for n in self._state_names} and set(action) != set(keys):
            # lerobot's rollout asks an arm back to its start pose at shutdown by sending the observed state
            if not self._stay_logged:
                logging.getLogger(__name__).info("the simulated arm stays where it is (its next connect starts a new scene)")
                self._stay_logged = True
            return {}
        missing = [k for k in keys if k not in action]
        if missing:
            raise KeyError(f"action lacks {missing}: the toyland robot ({self.config.control_mode} control) takes {keys}")
        raw = np.array([float(action[k]) for k in keys], dtype=np.float32)
        low, high = self.env.action_space.low, self.env.action_space.high
        sent = np.clip(raw, low, high)
        if not np.array_equal(sent, raw):
            self.clipped_actions += 1
        start = time.perf_counter()
        if self._observed_at is not None:  # observation to action: the policy and lerobot's pipelines
            self.decide_seconds.append(start - self._observed_at)
            self._observed_at = None
        if self._last_step is not None:  # the whole control loop since the last action: observation, policy, step
            self.loop_seconds.append(start - self._last_step)
        self._obs, _, terminated, truncated, info = self.env.step(sent)
        self._episode_steps += 1
        self.step_seconds.append(time.perf_counter() - start)
        self._last_step = time.perf_counter()
        if terminated or truncated:
            self.successes += int(bool(info.get("is_success")))
            self.finished.append({"seed": self._next_seed - 1, "success": bool(info.get("is_success")),
                                  "steps": self._episode_steps})
            self.reset()
        return dict(zip(keys, sent.tolist()))

    def report(self) -> dict:
        """What the robot did since it was made: steps, episodes, successes, clipped actions, step latency."""
        return {"steps": len(self.step_seconds), "episodes": self.episodes, "successes": self.successes,
                "clipped_actions": self.clipped_actions, "step_seconds": _summary(self.step_seconds),
                "decide_seconds": _summary(self.decide_seconds), "loop_seconds": _summary(self.loop_seconds),
                "control_period_s": 1.0 / self.config.control_hz, "finished_episodes": self.finished}

    def disconnect(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None
            if self.config.report_path:
                from toyland.files import write_json_atomic

                write_json_atomic(self.config.report_path, self.report())


def _summary(seconds: list[float]) -> dict | None:
    if not seconds:
        return None
    x = np.asarray(seconds)
    return {"mean": float(x.mean()), "p50": float(np.percentile(x, 50)), "p95": float(np.percentile(x, 95)),
            "max": float(x.max()), "n": int(x.size)}
