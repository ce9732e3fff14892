"""``toyland eval``: score one actor (a checkpoint or a scripted reference) on every cell of a suite.

Episodes run in worker processes, local or Ray actors (each keeps one env per cell and its own copy
of the policy), in chunks; a finished chunk's episodes are appended to ``episodes.jsonl`` at once, so
an interrupted evaluation resumes with the episodes it lacks, and a chunk whose worker died is run
again on a fresh one. Every process acts with one torch thread, so the records are the same for any
number of workers and either launcher. Seeds are ``seed_start + i`` in every cell, far from the
collection seeds. Videos are made afterwards by replaying the first success and the first failure
of each cell (episodes are deterministic given their seed), so recording costs nothing while
evaluating.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from toyland.eval.actors import make_actor
from toyland.eval.report import write_report
from toyland.eval.records import RECORDS, RESULTS, RESULTS_VERSION, RUN, read_records, summarize
from toyland.eval.runner import run_episode, run_episodes
from toyland.eval.suite import ID, Suite, build_suite
from toyland.files import write_json_atomic
CHUNK = 4  # episodes per work item (per env of a worker): small enough to balance, large enough to amortize
EVAL_SEED_START = 1_000_000  # far from the collection seeds (0, 1, 2, ...): never scored on a training episode


def cell_env(env_cfg: dict, cell_env: dict, render: bool = False) -> dict:
    env = {**env_cfg, **{k: v for k, v in cell_env.items() if k not in ("factors", "shortcut")}}
    env["factors"] = {**(env_cfg.get("factors") or {}), **(cell_env.get("factors") or {})}
    if cell_env.get("shortcut"):  # a cell changes the run's shortcut mode or pin; its cues and islands stay
        env["shortcut"] = {**(env_cfg.get("shortcut") or {}), **cell_env["shortcut"]}
    if "toy_set" in cell_env and "num_toys" not in cell_env and cell_env["toy_set"] != env_cfg.get("toy_set"):
        # the run's num_toys narrows its own set (the toys it trained on), not the set a cell moves to
        env["num_toys"] = None
    if render:
        env.update(render_mode="rgb_array", render_size=[160, 160])
    return env


class CellRunner:
    """An actor and one env per cell, in one process; episodes through the one runner."""

    def __init__(self, actor_spec: str, weights: str, env_cfg: dict, cells: dict, n_action_steps: int | None = None,
                 envs_per_worker: int = 1, threads: int | None = None):
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.actor = make_actor(actor_spec, weights=weights, n_action_steps=n_action_steps)
        if envs_per_worker > 1 and not self.actor.batchable:
            raise ValueError(f"{self.actor.label} acts in one env at a time; set envs_per_worker=1")
        self.env_cfg, self.cells, self.envs, self.slots = env_cfg, cells, {}, int(envs_per_worker)

    def env(self, cell: str, render: bool = False, slot: int = 0):
        key = (cell, render, slot)
        if key not in self.envs:
            from toyland.sim import make_env

            self.envs[key] = make_env(cell_env(self.env_cfg, self.cells[cell], render))
            self.actor.check(self.envs[key])
        return self.envs[key]

    def run(self, cell: str, seed: int, record: bool = False) -> tuple[dict, list]:
        return run_episode(self.env(cell, render=record), self.actor, seed, cell=cell, record=record)

    def run_chunk(self, jobs: list[tuple[str, int]]) -> list[dict]:
        if self.slots <= 1:
            return [self.run(cell, seed)[0] for cell, seed in jobs]
        return run_episodes(lambda cell, slot: self.env(cell, slot=slot), self.actor, jobs, self.slots)

    def close(self):
        for env in self.envs.values():
            env.close()


def _worker_runner(*args) -> CellRunner:
    return CellRunner(*args, threads=1)


def evaluate_suite(actor: str, env_cfg: dict, suite_cfg: dict, out: str | Path, episodes: int = 20,
                   seed_start: int = EVAL_SEED_START, workers: int = 2, weights: str = "ema", videos: bool = True,
                   progress: bool = True, n_action_steps: int | None = None, launcher: str = "local",
                   ray_address: str | None = None, envs_per_worker: int = 1) -> dict:
    """Scores ``actor`` on every cell of a suite into ``out`` (resuming what is there). ``workers``
    processes (Ray actors with ``launcher=ray``) each step ``envs_per_worker`` envs in lockstep, a
    policy predicting for all of them in one batch. The records do not depend on ``workers`` or the
    launcher; batched inference rounds differently from one env at a time (~1e-6 in an action), so
    ``envs_per_worker`` is part of the run's identity."""
    from toyland.sim import resolved_env_config

    from toyland.parallel import check_launcher

    check_launcher(launcher, ray_address)
    if int(envs_per_worker) < 1:
        raise ValueError(f"envs_per_worker={envs_per_worker}: at least 1")
    out = Path(out)
    suite = build_suite(suite_cfg)
    cells = {c.name: c.env for c in suite.cells}
    for cell in suite.cells:  # unknown env keys, factors or levels: before any episode
        resolved_env_config(cell_env(env_cfg, cell.env))
    run = run_record(actor, env_cfg, suite_cfg, episodes, seed_start, weights, n_action_steps, envs_per_worker)
    out.mkdir(parents=True, exist_ok=True)
    check_same_run(out, run)  # resuming (more episodes per cell is allowed)
    import torch

    from toyland.policies.language import isolated_encoders

    # One torch thread everywhere: float results depend on the thread count, and an episode's
    # record must not depend on how many workers ran the evaluation. For the same reason the
    # instruction embeddings are computed afresh here, not taken from a training process's cache.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with isolated_encoders():
            return _evaluate(actor, env_cfg, suite, suite_cfg, cells, run, out, episodes, seed_start, workers, videos,
                             progress, launcher, ray_address)
    finally:
        torch.set_num_threads(threads)


