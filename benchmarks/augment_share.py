"""The augmentations' share of a training step (issue 25's goal: at most 10%), measured side by side in
one run: toyland's diffusion policy at the Lift recipe (front and wrist at 64x64 with depth, batch 64,
one observation frame), fed by the BatchSampler with each augmentation list as its transform, on the
CPU the trainer would use. The share is the augmentation's time over the whole step (sampling,
augmentation, forward, backward, optimizer).

    .venv/bin/python benchmarks/augment_share.py [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from common import OUT

ENV = {"task": "lift", "image_size": 64, "max_episode_steps": 200,
       "cameras": ["front:rgb+depth+segmentation", "wrist:rgb+depth+segmentation"]}
DEMOS = OUT / "lift_demos_depth_seg"
ARMS = {
    "none": [],
    "colour_jitter": ["colour_jitter"],
    "viewpoint_warp (fixed depth)": [{"name": "viewpoint_warp", "max_yaw_deg": 35, "max_pitch_deg": 15}],
    "viewpoint_warp (depth-aware)": [{"name": "viewpoint_warp", "depth_aware": True, "max_yaw_deg": 35,
                                      "max_pitch_deg": 15}],
    "segment_recolour": ["segment_recolour"],
}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--episodes", type=int, default=20)
    args = parser.parse_args()
    from toyland.augment import build_augmentations
    from toyland.data.collect import collect
    from toyland.data.mixture import build_sampler
    from toyland.policies import policy_config
    from toyland.policies.features import PolicyFeatures
    from toyland.train.trainer import AugmentStep, add_augment_keys

    collect(ENV, DEMOS, episodes=args.episodes, seed=0, workers=2, action_noise=0.02, progress=False)
    info = json.loads((Path(DEMOS) / "meta" / "info.json").read_text())
    cls, pconfig = policy_config({"name": "diffusion", "n_obs_steps": 1, "depth": True})
    features = PolicyFeatures.from_dataset_info(info, None, depth=True)
    device = torch.device("cpu")
    print(f"diffusion policy (Lift recipe), batch 64, {args.steps} steps per arm after 3 warm-up steps, "
          f"{torch.get_num_threads()} torch threads\n")
    print("| augment | step ms | augment ms | share of the step |")
    print("|---|---|---|---|")
    for name, entries in ARMS.items():
        augmentations = build_augmentations(entries)
        deltas = cls(pconfig, features, None).delta_timestamps()
        step = AugmentStep(augmentations, device) if len(augmentations) else None
        if step is not None:
            add_augment_keys(deltas, augmentations, info)
        sampler = build_sampler({"sources": [{"path": str(DEMOS)}]}, deltas, 64, seed=0, transform=step)
        torch.manual_seed(0)
        policy = cls(pconfig, features, sampler.stats())
        opt = torch.optim.AdamW(policy.parameters(), 1e-4)
        total = 0.0
        for i in range(args.steps + 3):
            if i == 3 and step is not None:
                step.seconds = 0.0
            t0 = time.perf_counter()
            loss, _ = policy(sampler.sample(i))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if i >= 3:
                total += time.perf_counter() - t0
        aug = step.seconds if step is not None else 0.0
        print(f"| {name} | {1000 * total / args.steps:.0f} | {1000 * aug / args.steps:.0f} | {aug / total:.1%} |")


if __name__ == "__main__":
    main()
