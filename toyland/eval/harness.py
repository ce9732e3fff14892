"""``toyland eval``: score one actor (a checkpoint or a scripted reference) on every cell of a suite.

Episodes run in worker processes (each keeps one env per cell and its own copy of the policy) and
every finished episode is appended to ``episodes.jsonl`` at once, so an interrupted evaluation
resumes with the episodes it lacks. Seeds are ``seed_start + i`` in every cell, far from the
collection seeds. Videos are made afterwards by replaying the first success and the first failure
of each cell (episodes are deterministic given their seed), so recording costs nothing while
evaluating.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from toyland.eval.actors import make_actor
from toyland.eval.policy_eval import EVAL_SEED_START
from toyland.eval.suite import ID, Suite, build_suite

RECORDS, RESULTS, RUN = "episodes.jsonl", "results.json", "run.json"
RESULTS_VERSION = 1
CHUNK = 5  # episodes per work item: small enough to balance, large enough to amortize


def cell_env(env_cfg: dict, cell_env: dict, render: bool = False) -> dict:
    env = {**env_cfg, **{k: v for k, v in cell_env.items() if k != "factors"}}
    env["factors"] = {**(env_cfg.get("factors") or {}), **(cell_env.get("factors") or {})}
    if render:
        env.update(render_mode="rgb_array", render_size=[160, 160])
    return env


class EpisodeRunner:
    """An actor and one env per cell, in one process."""

    def __init__(self, actor_spec: str, weights: str, env_cfg: dict, cells: dict, n_action_steps: int | None = None,
                 threads: int | None = None):
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.actor = make_actor(actor_spec, weights=weights, n_action_steps=n_action_steps)
        self.env_cfg, self.cells, self.envs = env_cfg, cells, {}

    def env(self, cell: str, render: bool = False):
        key = (cell, render)
        if key not in self.envs:
            from toyland.sim import make_env

            self.envs[key] = make_env(cell_env(self.env_cfg, self.cells[cell], render))
            self.actor.check(self.envs[key])
        return self.envs[key]

    def run(self, cell: str, seed: int, record: bool = False) -> tuple[dict, list]:
        env = self.env(cell, render=record)
        obs, info = env.reset(seed=seed)
        self.actor.reset(env, seed)
        frames = [env.render()] if record else []
        success, steps, step_info = False, 0, {}
        while True:
            obs, _, terminated, truncated, step_info = env.step(self.actor.act(obs))
            steps += 1
            success = success or bool(step_info["is_success"])
            if record:
                frames.append(env.render())
            if terminated or truncated:
                break
        outcome = {k: bool(v) for k, v in step_info.items() if isinstance(v, (bool, np.bool_)) and k != "is_success"}
        return {
            "cell": cell, "seed": seed, "success": success, "steps": steps, "instruction": info["instruction"],
            "target_index": info["target_index"], "cue_index": info.get("cue_index"),
            "toy_seeds": [t.get("seed") for t in info["toys"]], "factors": info["factors"], "outcome": outcome,
        }, frames

    def close(self):
        for env in self.envs.values():
            env.close()


_RUNNER: EpisodeRunner | None = None  # per worker process


def _init_worker(*args) -> None:
    import signal

    global _RUNNER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process stops the pool
    _RUNNER = EpisodeRunner(*args, threads=1)


def _run_chunk(jobs: list[tuple[str, int]]) -> list[dict]:
    return [_RUNNER.run(cell, seed)[0] for cell, seed in jobs]


def read_records(out: Path) -> list[dict]:
    path = Path(out) / RECORDS
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill: that episode runs again
            continue
    return records


def evaluate_suite(actor: str, env_cfg: dict, suite_cfg: dict, out: str | Path, episodes: int = 20,
                   seed_start: int = EVAL_SEED_START, workers: int = 2, weights: str = "ema", videos: bool = True,
                   progress: bool = True, n_action_steps: int | None = None) -> dict:
    from toyland.sim import resolved_env_config

    out = Path(out)
    suite = build_suite(suite_cfg)
    cells = {c.name: c.env for c in suite.cells}
    for cell in suite.cells:  # unknown env keys, factors or levels: before any episode
        resolved_env_config(cell_env(env_cfg, cell.env))
    run = {"actor": str(actor), "weights": weights, "n_action_steps": n_action_steps, "env": resolved_env_config(env_cfg),
           "suite": suite_cfg, "seed_start": seed_start, "episodes": episodes}
    out.mkdir(parents=True, exist_ok=True)
    if (out / RUN).is_file():  # resuming (more episodes per cell is allowed)
        previous = json.loads((out / RUN).read_text())
        changed = sorted(k for k in run if k != "episodes" and json.loads(json.dumps(run[k])) != previous.get(k))
        if changed:
            raise ValueError(f"{out} holds an evaluation with a different {changed}; resume with the same "
                             "settings or use a new output_dir")
    (out / RUN).write_text(json.dumps(run, indent=2))
    import torch

    # One torch thread everywhere: float results depend on the thread count, and an episode's
    # record must not depend on how many workers ran the evaluation.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _evaluate(actor, env_cfg, suite, suite_cfg, cells, run, out, episodes, seed_start, workers, videos, progress)
    finally:
        torch.set_num_threads(threads)


def _evaluate(actor, env_cfg, suite, suite_cfg, cells, run, out, episodes, seed_start, workers, videos, progress):
    from tqdm import tqdm

    acting = (run["weights"], env_cfg, cells, run["n_action_steps"])  # how each process builds its runner
    runner = EpisodeRunner(actor, *acting)
    runner.env(ID)  # the actor's contract against the env: a clear error before any episode
    done = {(r["cell"], r["seed"]) for r in read_records(out)}
    jobs = [(c.name, seed_start + i) for c in suite.cells for i in range(episodes) if (c.name, seed_start + i) not in done]
    bar = tqdm(total=len(cells) * episodes, initial=len(cells) * episodes - len(jobs), desc="eval", unit="ep",
               disable=not progress)
    t0 = time.perf_counter()
    with open(out / RECORDS, "a") as log:
        def write(record):
            log.write(json.dumps(record) + "\n")
            log.flush()
            os.fsync(log.fileno())
            bar.update(1)

        if workers <= 1:
            for cell, seed in jobs:
                write(runner.run(cell, seed)[0])
        elif jobs:
            chunks = [jobs[i : i + CHUNK] for i in range(0, len(jobs), CHUNK)]
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                     initargs=(actor, *acting)) as pool:
                futures = [pool.submit(_run_chunk, chunk) for chunk in chunks]
                try:
                    for future in as_completed(futures):
                        for record in future.result():
                            write(record)
                except BaseException:
                    for future in futures:
                        future.cancel()
                    raise
    bar.close()
    wall = time.perf_counter() - t0
    records = read_records(out)
    results = summarize(records, suite, episodes, seed_start)
    results.update(version=RESULTS_VERSION, actor=runner.actor.label, run=run,
                   speed={"episodes": len(jobs), "wall_s": wall, "workers": workers,
                          "episodes_per_hour": 3600 * len(jobs) / wall if jobs and wall > 0 else None})
    if videos:
        results["videos"] = record_videos(runner, records, suite, out)
    runner.close()
    (out / RESULTS).write_text(json.dumps(results, indent=2))
    from toyland.eval.report import write_report

    write_report([out], out)
    return results


def summarize(records: list[dict], suite: Suite, episodes: int, seed_start: int) -> dict:
    from toyland.eval.stats import paired_comparison, wilson_interval

    seeds = set(range(seed_start, seed_start + episodes))
    by_cell: dict[str, dict[int, dict]] = {}
    for r in records:
        if r["seed"] in seeds:
            by_cell.setdefault(r["cell"], {})[r["seed"]] = r  # a replayed duplicate keeps one record
    cells = {}
    for cell in suite.cells:
        rs = list(by_cell.get(cell.name, {}).values())
        n, k = len(rs), sum(r["success"] for r in rs)
        lo, hi = wilson_interval(k, n)
        entry = {**cell.to_dict(), "episodes": n, "successes": k, "success_rate": k / n if n else None, "ci95": [lo, hi],
                 "wrong_object_rate": sum(r["outcome"].get("wrong_object", False) for r in rs) / n if n else None}
        if any(r.get("cue_index") is not None for r in rs):
            cue = sum(r["outcome"].get("cue_success", False) for r in rs)
            entry["shortcut_rate"], entry["shortcut_ci95"] = cue / n, list(wilson_interval(cue, n))
        cells[cell.name] = entry
    id_success = {s: r["success"] for s, r in by_cell.get(ID, {}).items()}
    gaps = {}
    for cell in suite.cells:
        if cell.name == ID:
            continue
        ood = {s: r["success"] for s, r in by_cell.get(cell.name, {}).items()}
        gaps[cell.name] = paired_comparison(id_success, ood)  # ID minus OOD, paired by seed
    return {"cells": cells, "gaps": gaps, "episodes_per_cell": episodes, "seed_start": seed_start}


def record_videos(runner: EpisodeRunner, records: list[dict], suite: Suite, out: Path) -> dict:
    """Replays the first success and the first failure of each cell with rendering on."""
    from toyland.eval.rollout import write_video

    videos, mismatches = {}, []
    for cell in suite.cells:
        rs = sorted((r for r in records if r["cell"] == cell.name), key=lambda r: r["seed"])
        for label, pick in (("success", True), ("failure", False)):
            chosen = next((r for r in rs if r["success"] == pick), None)
            if chosen is None:
                continue
            replay, frames = runner.run(cell.name, chosen["seed"], record=True)
            if replay["success"] != chosen["success"]:
                mismatches.append((cell.name, chosen["seed"]))
            name = f"videos/{cell.name.replace('+', '_')}_{label}_{chosen['seed']}.mp4"
            write_video(out / name, frames, fps=20)
            videos.setdefault(cell.name, {})[label] = name
    if mismatches:
        raise RuntimeError(f"replayed episodes ended differently from their records {mismatches}: the actor or env "
                           "is not deterministic given the seed")
    return videos
