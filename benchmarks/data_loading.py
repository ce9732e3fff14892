"""Data side of training: lerobot's LeRobotDataset + DataLoader against toyland's decode-once
BatchSampler on the same dataset, windows and batch; and the share of a diffusion-policy training
step spent waiting for data, with and without the prefetch thread, and what the thread costs the step
(a torch kernel on it once slowed every step by a third). Measured side by side in one run.

    .venv/bin/python benchmarks/data_loading.py [--batches 30]
"""

from __future__ import annotations

import argparse
import time

import torch

from common import demos, time_sampler_training


def lerobot_batches_per_s(root, deltas, batch_size, n, workers):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("bench/lift", root=root, delta_timestamps=deltas)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         generator=torch.Generator().manual_seed(0), persistent_workers=workers > 0)
    it = iter(loader)
    next(it)  # worker start-up is not a per-batch cost
    t = time.perf_counter()
    for _ in range(n):
        next(it)
    return n / (time.perf_counter() - t)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    from toyland.data.batches import BatchSampler, Source
    from toyland.data.frames import FrameStore
    from toyland.policies import make_policy
    from toyland.policies.features import PolicyFeatures
    import json

    root = demos()
    features = PolicyFeatures.from_dataset_info(json.loads((root / "meta" / "info.json").read_text()))
    probe = make_policy({"name": "diffusion"}, features, None)
    deltas = probe.delta_timestamps()
    t = time.perf_counter()
    store = FrameStore.load(root, keys=list(deltas))
    decode_s = time.perf_counter() - t
    sampler = BatchSampler([Source("lift", store)], deltas, args.batch_size)
    sampler.sample(0)
    t = time.perf_counter()
    for i in range(args.batches):
        sampler.sample(i)
    ours = args.batches / (time.perf_counter() - t)
    theirs0 = lerobot_batches_per_s(root, deltas, args.batch_size, args.batches, workers=0)
    theirs2 = lerobot_batches_per_s(root, deltas, args.batch_size, args.batches, workers=2)
    policy = make_policy({"name": "diffusion"}, features, sampler.stats())
    step_sync, share_sync = time_sampler_training(policy, sampler, args.batches, prefetch=0)
    step_pre, share_pre = time_sampler_training(policy, sampler, args.batches, prefetch=2)
    print(f"dataset: {len(store)} frames, {store.num_episodes} episodes; decode once: {decode_s:.1f} s")
    print(f"batches of {args.batch_size} (2-frame history, 16-step chunks, 64x64 images):")
    print(f"  lerobot LeRobotDataset + DataLoader, 0 workers: {theirs0:7.1f} batches/s")
    print(f"  lerobot LeRobotDataset + DataLoader, 2 workers: {theirs2:7.1f} batches/s")
    print(f"  toyland BatchSampler (decoded once):            {ours:7.1f} batches/s  ({ours / max(theirs0, theirs2):.1f}x lerobot's best)")
    print("diffusion policy training step:")
    print(f"  batches assembled in the loop:   step {step_sync * 1000:4.0f} ms, data share {share_sync:6.1%}")
    print(f"  prefetch thread (the trainer's): step {step_pre * 1000:4.0f} ms, data share {share_pre:6.1%}  (target <= 5%)")
    print(f"  step with the thread / in the loop: {step_pre / step_sync:.2f}  (goal <= 1.05: the thread must not slow the step beyond timing noise)")


if __name__ == "__main__":
    main()
