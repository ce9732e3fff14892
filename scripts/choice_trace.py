"""Where does a VLA that chooses its object (``policy.grounding_select``) fail: in the choice, or in acting
on what it chose? Runs the policy of a training run on whole episodes and prints, per episode, its
outcome and the object chosen at each action chunk (T: the instructed one, x: another), then totals.

    .venv/bin/python scripts/choice_trace.py RUN_FOLDER [--episodes 40] [--first-seed 2000000] [--keep-first]

Scenes are seeded from ``--first-seed``: 2,000,000 on (the default) lie beyond every evaluation's seeds;
0 on are the scenes the study's datasets were collected on (their first episodes, where the expert
succeeded), which separates acting on new scenes from acting on seen ones. ``--keep-first`` keeps the
first chunk's choice for the whole episode (the policy chooses again at every chunk), to measure
whether a choice that changes mid-episode is what fails. Any other policy of the run (e.g. the
target-mask control) runs the same episodes with its outcome alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from toyland.eval.actors import PolicyActor
from toyland.eval.runner import run_episode
from toyland.sim import make_env


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run")
    parser.add_argument("--episodes", type=int, default=40)
    parser.add_argument("--first-seed", type=int, default=2_000_000)
    parser.add_argument("--keep-first", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as evaluation runs it
    cfg = json.loads((Path(args.run) / "config.json").read_text())
    actor = PolicyActor(args.run)
    policy = actor.policy
    env = make_env(cfg["env"])
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
              "failed_always_right": 0}
    for k in range(args.episodes):
        seed = args.first_seed + k
        trace.clear()
        record, _ = run_episode(env, actor, seed)  # the evaluation's own episode loop
        success, grasped = record["success"], bool(record["outcome"].get("grasped_ever"))
        totals["success"] += success
        totals["never_grasped"] += not grasped
        line = f"{seed}: success {success}, grasped {grasped}"
        if chooses:
            target = env.unwrapped.target_mask_id  # this episode's, until the next reset
            right = [c == target for c in trace]
            totals["first_right"] += right[0]
            totals["chunks"] += len(right)
            totals["chunks_right"] += sum(right)
            totals["failed_always_right"] += (not success) and all(right)
            line += f", chosen per chunk {''.join('T' if r else 'x' for r in right)}"
        print(line, flush=True)
    n = args.episodes
    print(f"success {totals['success']}/{n}, never grasped {totals['never_grasped']}/{n}")
    if chooses:
        print(f"the instructed object chosen at the first chunk in {totals['first_right']}/{n} episodes, at "
              f"{totals['chunks_right'] / max(1, totals['chunks']):.2f} of all chunks; failures with it chosen at "
              f"every chunk: {totals['failed_always_right']}/{n - totals['success']}")


if __name__ == "__main__":
    main()
