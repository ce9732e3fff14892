"""Evaluation throughput, side by side in one run: episodes per hour with 1 and 2 local workers, one
env per worker and several stepped in lockstep (batched inference), and on a local Ray instance.
Prints the parallel efficiency (rate with 2 workers / (2 x rate with 1); start-up included), the
batched / unbatched ratio, Ray / local, and checks that the records do not depend on the number of
workers or the launcher. Batched and unbatched records differ only by rounding (~1e-6 in an
action): the share of episodes whose outcome flips between them is printed too.

    .venv/bin/python benchmarks/eval_throughput.py [--actor CHECKPOINT|expert] [--episodes 64] [--envs 8]

The default actor is the `toyland study lift` policy (training seed 0) when it exists, else the expert.
Goals (issue 30): batched >= 1.5x unbatched, parallel efficiency >= 0.9, Ray within 10% of local.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from common import ENV


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--actor", default=None)
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--envs", type=int, default=8, help="envs per worker in the batched runs")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    from toyland.eval.harness import evaluate_suite
    from toyland.eval.records import read_records

    run = Path(__file__).resolve().parent.parent / "outputs/studies/lift/arms/diffusion/seed_0"
    actor = args.actor or (str(run) if (run / "checkpoints" / "last").is_file() else "expert")
    trained = Path(actor) / "config.json"  # a training run folder: evaluate in the env it was trained for
    env = json.loads(trained.read_text())["env"] if trained.is_file() else dict(ENV)
    setups = [(1, 1, "local"), (2, 1, "local"), (1, args.envs, "local"), (2, args.envs, "local")]
    if not args.skip_ray:
        setups += [(2, 1, "ray"), (2, args.envs, "ray")]
    rates, records = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers, envs, launcher in setups:
            out = Path(tmp) / f"{launcher}_w{workers}_e{envs}"
            t = time.perf_counter()
            evaluate_suite(actor, env, {"base": {}}, out, episodes=args.episodes, workers=workers, videos=False,
                           progress=False, envs_per_worker=envs, launcher=launcher)
            rates[workers, envs, launcher] = 3600 * args.episodes / (time.perf_counter() - t)
            records[workers, envs, launcher] = {r["seed"]: r for r in read_records(out)}
            print(f"  {launcher:5s} {workers} worker(s) x {envs} env(s): {rates[workers, envs, launcher]:7.0f} episodes/hour",
                  flush=True)
    same = lambda a, b: json.dumps(records[a], sort_keys=True) == json.dumps(records[b], sort_keys=True)
    e = args.envs
    print(f"actor: {actor}; {args.episodes} Lift episodes per run (cameras {env['cameras']}, {env['image_size']} px)")
    print(f"  parallel efficiency, one env per worker: {rates[2, 1, 'local'] / (2 * rates[1, 1, 'local']):.2f} "
          f"(goal >= 0.9); {e} envs per worker: {rates[2, e, 'local'] / (2 * rates[1, e, 'local']):.2f}")
    print(f"  batched / unbatched: 1 worker {rates[1, e, 'local'] / rates[1, 1, 'local']:.2f}x, "
          f"2 workers {rates[2, e, 'local'] / rates[2, 1, 'local']:.2f}x (goal >= 1.5)")
    if not args.skip_ray:
        print(f"  Ray / local, 2 workers: {rates[2, 1, 'ray'] / rates[2, 1, 'local']:.2f} one env, "
              f"{rates[2, e, 'ray'] / rates[2, e, 'local']:.2f} batched (goal >= 0.9)")
        print(f"  records identical, Ray and local: {same((2, 1, 'ray'), (2, 1, 'local')) and same((2, e, 'ray'), (2, e, 'local'))}")
    print(f"  records identical, 1 and 2 workers: {same((1, 1, 'local'), (2, 1, 'local'))} (one env), "
          f"{same((1, e, 'local'), (2, e, 'local'))} ({e} envs)")
    one, many = records[1, 1, "local"], records[1, e, "local"]
    flips = sum(one[s]["success"] != many[s]["success"] for s in one)
    print(f"  batched vs one env: success {sum(r['success'] for r in many.values())} vs "
          f"{sum(r['success'] for r in one.values())} of {len(one)}; outcome differs in {flips} episode(s), "
          f"records identical in {sum(json.dumps(one[s], sort_keys=True) == json.dumps(many[s], sort_keys=True) for s in one)}")


if __name__ == "__main__":
    main()
