"""The policy API every policy implements (lerobot's shape):

- ``forward(batch) -> (loss, metrics)`` on a training batch of observation history and action chunk;
- ``predict_action_chunk(batch) -> [B, H, action_dim]`` in env units, from the current step on
  (H = ``horizon``, or less for a policy whose window also covers past steps: lerobot diffusion's
  holds ``horizon - n_obs_steps + 1``), at least ``n_action_steps``;
- ``select_action(obs)`` for one env's observation or a vector env's batch, through an observation
  history and an action queue per env, refilled every ``n_action_steps``; ``reset()`` at episode
  start, ``reset(env_ids)`` when only some envs of a batch start a new episode.

A policy is built from its config dataclass, the ``PolicyFeatures`` it acts on and the dataset
statistics; ``toyland.policies.checkpoint`` saves and restores all three.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from toyland.policies.features import ACTION, INSTRUCTION_PICTURE, STATE, FeatureMismatch, PolicyFeatures
from toyland.policies.normalize import Normalizer
from toyland.sim.instructions import IMAGE_TOKEN


# per-row strings of a batch or frame, not tensors: the instruction, and the embodiment acting
# (a dataset's robot_type in training; set by the actor from its env when acting)
TEXT_KEYS = ("task", "robot_type")


def check_steps(inference_steps: int, train_timesteps: int) -> None:
    """Denoising steps when acting must be a subset of the training schedule's."""
    if not 1 <= inference_steps <= train_timesteps:
        raise ValueError(f"inference_steps={inference_steps} must lie in [1, train_timesteps={train_timesteps}]")


@dataclass
class PolicyConfig:
    n_obs_steps: int = 2  # observation history (current frame and n_obs_steps - 1 before it)
    horizon: int = 16  # actions predicted per chunk, from the current step on
    n_action_steps: int = 8  # actions executed before predicting again
    use_language: bool = False  # condition on the instruction (frozen MiniLM)
    cameras: tuple | None = None  # camera names to use (None: every camera of the dataset)

    @property
    def needs_masks(self) -> bool:
        """Whether the policy takes the instructed object's mask per camera (object-centric pooling)."""
        return False

    @property
    def needs_depth(self) -> bool:
        """Whether the policy takes each camera's metric depth."""
        return False

    @property
    def reads_instruction_pictures(self) -> bool:
        """Whether the policy reads an instruction's picture of the target ("pick up the <image>")."""
        return False

    @property
    def reads_object_masks(self) -> bool:
        """Whether its masks are maps of every object's id (env masks=objects) rather than the target's."""
        return False

    def validate(self) -> None:
        if not 1 <= self.n_action_steps <= self.horizon:
            raise ValueError(f"n_action_steps={self.n_action_steps} must lie in [1, horizon={self.horizon}]")
        if self.n_obs_steps < 1:
            raise ValueError("n_obs_steps must be at least 1")


