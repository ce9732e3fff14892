"""Env throughput against the raw MuJoCo limit on the same compiled model, and vector envs.

    .venv/bin/python benchmarks/env_throughput.py [--steps 1000] [--image-size 96]

The limit is what no wrapper can beat: ``mj_step`` for the physics substeps of one control step plus
one ``mujoco.Renderer`` render of the same camera, timed on the env's own compiled model. The env
step adds differential IK, success evaluation and observation assembly on top.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import mujoco
import numpy as np

import toyland  # noqa: F401  (GL backend before mujoco renders)
from toyland.sim import make_env
from toyland.sim.env import env_id
from toyland.sim.tasks import TASKS


def timed(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def env_rate(size: int, steps: int, seed: int) -> tuple[float, float, "gym.Env"]:
    env = make_env(cameras=["front"], image_size=size, terminate_on_success=False)
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    actions = rng.uniform(-0.3, 0.3, (steps, env.action_space.shape[0])).astype(np.float32)
    step_time = 0.0
    resets, reset_time = 0, 0.0
    for a in actions:
        t0 = time.perf_counter()
        _, _, term, trunc, _ = env.step(a)
        step_time += time.perf_counter() - t0
        if term or trunc:
            t0 = time.perf_counter()
            env.reset()
            reset_time += time.perf_counter() - t0
            resets += 1
    return steps / step_time, reset_time / max(resets, 1), env


def raw_limit(env, size: int, steps: int) -> tuple[float, float, float]:
    u = env.unwrapped
    m = u.scene.model
    d = mujoco.MjData(m)
    d.qpos[:] = u.scene.data.qpos
    d.ctrl[:] = u.scene.data.ctrl
    physics = timed(lambda: mujoco.mj_step(m, d, nstep=u.substeps), steps)
    renderer = mujoco.Renderer(m, size, size)
    render = timed(lambda: (renderer.update_scene(d, camera="front"), renderer.render()), steps)
    renderer.close()
    return 1.0 / (physics + render), physics, render


def vector_rate(mode: str, size: int, steps: int) -> float:
    envs = gym.make_vec(
        env_id(TASKS.get("lift")), num_envs=2, vectorization_mode=mode,
        cameras=["front"], image_size=size, terminate_on_success=False,
    )
    envs.reset(seed=[0, 1])
    rng = np.random.default_rng(0)
    actions = rng.uniform(-0.3, 0.3, (steps, 2, 7)).astype(np.float32)
    envs.step(actions[0])  # warm-up: workers started, renderers bound
    start = time.perf_counter()
    for a in actions[1:]:
        envs.step(a)
    rate = 2 * (steps - 1) / (time.perf_counter() - start)
    envs.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=96)
    args = parser.parse_args()
    size, steps = args.image_size, args.steps

    env_sps, reset_s, env = env_rate(size, steps, seed=0)
    limit_sps, physics_s, render_s = raw_limit(env, size, steps)
    env.close()
    sync_sps = vector_rate("sync", size, steps // 2)
    async_sps = vector_rate("async", size, steps // 2)

    substeps = env.unwrapped.substeps
    print(f"Lift, panda, ee_delta at 20 Hz ({substeps} physics substeps), one {size}x{size} front camera")
    print(f"  raw limit: mj_step x{substeps} {physics_s * 1e3:.3f} ms + render {render_s * 1e3:.3f} ms"
          f" = {limit_sps:8.1f} steps/s")
    print(f"  toyland env.step                              = {env_sps:8.1f} steps/s"
          f"   ratio to limit {env_sps / limit_sps:.2f} (goal >= 0.5)")
    print(f"  env.reset (new toy, recompiled scene): {reset_s * 1e3:.1f} ms")
    print(f"  vector env, 2 workers: sync {sync_sps:8.1f} steps/s, async {async_sps:8.1f} steps/s"
          f"   async/sync {async_sps / sync_sps:.2f}")


if __name__ == "__main__":
    main()
