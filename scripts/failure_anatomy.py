"""How a trained Lift or Language Lift policy fails: per episode, how often the jaw closed, how many
steps it held the instructed toy and how far it raised it, with the failures summarized.

Reads a training run folder (its config.json for the env, its newest checkpoint, the EMA weights)
and rolls the policy out through the one episode runner on the evaluation seeds (from 1,000,000),
one torch thread, exactly as `toyland eval` does.

    .venv/bin/python scripts/failure_anatomy.py outputs/studies/lift/arms/diffusion/seed_0 --episodes 40
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


class Anatomy:
    """An ``observe`` callback for the runner: closes, steps holding the toy, and the toy's rise."""

    def __init__(self, env):
        self.env = env
        self.closes, self.held, self.rise, self.closed = 0, 0, 0.0, False

    def __call__(self, step) -> bool:
        if step.index == 0:  # each reset builds a new scene: bind to this episode's (the toy still at rest)
            self.scene = self.env.unwrapped.scene
            self.body = self.scene.object_bodies[self.env.unwrapped.task.target_index]
            self.start_z = float(self.scene.data.xpos[self.body][2])
        closing = bool(step.executed[-1] > 0)
        self.closes += closing and not self.closed  # a close command after an open one
        self.closed = closing
        self.held += bool(step.info.get("grasped"))
        self.rise = max(self.rise, float(self.scene.data.xpos[self.body][2]) - self.start_z)
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a training run folder (outputs/studies/NAME/arms/ARM/seed_K)")
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--max-steps", type=int, default=None, help="episode limit (default: the run's env)")
    args = parser.parse_args()
    from toyland.eval.actors import PolicyActor
    from toyland.eval.harness import EVAL_SEED_START
    from toyland.eval.runner import run_episode
    from toyland.sim import make_env, resolved_env_config

    if not (args.run / "config.json").is_file():
        raise SystemExit(f"{args.run / 'config.json'} is missing: give a training run folder, e.g. one of "
                         "outputs/studies/lift/arms/diffusion/seed_*")
    torch.set_num_threads(1)
    env_cfg = json.loads((args.run / "config.json").read_text())["env"]
    if args.max_steps:
        env_cfg = {**env_cfg, "max_episode_steps": args.max_steps}
    limit = resolved_env_config(env_cfg)["max_episode_steps"]
    env, actor = make_env(env_cfg), PolicyActor(args.run)
    rows = []
    for i in range(args.episodes):
        seed = EVAL_SEED_START + i
        anatomy = Anatomy(env)
        record, _ = run_episode(env, actor, seed, observe=anatomy)
        rows.append({"seed": seed, "success": record["success"], "closes": anatomy.closes, "held_steps": anatomy.held,
                     "max_rise_mm": round(1000 * anatomy.rise)})
    failed = [r for r in rows if not r["success"]]
    print(f"{args.run}: {len(rows) - len(failed)}/{len(rows)} successes in {limit}-step episodes")
    for r in failed:
        print(f"  failed seed {r['seed']}: closed {r['closes']}x, held {r['held_steps']} steps, raised {r['max_rise_mm']} mm")
    if failed:
        closes = np.array([r["closes"] for r in failed])
        print(f"failures: {int((closes > 1).sum())} closed more than once, {int((closes == 1).sum())} once, "
              f"{int((closes == 0).sum())} never; {sum(r['held_steps'] > 0 for r in failed)} held the toy at some "
              f"point, {sum(r['max_rise_mm'] > 20 for r in failed)} raised it more than 20 mm")


if __name__ == "__main__":
    main()