class Policy(nn.Module, ABC):
    name: ClassVar[str] = ""
    config_class: ClassVar[type] = PolicyConfig
    normalization: ClassVar[dict] = {STATE: "min_max", ACTION: "min_max"}

    def __init__(self, config: PolicyConfig, features: PolicyFeatures, stats: dict | None):
        super().__init__()
        config.validate()
        self.config, self.features = config, features
        if features.instruction_picture and config.use_language and not config.reads_instruction_pictures:
            raise FeatureMismatch(f"the data's instructions show the target as a picture (\"pick up the "
                                  f"{IMAGE_TOKEN}\"), and the {self.name} policy reads words only: train policy=vla, collect with "
                                  "env.instruction=text, or set policy.use_language=false")
        self.normalizer = Normalizer(features, stats, self.normalization)
        # per env of the batch select_action serves: its observation history (None: at episode
        # start) and the actions left of its chunk; [] until the first call sets the batch size
        self._obs_queues: list[deque | None] = []
        self._action_queues: list[deque] = []
        self._generators: list[torch.Generator | None] = []  # per env, when seeded (see reset)

    # --- what the policy needs from data ------------------------------------------------------
    @property
    def uses_instruction_picture(self) -> bool:
        """The instruction's picture is an input (the data has one and this policy reads it)."""
        config = self.config
        return bool(self.features.instruction_picture) and config.use_language and config.reads_instruction_pictures

    def check_env(self, env) -> None:
        """Raises before any episode if ``env`` cannot feed this policy (its features, then the kind of
        mask: a target-mask policy given every object's ids, or the reverse, would act on the wrong input
        without any error; given the target's mask, an object-mask policy is told the target)."""
        self.features.check_env(env)
        if self.features.masks:
            given = getattr(env.unwrapped, "masks", "target")
            wanted = "objects" if self.config.reads_object_masks else "target"
            if given != wanted:
                raise FeatureMismatch(f"the env's masks are masks={given}, and this policy reads masks={wanted}: "
                                      f"set env.masks={wanted}")

    def delta_timestamps(self) -> dict[str, list[float]]:
        fps, n = self.features.fps, self.config.n_obs_steps
        history = [(i - n + 1) / fps for i in range(n)]
        deltas = {key: history for key in [*self.features.cameras, *self.features.masks, *self.features.depths]}
        if self.uses_instruction_picture:
            deltas[INSTRUCTION_PICTURE] = history
        deltas[STATE] = history
        deltas[ACTION] = [i / fps for i in range(self.config.horizon)]
        return deltas

    # --- training -----------------------------------------------------------------------------
    def fit(self, sampler) -> None:
        """Fits what needs the training data beyond its statistics (the VLA's action bins); the
        trainer calls it once before the first step with the ``BatchSampler``."""

    @abstractmethod
    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """Training loss on a batch of observation history and action chunk, and scalar metrics."""

    # --- acting -------------------------------------------------------------------------------
    @abstractmethod
    def predict_action_chunk(self, batch: dict, generator=None) -> torch.Tensor:
        """Observation history in ``batch`` ([B, T, ...] tensors, ``task`` strings) -> [B, H, A] from the
        current step on (H = horizon, see the module docstring). ``generator``: what samples (one
        torch generator, a list with one per row, or None: the global one); see ``randn_rows``."""

    def reset(self, env_ids=None, seeds=None, num_envs: int | None = None) -> None:
        """Episode start for every env (``None``; the next call may bring another batch size, or
        ``num_envs`` fixes it now) or for the env indices listed: their history and action queue
        restart, the others' continue. ``seeds`` (one per env reset) gives each env its own random
        stream for sampling, so an episode's actions do not depend on which other episodes share
        its batch; without seeds the global torch generator samples."""
        if env_ids is None:
            if seeds is not None and num_envs is not None and len(seeds) != num_envs:
                raise ValueError(f"reset got {len(seeds)} seeds for {num_envs} envs")
            n = len(seeds) if seeds is not None else (num_envs or 0)
            self._obs_queues, self._action_queues = [None] * n, [deque() for _ in range(n)]
            self._generators = [_generator(s) for s in seeds] if seeds is not None else [None] * n
            return
        if seeds is not None and len(seeds) != len(env_ids):
            raise ValueError(f"reset got {len(seeds)} seeds for {len(env_ids)} envs")
        for k, i in enumerate(env_ids):
            if not 0 <= i < len(self._obs_queues):
                raise IndexError(f"reset(env_ids) names env {i}; select_action serves {len(self._obs_queues)} envs")
            self._obs_queues[i], self._action_queues[i] = None, deque()
            if seeds is not None:
                self._generators[i] = _generator(seeds[k])

    def _samples_per_row(self) -> bool:
        """Whether ``predict_action_chunk`` takes a ``generator`` (a policy written before it did
        samples from the global generator)."""
        import inspect

        return "generator" in inspect.signature(self.predict_action_chunk).parameters

    @property
    def batchable(self) -> bool:
        """Whether an episode's actions stay its own when it shares a batch with others: sampling
        from its own stream (or not sampling at all)."""
        return self._samples_per_row()

    @property
    def device(self) -> torch.device:
        return next(iter(self.parameters()), torch.zeros(())).device

    def observation_batch(self, obs: dict) -> dict:
        """Env observations (one, or batched from a vector env) -> tensors with a batch dim."""
        batched = np.asarray(obs["observation.state"]).ndim == 2
        out = {}
        pictures = [*self.features.cameras, *([INSTRUCTION_PICTURE] if self.uses_instruction_picture else [])]
        for key in [*pictures, *self.features.masks, *self.features.depths, STATE]:
            x = torch.as_tensor(np.asarray(obs[key]), device=self.device)
            x = x if batched else x[None]
            if key in self.features.depths:
                x = x[..., 0]  # the env's HxWx1 -> the dataset's HxW
            out[key] = x.permute(0, 3, 1, 2).float().div_(255.0) if key in pictures else x.float()
        size = out[STATE].shape[0]
        task = obs.get("task", "")
        out["task"] = [task] * size if isinstance(task, str) else list(task)  # one instruction may serve the batch
        if len(out["task"]) != size:
            raise ValueError(f"obs['task'] holds {len(out['task'])} instructions for a batch of {size} envs")
        if obs.get("robot_type") is not None:
            robot = obs["robot_type"]
            out["robot_type"] = [robot] * size if isinstance(robot, str) else list(robot)
        return out

    @torch.no_grad()
    def select_action(self, obs: dict, env_ids: list[int] | None = None) -> np.ndarray:
        """The next action for ``obs``: [A] for one env, [B, A] for a vector env's batch. Each env keeps
        its own history and chunk; one prediction serves every env whose chunk has run out.
        ``env_ids``: the envs the batch's rows belong to, when only some of the envs act (the others
        keep their history and queue; ``reset(num_envs=N)`` sets how many there are)."""
        action = self.act(self.observation_batch(obs), env_ids)
        single = np.asarray(obs["observation.state"]).ndim == 1
        return action[0] if single else action

    def act(self, frame: dict, env_ids: list[int] | None = None) -> np.ndarray:
        """``select_action`` on a frame already in tensors (``observation_batch``'s layout: [B, ...]
        per key, images in [0, 1], ``task`` strings): the [B, A] actions."""
        keys = [k for k in frame if k not in TEXT_KEYS]
        texts = [k for k in TEXT_KEYS if k in frame]
        size = len(frame["task"])
        if env_ids is None:
            if not self._obs_queues:
                self._obs_queues, self._action_queues = [None] * size, [deque() for _ in range(size)]
                self._generators = [None] * size
            elif size != len(self._obs_queues):
                raise ValueError(f"select_action got a batch of {size} envs after {len(self._obs_queues)}; "
                                 "call reset() before changing the number of envs")
            env_ids = list(range(size))
        elif len(env_ids) != size or not all(0 <= i < len(self._obs_queues) for i in env_ids):
            raise ValueError(f"select_action got {size} rows for envs {list(env_ids)} of "
                             f"{len(self._obs_queues)}; reset(num_envs=N) sets how many envs there are")
        n = self.config.n_obs_steps
        for row_index, i in enumerate(env_ids):
            row = {k: frame[k][row_index] for k in keys}
            if self._obs_queues[i] is None:  # episode start: the history is the first frame repeated, as in training
                self._obs_queues[i] = deque([row] * n, maxlen=n)
            else:
                self._obs_queues[i].append(row)
        due = [(r, i) for r, i in enumerate(env_ids) if not self._action_queues[i]]
        if due:
            history = {k: torch.stack([torch.stack([f[k] for f in self._obs_queues[i]]) for _, i in due]) for k in keys}
            history.update({k: [frame[k][r] for r, _ in due] for k in texts})
            seeded = [self._generators[i] for _, i in due]
            if any(g is None for g in seeded) and any(g is not None for g in seeded):
                raise ValueError("some envs of this batch were reset with seeds and some without; seed all or none")
            generators = None if seeded[0] is None else seeded
            if generators and self._samples_per_row():
                chunk = self.predict_action_chunk(history, generator=generators)
            else:  # the global generator samples (the actor seeds it at each episode start)
                chunk = self.predict_action_chunk(history)
            if chunk.shape[1] < self.config.n_action_steps:
                raise ValueError(f"policy '{self.name}' predicted {chunk.shape[1]} actions per chunk, fewer than "
                                 f"n_action_steps={self.config.n_action_steps}; lower n_action_steps")
            chunk = chunk[:, : self.config.n_action_steps].cpu().numpy()
            for row, (_, i) in zip(chunk, due):
                self._action_queues[i].extend(row)
        return np.stack([self._action_queues[i].popleft() for i in env_ids])


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def randn_rows(shape: tuple, generator=None, device=None) -> torch.Tensor:
    """Standard normal noise of ``shape``; ``generator``: one torch generator, or a list with one per
    row (drawn on the CPU row by row, so a row's noise does not depend on the batch it is in)."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for {shape[0]} rows")
        return torch.stack([torch.randn(tuple(shape[1:]), generator=g) for g in generator]).to(device)
    return torch.randn(shape, generator=generator, device=device)
