"""How a learn_lift (or learn_language_lift) checkpoint fails: per episode, how often the jaw closed, how
many steps it held the instructed toy, and how far it raised it, with the failures summarized.

Reads a learning benchmark's run folder (benchmarks/out/NAME/run, or with --variant runs/VARIANT: its
config.json for the env, its newest checkpoint) and rolls the EMA policy out on the evaluation seeds
(from 1,000,000), one torch thread, torch seeded with each episode's seed as `toyland eval` does.

    .venv/bin/python benchmarks/failure_anatomy.py ll_d200_coords --episodes 40 --max-steps 200
    .venv/bin/python benchmarks/failure_anatomy.py lll_c200_14k_s1 --variant flow-detpool --episodes 40
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from common import OUT


def anatomy(env, actor, seed: int, max_steps: int) -> dict:
    obs, _ = env.reset(seed=seed)
    actor.reset(env, seed)
    scene = env.unwrapped.scene
    body = scene.object_bodies[env.unwrapped.task.target_index]
    start_z = float(scene.data.xpos[body][2])
    closes, held, rise, closed = 0, 0, 0.0, False
    for _ in range(max_steps):
        action = actor.act(obs)
        obs, _, terminated, truncated, info = env.step(action)
        closes += bool(action[-1] > 0 and not closed)  # a close command after an open one
        closed = bool(action[-1] > 0)
        held += bool(info.get("grasped"))
        rise = max(rise, float(scene.data.xpos[body][2]) - start_z)
        if terminated or truncated:
            break
    return {"seed": seed, "success": bool(info["is_success"]), "closes": closes, "held_steps": held,
            "max_rise_mm": round(1000 * rise)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="the benchmark's out= name, a folder under benchmarks/out")
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--variant", default=None,
                        help="a learn_language_lift variant: read runs/VARIANT (its config.json) instead of run/")
    parser.add_argument("--max-steps", type=int, default=None, help="episode limit (default: the run's env)")
    args = parser.parse_args()
    from toyland.eval.actors import PolicyActor
    from toyland.sim import make_env, resolved_env_config

    folder = OUT / args.out
    run = folder / "runs" / args.variant if args.variant else folder / "run"
    if not (run / "config.json").is_file():  # the trainer's resolved config, in either benchmark's layout
        raise SystemExit(f"{run / 'config.json'} is missing: run benchmarks/learn_lift.py out={args.out} (or "
                         f"learn_language_lift.py --out {args.out} with --variant) first")
    torch.set_num_threads(1)
    env_cfg = json.loads((run / "config.json").read_text())["env"]
    if args.max_steps:
        env_cfg = {**env_cfg, "max_episode_steps": args.max_steps}
    limit = resolved_env_config(env_cfg)["max_episode_steps"]
    env, actor = make_env(env_cfg), PolicyActor(run)
    rows = [anatomy(env, actor, 1_000_000 + i, limit) for i in range(args.episodes)]
    failed = [r for r in rows if not r["success"]]
    print(f"{args.out}: {len(rows) - len(failed)}/{len(rows)} successes in {limit}-step episodes")
    for r in failed:
        print(f"  failed seed {r['seed']}: closed {r['closes']}x, held {r['held_steps']} steps, raised {r['max_rise_mm']} mm")
    if failed:
        closes = np.array([r["closes"] for r in failed])
        print(f"failures: {int((closes > 1).sum())} closed more than once, {int((closes == 1).sum())} once, "
              f"{int((closes == 0).sum())} never; {sum(r['held_steps'] > 0 for r in failed)} held the toy at some "
              f"point, {sum(r['max_rise_mm'] > 20 for r in failed)} raised it more than 20 mm")


if __name__ == "__main__":
    main()
