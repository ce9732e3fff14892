"""Env throughput against the raw MuJoCo limit on the same compiled models, and vector envs.

    .venv/bin/python benchmarks/env_throughput.py [--episodes 10] [--image-size 96]

For each seeded episode (a new toy, so a new compiled model) the env runs 100 control steps of
random end-effector actions. The limit then replays that episode on the same compiled model from
the same initial state with nothing but MuJoCo: the recorded actuator targets, ``mj_step`` for the
physics substeps of one control step and one ``mujoco.Renderer`` render of the same camera. The
ratio env/limit is what toyland's differential IK, success evaluation, observation assembly and
gymnasium wrappers cost. Reset (toy generation, scene compilation) is reported on its own.
"""

from __future__ import annotations

import toyland  # noqa: F401, I001  (first: picks the headless GL backend before mujoco loads)

import argparse
import time

import gymnasium as gym
import mujoco
import numpy as np

from toyland.sim import make_env
from toyland.sim.env import env_id
from toyland.sim.tasks import TASKS

STEPS = 100


def env_and_limit(size: int, episodes: int) -> dict:
    env = make_env(cameras=["front"], image_size=size, terminate_on_success=False, max_episode_steps=STEPS)
    u = env.unwrapped
    rng = np.random.default_rng(0)
    env_time = limit_time = physics_time = reset_time = 0.0
    for ep in range(episodes):
        t0 = time.perf_counter()
        env.reset(seed=ep)
        reset_time += time.perf_counter() - t0
        m = u.scene.model
        start = mujoco.MjData(m)
        mujoco.mj_copyData(start, m, u.scene.data)
        ctrls = []
        for a in rng.uniform(-0.5, 0.5, (STEPS, 7)).astype(np.float32):
            t0 = time.perf_counter()
            env.step(a)
            env_time += time.perf_counter() - t0
            ctrls.append(u.scene.data.ctrl.copy())
        # the limit: same model, same start, same actuator targets, no toyland
        d = start
        renderer = mujoco.Renderer(m, size, size)
        for ctrl in ctrls:
            t0 = time.perf_counter()
            d.ctrl[:] = ctrl
            mujoco.mj_step(m, d, nstep=u.substeps)
            t1 = time.perf_counter()
            renderer.update_scene(d, camera="front")
            renderer.render()
            limit_time += time.perf_counter() - t0
            physics_time += t1 - t0
        renderer.close()
    env.close()
    n = episodes * STEPS
    return {
        "substeps": u.substeps,
        "env_sps": n / env_time,
        "limit_sps": n / limit_time,
        "physics_ms": physics_time / n * 1e3,
        "render_ms": (limit_time - physics_time) / n * 1e3,
        "env_ms": env_time / n * 1e3,
        "reset_ms": reset_time / episodes * 1e3,
    }


def reset_costs(size: int, episodes: int) -> dict:
    """Milliseconds per Language Lift reset, interleaved seed by seed: the render context kept across
    models of the same textures and meshes (toyland's way), a new one made every reset (as before),
    and with the instruction's picture of the target rendered too (env.instruction=interleaved)."""
    envs = {"kept": make_env(task="language_lift", cameras=["front"], image_size=size),
            "new": make_env(task="language_lift", cameras=["front"], image_size=size),
            "picture": make_env(task="language_lift", cameras=["front"], image_size=size, instruction="interleaved")}
    total = dict.fromkeys(envs, 0.0)
    for env in envs.values():
        env.reset(seed=10_000)  # GL contexts made
    for ep in range(episodes):
        for name, env in envs.items():
            if name == "new":
                env.unwrapped.renderers._release()
            t0 = time.perf_counter()
            env.reset(seed=ep)
            total[name] += time.perf_counter() - t0
    for env in envs.values():
        env.close()
    return {name: t / episodes * 1e3 for name, t in total.items()}


def vector_rate(mode: str, size: int, steps: int) -> tuple[float, float | None]:
    """Steps/s of a 2-env vector env, and (async) the share of the wall time its workers computed."""
    import psutil

    envs = gym.make_vec(
        env_id(TASKS.get("lift")), num_envs=2, vectorization_mode=mode,
        cameras=["front"], image_size=size, terminate_on_success=False,
    )
    envs.reset(seed=[0, 1])
    actions = np.random.default_rng(0).uniform(-0.5, 0.5, (steps, 2, 7)).astype(np.float32)
    envs.step(actions[0])  # warm-up: workers started, renderers bound
    workers = psutil.Process().children(recursive=True) if mode == "async" else []
    cpu = lambda: sum(sum(p.cpu_times()[:2]) for p in workers)
    cpu0, start = cpu(), time.perf_counter()
    for a in actions[1:]:
        envs.step(a)  # autoreset: episode ends (and recompiles) are included
    wall = time.perf_counter() - start
    busy = (cpu() - cpu0) / (2 * wall) if workers else None
    envs.close()
    return 2 * (steps - 1) / wall, busy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=96)
    args = parser.parse_args()
    size = args.image_size

    r = env_and_limit(size, args.episodes)
    resets = reset_costs(size, max(args.episodes, 20))
    sync_sps, _ = vector_rate("sync", size, 500)
    async_sps, busy = vector_rate("async", size, 500)
    n = args.episodes * STEPS
    print(f"Lift, panda, ee_delta at 20 Hz ({r['substeps']} physics substeps), one {size}x{size} front camera,"
          f" {n} steps over {args.episodes} toys")
    print(f"  raw limit (mj_step x{r['substeps']} {r['physics_ms']:.3f} ms + render {r['render_ms']:.3f} ms)"
          f" {r['limit_sps']:8.1f} steps/s")
    print(f"  toyland env.step ({r['env_ms']:.3f} ms)                          {r['env_sps']:8.1f} steps/s"
          f"   ratio {r['env_sps'] / r['limit_sps']:.2f} of the limit (goal >= 0.9, issue 30)")
    print(f"  env.reset (new toy, compiled scene, settling): {r['reset_ms']:.1f} ms")
    print(f"  Language Lift reset: render context kept {resets['kept']:.1f} ms, a new one each reset "
          f"{resets['new']:.1f} ms (kept/new {resets['kept'] / resets['new']:.2f}); with the instruction's picture "
          f"{resets['picture']:.1f} ms")
    print(f"  vector env, 2 workers, resets included: sync {sync_sps:.1f} steps/s, async {async_sps:.1f} steps/s"
          f" (async/sync {async_sps / sync_sps:.2f}, goal >= 1.7: sync steps both envs in one process, resets included)")
    print(f"  async workers computing {busy:.0%} of the wall time (the rest: waiting on the step's round trip)")


if __name__ == "__main__":
    main()
