"""The one episode runner. Every rollout in toyland goes through :func:`run_episode`: ``toyland eval``
and the trainer's evaluations (through ``eval.harness``), ``toyland demo``, data collection and the
diagnostics. One loop means one set of rules for all of them:

- the actor is reset with the episode's seed after the env (a stochastic policy seeds torch there,
  an expert plans on the first frame);
- actions are clipped into the env's action space before they are executed, and the number of
  clipped steps is recorded (an overshooting regression head must not end an evaluation, nor pass
  unnoticed);
- the record of an episode has the same fields wherever it ran, so records from the trainer and
  from ``toyland eval`` compare field by field.

An ``observe(step)`` callback sees every step (the observation acted on, the actor's action, the
executed action, the step's info) and may end the episode early by returning True; collection
records frames through it, the diagnostics measure grasps through it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np


class Actor(ABC):
    """``reset(env, seed)`` at each episode start, ``act(obs) -> action``; ``check(env)`` raises before
    any episode when it cannot act in ``env``.

    Several envs at once (``run_episodes``): ``start(slot, env, seed)`` and ``act_many(observations,
    slots)``. By default each slot acts through its own shallow copy of the actor; a policy overrides
    both to predict for every slot in one batch. ``period``: the steps between the actor's decisions
    (a policy's executed chunk length), which ``run_episodes`` aligns its episode starts to."""

    label = ""
    period = 1
    batchable = True  # can act for several envs at once (run_episodes)

    def check(self, env) -> None:
        pass

    def reset(self, env, seed: int) -> None:
        pass

    @abstractmethod
    def act(self, obs) -> np.ndarray:
        """The action for ``obs``."""

    def prepare(self, slots: int) -> None:
        """Before ``run_episodes`` starts any of its ``slots`` envs."""

    def start(self, slot: int, env, seed: int) -> None:
        import copy

        copies = self.__dict__.setdefault("_slot_actors", {})
        actor = copies.get(slot) or copy.copy(self)
        actor.__dict__.pop("_slot_actors", None)
        actor.reset(env, seed)
        copies[slot] = actor

    def act_many(self, observations: list, slots: list[int]) -> np.ndarray:
        return np.stack([np.asarray(self._slot_actors[s].act(o), dtype=np.float32) for s, o in zip(slots, observations)])


@dataclass
class Step:
    index: int  # 0 for the first action of the episode
    obs: dict  # the observation the actor acted on
    action: np.ndarray  # what the actor returned
    executed: np.ndarray  # what the env executed (clipped into its action space)
    info: dict  # the env's step info
    done: bool  # the env ended the episode at this step (terminated or truncated)


def scalar_outcome(info: dict) -> dict:
    """The step info's scalar diagnostics as plain Python values (``is_success`` is recorded apart)."""
    out = {}
    for key, value in info.items():
        if key == "is_success" or not isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
            continue
        out[key] = bool(value) if isinstance(value, (bool, np.bool_)) else value.item() if hasattr(value, "item") else value
    return out


class Episode:
    """One episode in progress: reset, then ``step(action)`` until it returns True; ``record()``."""

    def __init__(self, env, actor_label: str, seed: int, cell: str = "id", record: bool = False,
                 observe: Callable[[Step], bool | None] | None = None):
        self.env, self.label, self.seed, self.cell, self.observe = env, actor_label, seed, cell, observe
        self.obs, self.info = env.reset(seed=seed)
        space = env.unwrapped.action_space
        self.shape, self.low, self.high = space.shape, space.low, space.high
        self.frames = [env.render()] if record else None
        self.success, self.steps, self.clipped, self.step_info = False, 0, 0, {}

    def step(self, action) -> bool:
        """Executes the actor's action; True when the episode has ended."""
        action = np.asarray(action, dtype=np.float32)
        if action.shape != self.shape:
            raise ValueError(f"{self.label} returned an action of shape {action.shape}; the env takes {self.shape}")
        executed = np.clip(action, self.low, self.high)
        self.clipped += bool(np.any(executed != action))
        next_obs, _, terminated, truncated, self.step_info = self.env.step(executed)
        self.success = self.success or bool(self.step_info["is_success"])
        if self.frames is not None:
            self.frames.append(self.env.render())
        done = terminated or truncated
        stop = self.observe(Step(self.steps, self.obs, action, executed, self.step_info, done)) if self.observe else False
        self.steps += 1
        self.obs = next_obs
        return bool(done or stop)

    def record(self) -> dict:
        info = self.info
        return {
            "cell": self.cell, "seed": self.seed, "episode_seed": info["episode_seed"], "success": self.success,
            "steps": self.steps, "clipped_actions": self.clipped, "instruction": info["instruction"],
            "target_index": info["target_index"], "cue_index": info.get("cue_index"),
            "toy_seeds": [t.get("seed") for t in info["toys"]], "factors": info["factors"],
            "outcome": scalar_outcome(self.step_info),
        }


def run_episode(env, actor: Actor, seed: int, *, cell: str = "id", record: bool = False,
                observe: Callable[[Step], bool | None] | None = None) -> tuple[dict, list[np.ndarray]]:
    """One episode of ``actor`` in ``env`` from reset seed ``seed``: (record, frames). ``record``
    renders a frame after the reset and after every step (the env needs a render mode)."""
    episode = Episode(env, actor.label or type(actor).__name__, seed, cell, record, observe)
    actor.reset(env, seed)
    while not episode.step(actor.act(episode.obs)):
        pass
    return episode.record(), episode.frames or []


def run_episodes(env_for: Callable[[str, int], object], actor: Actor, jobs: list[tuple[str, int]],
                 slots: int) -> list[dict]:
    """Episodes ``jobs`` ((cell, seed) pairs) on ``slots`` envs stepped in lockstep, the actor acting
    for all of them at once (a policy: one batched prediction per chunk); records in ``jobs``' order.

    ``env_for(cell, slot)`` gives slot ``slot``'s env for a cell. A slot whose episode has ended
    takes the next job at the next multiple of the actor's ``period`` (a policy's chunk length),
    so every running episode needs its next chunk on the same step and one call serves them all.
    Which episodes share a batch follows from ``jobs`` and ``slots`` alone."""
    from collections import deque

    queue, running, records = deque(enumerate(jobs)), {}, [None] * len(jobs)
    period, tick = max(1, int(actor.period)), 0
    label = actor.label or type(actor).__name__
    actor.prepare(slots)
    while queue or running:
        if tick % period == 0:
            for slot in range(slots):
                if slot not in running and queue:
                    index, (cell, seed) = queue.popleft()
                    env = env_for(cell, slot)
                    running[slot] = (index, Episode(env, label, seed, cell))
                    actor.start(slot, env, seed)
        if not running:  # every slot waits for the next start: nothing to step until then
            tick += period - tick % period
            continue
        acting = sorted(running)
        actions = actor.act_many([running[s][1].obs for s in acting], acting)
        for slot, action in zip(acting, actions):
            index, episode = running[slot]
            if episode.step(action):
                records[index] = episode.record()
                del running[slot]
        tick += 1
    return records


def write_video(path: Path, frames: list[np.ndarray], fps: int) -> Path:
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=8) as writer:
        for frame in frames:
            writer.append_data(frame)
    return path
