"""Episode rollouts shared by the demo, evaluation and data collection."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    steps: int
    toy_seeds: list
    outcome: dict = field(default_factory=dict)  # the last step's scalar diagnostics (cue_success, ...)
    frames: list = field(default_factory=list, repr=False)


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def run_episode(env, act: Callable, seed: int, reset_hook: Callable | None = None, record: bool = False) -> EpisodeResult:
    """One episode; ``act(obs) -> action``; ``reset_hook()`` runs after env.reset (experts re-plan there)."""
    obs, info = env.reset(seed=seed)
    if reset_hook is not None:
        reset_hook()
    frames = [env.render()] if record else []
    steps, success = 0, False
    while True:
        obs, _, terminated, truncated, info = env.step(act(obs))
        steps += 1
        success = success or bool(info.get("is_success", False))
        if record:
            frames.append(env.render())
        if terminated or truncated:
            break
    toy_seeds = [t.get("seed") for t in env.unwrapped.task.episode_info().get("toys", [])]
    outcome = {k: v for k, v in info.items() if isinstance(v, (bool, int, float, np.bool_)) and k != "is_success"}
    return EpisodeResult(seed=seed, success=success, steps=steps, toy_seeds=toy_seeds, outcome=outcome, frames=frames)


def write_video(path: Path, frames: list[np.ndarray], fps: int) -> Path:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(path, fps=fps, codec="libx264", quality=7, macro_block_size=8) as writer:
        for frame in frames:
            writer.append_data(frame)
    return path
