"""Evaluation throughput, side by side in one run: episodes per hour with 1 and 2 local workers, one
env per worker and several stepped in lockstep (batched inference), and on a local Ray instance.
Prints the parallel efficiency (rate with 2 workers / (2 x rate with 1)), the batched / unbatched
ratio and Ray / local twice: over the whole run (start-up included: spawning workers, importing
torch, loading the policy, starting Ray) and in steady state (from when every worker has delivered
its first chunk of records to the last record, timed by watching the records file grow: what a long
evaluation approaches; records come a chunk at a time, so the steady figure needs several chunks per
worker, --episodes 256 or more with batching). It checks that the records do not depend on the number
of workers or the launcher. Batched and unbatched records differ only by rounding (~1e-6 in an
action): the share of episodes whose outcome flips between them is printed too.

    .venv/bin/python benchmarks/eval_throughput.py [--actor CHECKPOINT|expert] [--episodes 64] [--envs 8]

The default actor is the `toyland study lift` policy (training seed 0) when it exists, else the expert.
Goals (issue 30): batched >= 1.5x unbatched, parallel efficiency >= 0.9, Ray within 10% of local.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

from common import ENV


class FinishTimes:
    """Times at which records appear under ``out`` (polled every 20 ms in a thread)."""

    def __init__(self, out: Path):
        self.out, self.times, self._stop = out, [], threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _count(self) -> int:
        n = 0
        for f in self.out.glob("**/episodes.jsonl"):
            try:
                n += f.read_bytes().count(b"\n")
            except OSError:  # being replaced
                pass
        return n

    def _watch(self):
        while not self._stop.is_set():
            n = self._count()
            self.times += [time.perf_counter()] * (n - len(self.times))
            time.sleep(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def steady_rate(self, workers: int) -> float:
        """Episodes per hour from the time every worker has delivered its first chunk of episodes (the
        records come a chunk at a time) to the last record; NaN with too few chunks to tell."""
        bursts = sorted(set(self.times))
        if len(bursts) <= workers:
            return float("nan")
        start = bursts[workers - 1]
        done = sum(t <= start for t in self.times)
        return 3600 * (len(self.times) - done) / (self.times[-1] - start)


def ratios(rates: dict, e: int, ray: bool) -> str:
    text = (f"parallel efficiency {rates[2, 1, 'local'] / (2 * rates[1, 1, 'local']):.2f} one env, "
            f"{rates[2, e, 'local'] / (2 * rates[1, e, 'local']):.2f} {e} envs (goal >= 0.9); "
            f"batched / unbatched {rates[1, e, 'local'] / rates[1, 1, 'local']:.2f}x 1 worker, "
            f"{rates[2, e, 'local'] / rates[2, 1, 'local']:.2f}x 2 workers (goal >= 1.5)")
    if ray:
        text += (f"; Ray / local {rates[2, 1, 'ray'] / rates[2, 1, 'local']:.2f} one env, "
                 f"{rates[2, e, 'ray'] / rates[2, e, 'local']:.2f} batched (goal >= 0.9)")
    return text


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
    rates, steady, records = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers, envs, launcher in setups:
            out = Path(tmp) / f"{launcher}_w{workers}_e{envs}"
            out.mkdir(parents=True)
            t = time.perf_counter()
            with FinishTimes(out) as finished:
                evaluate_suite(actor, env, {"base": {}}, out, episodes=args.episodes, workers=workers, videos=False,
                               progress=False, envs_per_worker=envs, launcher=launcher)
            key, wall = (workers, envs, launcher), time.perf_counter() - t
            rates[key] = 3600 * args.episodes / wall
            span = finished.times[-1] - finished.times[0] if finished.times else 0.0
            steady[key] = finished.steady_rate(workers)
            records[key] = {r["seed"]: r for r in read_records(out)}
            print(f"  {launcher:5s} {workers} worker(s) x {envs} env(s): {rates[key]:7.0f} episodes/hour, "
                  f"{steady[key]:7.0f} in steady state ({wall - span:.1f} s of {wall:.1f} before the first or after the last episode)",
                  flush=True)
    same = lambda a, b: json.dumps(records[a], sort_keys=True) == json.dumps(records[b], sort_keys=True)
    e = args.envs
    print(f"actor: {actor}; {args.episodes} Lift episodes per run (cameras {env['cameras']}, {env['image_size']} px)")
    print(f"  whole run:    {ratios(rates, e, not args.skip_ray)}")
    print(f"  steady state: {ratios(steady, e, not args.skip_ray)}")
    if not args.skip_ray:
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
