"""Shared by the benchmarks: the demonstration dataset they read (collected once, resumable)."""

from __future__ import annotations

from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
DEMOS = OUT / "learn_lift" / "data"  # the learn_lift benchmark's 100 Lift demonstrations at 64x64


def demos(episodes: int = 100) -> Path:
    from toyland.data.collect import collect

    collect({"task": "lift", "image_size": 64}, DEMOS, episodes=episodes, seed=0, workers=2, progress=True)
    return DEMOS