def run_record(actor: str, env_cfg: dict, suite_cfg: dict, episodes: int, seed_start: int = EVAL_SEED_START,
               weights: str = "ema", n_action_steps: int | None = None, envs_per_worker: int = 1) -> dict:
    """What an evaluation folder holds, as ``run.json`` records it."""
    from toyland.eval.actors import actor_fingerprint
    from toyland.sim import resolved_env_config

    return json.loads(json.dumps({
        "actor": str(actor), "weights": weights, "weights_sha256": actor_fingerprint(str(actor), weights),
        "n_action_steps": n_action_steps, "env": resolved_env_config(env_cfg), "suite": suite_cfg,
        "seed_start": seed_start, "episodes": episodes, "envs_per_worker": int(envs_per_worker),
        "records_version": RESULTS_VERSION}))


def check_same_run(out: Path, run: dict) -> None:
    """Raises unless ``out`` is empty or holds an evaluation of ``run``'s settings (the episode count may grow)."""
    if not (Path(out) / RUN).is_file():
        return
    previous = json.loads((Path(out) / RUN).read_text())
    if isinstance(previous.get("env"), dict):  # env options added since take their defaults, as they did then
        from toyland.sim import resolved_env_config

        previous["env"] = resolved_env_config(previous["env"])
    previous.setdefault("envs_per_worker", 1)  # before batched evaluation, every worker stepped one env
    changed = sorted(k for k in run if k != "episodes" and run[k] != previous.get(k))
    if changed:
        raise ValueError(f"{out} holds an evaluation with a different {changed}; resume with the same "
                         "settings or use a new output_dir")


