"""How precise must a grasp be? The scripted expert's success when its planned grasp is moved.

For each offset the Lift expert plans as usual, then its grasp is moved sideways by that many mm
(a random direction per episode) and its jaw turned by a random yaw (or not at all with
--planned-yaw), and it gets one attempt (no re-plan after a miss). Seeds from 1,000,000, as the
evaluations use. What a policy's grasp error costs, separated from everything else it does.

    .venv/bin/python benchmarks/grasp_tolerance.py                    # 0, 10, 20, 30 mm, random yaw
    .venv/bin/python benchmarks/grasp_tolerance.py --offsets 0 --planned-yaw --episodes 100
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np


def success_rate(offset_mm: float, episodes: int, random_yaw: bool, env, make_expert, geo) -> int:
    rng = np.random.default_rng(0)  # the same directions and turns for every offset
    successes = 0
    for i in range(episodes):
        env.reset(seed=1_000_000 + i)
        expert = make_expert(env)
        expert.reset()
        turn = np.deg2rad(rng.uniform(-90.0, 90.0)) if random_yaw else 0.0
        angle = rng.uniform(0.0, 2 * np.pi)
        shift = offset_mm / 1000.0 * np.array([np.cos(angle), np.sin(angle), 0.0])
        expert.grasp = dataclasses.replace(expert.grasp, yaw=expert.grasp.yaw + turn, pos=expert.grasp.pos + shift)
        current = np.arctan2(expert.goal_rot[1, 1], expert.goal_rot[0, 1])
        expert.goal_rot = geo.top_down_mat(current + turn)
        expert.attempts = 3  # its last attempt: a miss is not re-planned
        while True:
            _, _, terminated, truncated, info = env.step(expert.act())
            if terminated or truncated:
                break
        successes += bool(info["is_success"])
    return successes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offsets", type=float, nargs="+", default=[0.0, 10.0, 20.0, 30.0], help="mm sideways")
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument("--planned-yaw", action="store_true", help="keep the planned jaw yaw instead of a random one")
    args = parser.parse_args()
    from toyland.sim import geometry as geo
    from toyland.sim import make_env
    from toyland.sim.experts import make_expert

    env = make_env({"task": "lift", "image_size": 32, "cameras": ["front"]})
    yaw = "planned yaw" if args.planned_yaw else "random yaw"
    for offset in args.offsets:
        n = success_rate(offset, args.episodes, not args.planned_yaw, env, make_expert, geo)
        print(f"grasp moved {offset:4.0f} mm, {yaw}: {n}/{args.episodes} = {n / args.episodes:.2f}", flush=True)


if __name__ == "__main__":
    main()
