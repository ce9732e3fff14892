"""Shared by the benchmarks: the demonstration dataset they read (collected once, resumable)."""

from __future__ import annotations

from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
DEMOS = OUT / "learn_lift" / "data"  # the learn_lift benchmark's 100 Lift demonstrations
ENV = {"task": "lift", "image_size": 64, "cameras": ["front", "wrist"]}  # as configs/experiment/learn_lift.yaml


def demos(episodes: int = 100) -> Path:
    from toyland.data.collect import collect

    collect(ENV, DEMOS, episodes=episodes, seed=0, workers=2, progress=True)
    return DEMOS


def time_training(policy, next_batch, steps: int, warmup: int = 2) -> tuple[float, float]:
    """Seconds per optimizer step and the share of it spent in ``next_batch()``, warm-up excluded."""
    import time

    import torch

    opt = torch.optim.AdamW(policy.parameters(), 1e-4)
    wait = total = 0.0
    for i in range(steps + warmup):
        t0 = time.perf_counter()
        batch = next_batch()
        t1 = time.perf_counter()
        loss, _ = policy(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= warmup:
            wait, total = wait + t1 - t0, total + time.perf_counter() - t0
    return total / steps, wait / total
