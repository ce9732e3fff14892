"""How precise must a grasp be? The scripted expert's success when its planned grasp is moved.

For each offset the Lift expert plans as usual, then its grasp is moved sideways by that many mm
(a random direction per episode) and its jaw turned by a random yaw (or not at all with
--planned-yaw), and it gets one attempt (no re-plan after a miss). Seeds from 1,000,000, as the
evaluations use; episodes through the one episode runner. What a policy's grasp error costs,
separated from everything else it does.

    .venv/bin/python scripts/grasp_tolerance.py                    # 0, 10, 20, 30 mm, random yaw
    .venv/bin/python scripts/grasp_tolerance.py --offsets 0 --planned-yaw --episodes 100
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from toyland.eval.actors import ExpertActor


class MovedGrasp(ExpertActor):
    """The expert with its first grasp moved by ``offset_mm`` and turned, and no second attempt."""

    def __init__(self, offset_mm: float, random_yaw: bool, rng: np.random.Generator):
        self.offset, self.random_yaw, self.rng = offset_mm / 1000.0, random_yaw, rng

    def reset(self, env, seed):
        from toyland.sim import geometry as geo

        super().reset(env, seed)
        expert = self.expert
        turn = np.deg2rad(self.rng.uniform(-90.0, 90.0)) if self.random_yaw else 0.0
        angle = self.rng.uniform(0.0, 2 * np.pi)
        shift = self.offset * np.array([np.cos(angle), np.sin(angle), 0.0])
        expert.grasp = dataclasses.replace(expert.grasp, yaw=expert.grasp.yaw + turn, pos=expert.grasp.pos + shift)
        current = np.arctan2(expert.goal_rot[1, 1], expert.goal_rot[0, 1])
        expert.goal_rot = geo.top_down_mat(current + turn)
        expert.attempts = 3  # its last attempt: a miss is not re-planned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offsets", type=float, nargs="+", default=[0.0, 10.0, 20.0, 30.0], help="mm sideways")
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument("--planned-yaw", action="store_true", help="keep the planned jaw yaw instead of a random one")
    args = parser.parse_args()
    from toyland.eval.harness import EVAL_SEED_START
    from toyland.eval.runner import run_episode
    from toyland.sim import make_env

    env = make_env({"task": "lift", "image_size": 32, "cameras": ["front"]})
    yaw = "planned yaw" if args.planned_yaw else "random yaw"
    for offset in args.offsets:
        actor = MovedGrasp(offset, not args.planned_yaw, np.random.default_rng(0))  # the same moves for every offset
        n = sum(run_episode(env, actor, EVAL_SEED_START + i)[0]["success"] for i in range(args.episodes))
        print(f"grasp moved {offset:4.0f} mm, {yaw}: {n}/{args.episodes} = {n / args.episodes:.2f}", flush=True)


if __name__ == "__main__":
    main()
