"""Training throughput: toyland's diffusion policy against lerobot's DiffusionPolicy (through
toyland's adapter) on the same data, image size, batch and windows, in one run.

lerobot's image encoder is a torchvision ResNet (resnet18 at the smallest), so the comparison is
made at two sizes: toyland's CPU default, and toyland with an encoder as wide as resnet18's stages
("matched"); the U-Net widths are the same for all three. Reported: parameters, steps/s, the
ratio toyland / lerobot, and the share of each step spent waiting for data.

    .venv/bin/python benchmarks/train_throughput.py [--steps 20] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json

import torch

from common import demos, time_sampler_training

UNET = [32, 64, 128]
CONFIGS = {
    "toyland diffusion (CPU default)": {"name": "diffusion", "down_dims": UNET},
    "toyland diffusion (resnet18-wide encoder)": {"name": "diffusion", "down_dims": UNET, "channels": [64, 128, 256, 512]},
    "lerobot DiffusionPolicy (resnet18)": {"name": "lerobot_diffusion", "overrides": {"down_dims": UNET}},
}


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
        rows[label] = (params, rate, share)
    base = rows["lerobot DiffusionPolicy (resnet18)"][1]
    print(f"batch {args.batch_size}, 64x64 images, 2-frame history, 16-step chunks, {torch.get_num_threads()} threads")
    for label, (params, rate, share) in rows.items():
        print(f"  {label:44s} {params / 1e6:6.2f} M params  {rate:5.2f} steps/s  x{rate / base:4.2f} lerobot  data {share:5.1%}")


if __name__ == "__main__":
    main()
