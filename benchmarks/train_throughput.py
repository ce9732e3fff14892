"""Training throughput: toyland's diffusion policy against lerobot's DiffusionPolicy (through
toyland's adapter) on the same data, image size, batch and windows, in one run.

lerobot's image encoder is a torchvision ResNet (resnet18 at the smallest, one shared by the
cameras), so toyland (one encoder per camera) is measured at its CPU default and at two sizes
comparable to resnet18: stages as wide as resnet18's (64-512 channels, each at twice resnet18's
resolution), and resnet18's resolution schedule (32-512, one residual block per stage where
resnet18 has two). The U-Net widths are the same for all. Reported: parameters, steps/s, the
ratio toyland / lerobot, the share of each step spent waiting for data, and the arithmetic of one
training step (forward and backward, counted by torch's FlopCounterMode): parameters alone don't
say how much work a conv net does, which depends on the resolution each stage runs at.

    .venv/bin/python benchmarks/train_throughput.py [--steps 20] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.utils.flop_counter import FlopCounterMode

from common import demos, time_sampler_training

UNET = [32, 64, 128]
CONFIGS = {
    "toyland diffusion (CPU default)": {"name": "diffusion", "down_dims": UNET},
    "toyland diffusion (resnet18-wide encoder)": {"name": "diffusion", "down_dims": UNET, "channels": [64, 128, 256, 512]},
    # resnet18's resolution schedule (64 channels at 1/4 of the image, ..., 512 at 1/32) with one block per stage
    "toyland diffusion (resnet18-schedule encoder)": {"name": "diffusion", "down_dims": UNET, "channels": [32, 64, 128, 256, 512]},
    "lerobot DiffusionPolicy (resnet18)": {"name": "lerobot_diffusion", "overrides": {"down_dims": UNET}},
}


def step_flops(policy, sampler) -> float:
    batch = sampler.sample(0)
    with FlopCounterMode(display=False) as counter:
        loss, _ = policy(batch)
        loss.backward()
    policy.zero_grad()
    return counter.get_total_flops()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    from toyland.data.mixture import build_sampler
    from toyland.policies import make_policy
    from toyland.policies.features import PolicyFeatures

    root = demos()
    features = PolicyFeatures.from_dataset_info(json.loads((root / "meta" / "info.json").read_text()))
    rows = {}
    for label, cfg in CONFIGS.items():
        probe = make_policy(cfg, features, None)
        sampler = build_sampler({"sources": [str(root)]}, probe.delta_timestamps(), args.batch_size, seed=0)
        torch.manual_seed(0)
        policy = make_policy(cfg, features, sampler.stats()).train()
        params = sum(p.numel() for p in policy.parameters())
        step_s, share = time_sampler_training(policy, sampler, args.steps, warmup=3)
        rate = 1.0 / step_s
        rows[label] = (params, rate, share, step_flops(policy, sampler))
    base = rows["lerobot DiffusionPolicy (resnet18)"][1]
    print(f"batch {args.batch_size}, 64x64 images, 2-frame history, 16-step chunks, {torch.get_num_threads()} threads")
    for label, (params, rate, share, flops) in rows.items():
        print(f"  {label:46s} {params / 1e6:6.2f} M params  {flops / 1e9:6.1f} GFLOP/step  {rate:5.2f} steps/s  "
              f"x{rate / base:4.2f} lerobot  {flops * rate / 1e9:5.1f} GFLOP/s  data {share:5.1%}")


if __name__ == "__main__":
    main()