def _evaluate(actor, env_cfg, suite, suite_cfg, cells, run, out, episodes, seed_start, workers, videos, progress, launcher,
              ray_address):
    from tqdm import tqdm

    acting = (run["weights"], env_cfg, cells, run["n_action_steps"], run["envs_per_worker"])  # each process's runner
    runner = CellRunner(actor, *acting)
    runner.env(ID)  # the actor's contract against the env: a clear error before any episode
    write_json_atomic(out / RUN, run)  # only now: a refused actor or setting leaves the folder free
    done = {(r["cell"], r["seed"]) for r in read_records(out)}
    # chunks at fixed seeds of each cell, so which episodes share a batch never depends on the
    # workers, the launcher or an interruption; a resumed chunk runs the episodes it lacks
    size = CHUNK * run["envs_per_worker"]
    chunks = [[(c.name, seed) for seed in range(seed_start + i, seed_start + min(i + size, episodes))
               if (c.name, seed) not in done] for c in suite.cells for i in range(0, episodes, size)]
    chunks = [chunk for chunk in chunks if chunk]
    jobs = [job for chunk in chunks for job in chunk]
    bar = tqdm(total=len(cells) * episodes, initial=len(cells) * episodes - len(jobs), desc="eval", unit="ep",
               disable=not progress)
    t0 = time.perf_counter()
    with open(out / RECORDS, "a") as log:
        def write(record):
            log.write(json.dumps(record) + "\n")
            log.flush()
            os.fsync(log.fileno())
            bar.update(1)

        if workers <= 1 and launcher == "local":
            for chunk in chunks:
                if runner.slots == 1:  # one env: each episode written as it ends
                    for cell, seed in chunk:
                        write(runner.run(cell, seed)[0])
                else:
                    for record in runner.run_chunk(chunk):
                        write(record)
        elif jobs:
            from toyland.parallel import map_unordered

            # a chunk's records are written together once it finishes: a chunk whose worker died is
            # run again whole, and nothing is written twice
            for _, records in map_unordered(chunks, _worker_runner, (actor, *acting), "run_chunk", workers=workers,
                                            launcher=launcher, address=ray_address):
                for record in records:
                    write(record)
    bar.close()
    wall = time.perf_counter() - t0
    records = read_records(out)
    results = summarize(records, suite, episodes, seed_start)
    results.update(version=RESULTS_VERSION, actor=runner.actor.label, run=run,
                   speed={"episodes": len(jobs), "wall_s": wall, "workers": workers, "launcher": launcher,
                          "envs_per_worker": run["envs_per_worker"],
                          "episodes_per_hour": 3600 * len(jobs) / wall if jobs and wall > 0 else None})
    if videos:
        results["videos"] = record_videos(runner, records, suite, out)
    runner.close()
    write_json_atomic(out / RESULTS, results)
    write_report([out], out)
    return results


def record_videos(runner: CellRunner, records: list[dict], suite: Suite, out: Path) -> dict:
    """Replays the first success and the first failure of each cell with rendering on, one env at a
    time. An episode of a batched evaluation (``envs_per_worker`` > 1) was computed beside others and
    its replay alone can round differently: a replay whose outcome differs is noted in its entry
    (``replay_differs``) instead of failing the evaluation."""
    from toyland.eval.runner import write_video

    batched = runner.slots > 1
    videos, mismatches = {}, []
    for cell in suite.cells:
        rs = sorted((r for r in records if r["cell"] == cell.name), key=lambda r: r["seed"])
        for label, pick in (("success", True), ("failure", False)):
            chosen = next((r for r in rs if r["success"] == pick), None)
            if chosen is None:
                continue
            replay, frames = runner.run(cell.name, chosen["seed"], record=True)
            differs = replay["success"] != chosen["success"]
            if differs and not batched:
                mismatches.append((cell.name, chosen["seed"]))
            # a cell may name a mesh folder's path (toy_set@/data/ycb): one file name, no folders
            name = f"videos/{re.sub(r'[^A-Za-z0-9@._-]+', '_', cell.name)}_{label}_{chosen['seed']}.mp4"
            write_video(out / name, frames, fps=20)
            videos.setdefault(cell.name, {})[label] = name
            if differs:
                videos[cell.name][f"{label}_replay_differs"] = True
    if mismatches:
        raise RuntimeError(f"replayed episodes ended differently from their records {mismatches}: the actor or env "
                           "is not deterministic given the seed")
    return videos
