"""Evaluation throughput: episodes per hour with 1 and 2 worker processes, the parallel
efficiency (rate with 2 / (2 x rate with 1); worker start-up included), and a check that both
runs produced the same per-episode records.

    .venv/bin/python benchmarks/eval_throughput.py [--actor expert|CHECKPOINT] [--episodes 60]

The default actor is the `toyland study lift` policy (training seed 0) when it exists, else the expert.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from common import ENV


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--actor", default=None)
    parser.add_argument("--episodes", type=int, default=60)
    args = parser.parse_args()
    from toyland.eval.harness import evaluate_suite
    from toyland.eval.records import read_records

    run = Path(__file__).resolve().parent.parent / "outputs/studies/lift/arms/diffusion/seed_0"
    actor = args.actor or (str(run) if (run / "checkpoints" / "last").is_file() else "expert")
    trained = Path(actor) / "config.json"  # a training run folder: evaluate in the env it was trained for
    env = json.loads(trained.read_text())["env"] if trained.is_file() else dict(ENV)
    rates, records = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            out = Path(tmp) / f"w{workers}"
            t = time.perf_counter()
            evaluate_suite(actor, env, {"base": {}}, out, episodes=args.episodes, workers=workers, videos=False,
                           progress=False)
            rates[workers] = 3600 * args.episodes / (time.perf_counter() - t)
            records[workers] = sorted(json.dumps(r, sort_keys=True) for r in read_records(out))
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"actor: {actor}; {args.episodes} Lift episodes per run (cameras {env['cameras']}, {env['image_size']} px)")
    print(f"  1 worker : {rates[1]:7.0f} episodes/hour")
    print(f"  2 workers: {rates[2]:7.0f} episodes/hour")
    print(f"  parallel efficiency {rates[2] / (2 * rates[1]):.2f} (goal >= 0.85); records identical: {records[1] == records[2]}")


if __name__ == "__main__":
    main()
