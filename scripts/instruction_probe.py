"""Does a language-conditioned policy go where its instruction points? For scenes outside any
evaluation's seeds, the policy acts on its true instruction for a few steps; then, from that state
and with the same noise, it plans one action chunk under each object's instruction, and the script
prints how far the chunk's last position target moves between them next to how far apart the
objects lie. A policy that reads the instruction moves its target by about the objects' distance.

    .venv/bin/python scripts/instruction_probe.py RUN_FOLDER [--steps 20] [--scenes 6]

RUN_FOLDER is a training run (its config.json names the env). For Language Lift and its variants:
the instruction names one object by ``task.describe``, or shows its picture (``env.instruction``
interleaved or image), which the probe renders for each object as the env does for the target. For
a VLA trained with ``grounding_aux`` (or ``grounding_marker``) it also prints how often, at each
scene's first frame, the grounding head picks the instructed object among the object tokens (the
share of cameras that see the target).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from toyland.eval.actors import resolve_checkpoint
from toyland.policies.checkpoint import load_policy
from toyland.sim import make_env

FIRST_SCENE = 2_000_000  # beyond the evaluation seeds (1,000,000 on)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run")
    parser.add_argument("--steps", type=int, default=20, help="steps on the true instruction before probing")
    parser.add_argument("--scenes", type=int, default=6)
    args = parser.parse_args()
    cfg = json.loads((Path(args.run) / "config.json").read_text())
    policy = load_policy(resolve_checkpoint(args.run)[0]).eval()
    env = make_env(cfg["env"])
    base = env.unwrapped
    scale = (np.asarray(base.controller.high) - np.asarray(base.controller.low))[:2] / 2  # normalized -> metres
    moved, apart, grounded = [], [], []
    for scene in range(args.scenes):
        obs, _ = env.reset(seed=FIRST_SCENE + scene)
        task = base.task
        if getattr(policy, "grounding", None) is not None or getattr(policy, "matcher", None) is not None:
            grounded.append(grounding_accuracy(policy, obs, base.target_mask_id))
        named = task.describe(task.target_index)
        policy.reset()
        torch.manual_seed(scene)
        for _ in range(args.steps):
            obs, *_ = env.step(policy.select_action(obs))
        targets = []
        for k in range(len(base.scene.object_bodies)):
            probe = instructed(obs, base, named, k)
            policy.reset()
            torch.manual_seed(0)
            chunk = [policy.select_action(probe) for _ in range(policy.config.n_action_steps)]
            targets.append(np.asarray(chunk[-1][:2]) * scale)
        targets = np.array(targets)
        objects = np.array([base.scene.data.xpos[b][:2] for b in base.scene.object_bodies])
        moved.append(max(np.linalg.norm(a - b) for a in targets for b in targets))
        apart.append(min(np.linalg.norm(a - b) for i, a in enumerate(objects) for b in objects[i + 1:]))
        print(f"scene {FIRST_SCENE + scene}: target moved up to {1000 * moved[-1]:.0f} mm between instructions; "
              f"the nearest two objects {1000 * apart[-1]:.0f} mm apart")
    print(f"median: moved {1000 * np.median(moved):.0f} mm, objects {1000 * np.median(apart):.0f} mm apart")
    if grounded:
        print(f"grounding head names the instructed object at the first frame: {np.mean(grounded):.2f} "
              f"(mean over {len(grounded)} scenes of the share of cameras that see it)")


def instructed(obs: dict, base, named: str, k: int) -> dict:
    """``obs`` with the instruction naming object ``k``: its description in the words, its picture (in
    the episode's colours, as the env renders the target's) where the instruction shows one."""
    from toyland.sim.instructions import IMAGE_TOKEN, INSTRUCTION_PICTURE

    probe = dict(obs)
    if IMAGE_TOKEN not in obs["task"]:
        probe["task"] = obs["task"].replace(named, base.task.describe(k))
    if INSTRUCTION_PICTURE in obs:
        rgba = base.scene.model.geom_rgba[base.scene.object_geoms[k]]
        probe[INSTRUCTION_PICTURE] = base.portraits.render(base.task.toys[k], rgba)
    return probe


def grounding_accuracy(policy, obs: dict, target_id: int) -> float:
    from toyland.sim.annotations import TARGET_ANNOTATION

    batch = {k: v[:, None] if torch.is_tensor(v) else v for k, v in policy.observation_batch(obs).items()}
    batch[TARGET_ANNOTATION] = torch.tensor([[[float(target_id)]]])
    with torch.no_grad():
        memory, pad, spans, match = policy._encode(batch)
        if match is not None:
            return policy._matcher_loss(match, batch)[1]
        return policy._grounding_loss(memory, pad, spans, batch)[1]


if __name__ == "__main__":
    main()
