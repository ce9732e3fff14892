"""Where does a VLA that chooses its object (``policy.grounding_select``) fail: in the choice, or in acting
on what it chose? Runs the policy of a training run on whole episodes and prints, per episode, its
outcome and the object chosen at each action chunk (T: the instructed one, C: the object a shortcut
scenario's cue implies, x: another), then totals.

    .venv/bin/python scripts/choice_trace.py RUN_FOLDER [--episodes 40] [--first-seed 2000000] [--keep-first]
        [--suite shortcut_islands --cell A-B]

Scenes are seeded from ``--first-seed``: 2,000,000 on (the default) lie beyond every evaluation's seeds;
0 on are the scenes the study's datasets were collected on (their first episodes, where the expert
succeeded), which separates acting on new scenes from acting on seen ones. ``--keep-first`` keeps the
first chunk's choice for the whole episode (the policy chooses again at every chunk), to measure
whether a choice that changes mid-episode is what fails. ``--suite``/``--cell`` run the episodes in
one cell of an evaluation suite (e.g. a shortcut study's crossed cell ``A-B``, island A's view with
B's instruction), to see whether a shortcut is taken in the choice or in acting. Any other policy of
the run (e.g. the target-mask control) runs the same episodes with its outcome alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import yaml

from toyland.eval.actors import PolicyActor
from toyland.eval.harness import cell_env
from toyland.eval.runner import run_episode
from toyland.eval.suite import build_suite
from toyland.sim import make_env
from toyland.study.driver import CONFIG_DIR


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run")
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--first-seed", type=int, default=2_000_000)
    parser.add_argument("--keep-first", action="store_true")
    parser.add_argument("--suite", help="an evaluation suite (configs/suite/NAME.yaml) whose --cell to run")
    parser.add_argument("--cell", help="the suite's cell, e.g. A-B")
    args = parser.parse_args()
    if (args.suite is None) != (args.cell is None):
        parser.error("--suite and --cell go together")
    torch.set_num_threads(1)  # as evaluation runs it
    cfg = json.loads((Path(args.run) / "config.json").read_text())
    actor = PolicyActor(args.run)
    policy = actor.policy
    env_cfg = cfg["env"]
    if args.suite:
        cells = build_suite(yaml.safe_load((CONFIG_DIR / "suite" / f"{args.suite}.yaml").read_text()))
        if args.cell not in cells.names():
            parser.error(f"suite {args.suite} has no cell {args.cell!r}; valid: {', '.join(cells.names())}")
        env_cfg = cell_env(env_cfg, cells.cell(args.cell).env)
    env = make_env(env_cfg)
    actor.check(env)
    chooses = bool(getattr(policy.config, "grounding_select", False))
    trace: list[int] = []

    def choose(scores):
        chosen = trace[0] if args.keep_first and trace else int(type(policy).choose(scores)[0])
        trace.append(chosen)
        return torch.tensor([chosen])

    if chooses:
        policy.choose = choose  # one env at a time: row 0 is the episode's
    totals = {"success": 0, "never_grasped": 0, "first_right": 0, "chunks": 0, "chunks_right": 0,
              "failed_always_right": 0, "cue_lifted": 0, "first_cue": 0, "chunks_cue": 0}
    for k in range(args.episodes):
        seed = args.first_seed + k
        trace.clear()
        record, _ = run_episode(env, actor, seed)  # the evaluation's own episode loop
        success, grasped = record["success"], bool(record["outcome"].get("grasped_ever"))
        totals["success"] += success
        totals["never_grasped"] += not grasped
        cue_lifted = bool(record["outcome"].get("cue_success"))
        totals["cue_lifted"] += cue_lifted
        line = f"{seed}: success {success}, grasped {grasped}" + (", the cue's object lifted" if cue_lifted else "")
        if chooses:
            scene = env.unwrapped  # this episode's, until the next reset
            target = scene.target_mask_id
            cue_index = scene.task.cue_index
            cue = None if cue_index is None or cue_index == scene.task.target_index else scene.object_mask_id(cue_index)
            right = [c == target for c in trace]
            totals["first_right"] += right[0]
            totals["first_cue"] += trace[0] == cue
            totals["chunks"] += len(right)
            totals["chunks_right"] += sum(right)
            totals["chunks_cue"] += sum(c == cue for c in trace)
            totals["failed_always_right"] += (not success) and all(right)
            line += f", chosen per chunk {''.join('T' if c == target else 'C' if c == cue else 'x' for c in trace)}"
        print(line, flush=True)
    n = args.episodes
    print(f"success {totals['success']}/{n}, never grasped {totals['never_grasped']}/{n}, "
          f"the cue's object lifted {totals['cue_lifted']}/{n}")
    if chooses:
        print(f"the instructed object chosen at the first chunk in {totals['first_right']}/{n} episodes, at "
              f"{totals['chunks_right'] / max(1, totals['chunks']):.2f} of all chunks; failures with it chosen at "
              f"every chunk: {totals['failed_always_right']}/{n - totals['success']}; the cue's object chosen at the "
              f"first chunk in {totals['first_cue']}/{n}, at "
              f"{totals['chunks_cue'] / max(1, totals['chunks']):.2f} of all chunks")


if __name__ == "__main__":
    main()
