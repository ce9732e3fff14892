"""Shared by the benchmarks: the demonstration dataset they read (collected once, resumable)."""

from __future__ import annotations

from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
DEMOS = OUT / "lift_demos"  # 100 Lift demonstrations the speed benchmarks train on
ENV = {"task": "lift", "image_size": 64, "cameras": ["front", "wrist"]}


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


def time_sampler_training(policy, sampler, steps: int, prefetch: int = 2, warmup: int = 2) -> tuple[float, float]:
    """``time_training`` fed by ``sampler``: through its prefetch thread, or assembled in the loop (0)."""
    if not prefetch:
        counter = iter(range(10**9))
        return time_training(policy, lambda: sampler.sample(next(counter)), steps, warmup)
    stream = sampler.batches(prefetch=prefetch)
    try:
        return time_training(policy, lambda: next(stream), steps, warmup)
    finally:
        stream.close()
