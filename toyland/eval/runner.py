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
    any episode when it cannot act in ``env``."""

    label = ""

    def check(self, env) -> None:
        pass

    def reset(self, env, seed: int) -> None:
        pass

    @abstractmethod
    def act(self, obs) -> np.ndarray:
        """The action for ``obs``."""


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


def run_episode(env, actor: Actor, seed: int, *, cell: str = "id", record: bool = False,
                observe: Callable[[Step], bool | None] | None = None) -> tuple[dict, list[np.ndarray]]:
    """One episode of ``actor`` in ``env`` from reset seed ``seed``: (record, frames). ``record``
    renders a frame after the reset and after every step (the env needs a render mode)."""
    obs, info = env.reset(seed=seed)
    actor.reset(env, seed)
    space = env.unwrapped.action_space
    low, high = space.low, space.high
    frames = [env.render()] if record else []
    success, steps, clipped, step_info = False, 0, 0, {}
    while True:
        action = np.asarray(actor.act(obs), dtype=np.float32)
        if action.shape != space.shape:
            raise ValueError(f"{actor.label or type(actor).__name__} returned an action of shape {action.shape}; "
                             f"the env takes {space.shape}")
        executed = np.clip(action, low, high)
        clipped += bool(np.any(executed != action))
        next_obs, _, terminated, truncated, step_info = env.step(executed)
        success = success or bool(step_info["is_success"])
        if record:
            frames.append(env.render())
        stop = observe(Step(steps, obs, action, executed, step_info, terminated or truncated)) if observe else False
        steps += 1
        obs = next_obs
        if terminated or truncated or stop:
            break
    return {
        "cell": cell, "seed": seed, "episode_seed": info["episode_seed"], "success": success, "steps": steps, "clipped_actions": clipped,
        "instruction": info["instruction"], "target_index": info["target_index"], "cue_index": info.get("cue_index"),
        "toy_seeds": [t.get("seed") for t in info["toys"]], "factors": info["factors"],
        "outcome": scalar_outcome(step_info),
    }, frames


def write_video(path: Path, frames: list[np.ndarray], fps: int) -> Path:
    import imageio.v2 as imageio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=8) as writer:
        for frame in frames:
            writer.append_data(frame)
    return path
