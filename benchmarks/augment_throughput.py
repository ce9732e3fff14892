"""`toyland augment` throughput against collection's, for the same config, side by side in one run.

    .venv/bin/python benchmarks/augment_throughput.py [--episodes 4] [--image-size 64] [--workers 1]

Collects ``--episodes`` Lift demonstrations (front and wrist RGB) with ``toyland collect``'s function,
then re-renders them with ``toyland augment``'s at ``camera_viewpoint`` and ``lighting`` ood_1, both
end to end into a fresh LeRobotDataset (writing and checkpointing included). Frames per second is
frames written over wall time. Collection simulates physics, runs the expert and renders; augment
sets recorded states and renders, so the gap is what physics and the expert cost.
"""

from __future__ import annotations

import toyland  # noqa: F401, I001  (first: picks the headless GL backend before mujoco loads)

import argparse
import shutil
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out" / "augment_throughput"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    from toyland.data.collect import collect
    from toyland.data.episode_log import read_episode_log
    from toyland.data.rerender import augment

    env = {"task": "lift", "image_size": args.image_size, "cameras": ["front", "wrist"]}
    shutil.rmtree(OUT, ignore_errors=True)
    source, target = OUT / "source", OUT / "viewpoint"
    t0 = time.perf_counter()
    collect(env, source, episodes=args.episodes, seed=0, workers=args.workers, progress=False)
    collect_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    augment(source, target, {"camera_viewpoint": "ood_1", "lighting": "ood_1"}, seed=0, workers=args.workers,
            progress=False)
    augment_s = time.perf_counter() - t0
    frames = sum(e["length"] for e in read_episode_log(source).episodes)
    discarded = len(read_episode_log(source).discarded)
    print(f"Lift, front + wrist RGB at {args.image_size}x{args.image_size}, {args.episodes} episodes kept "
          f"({discarded} discarded), {frames} frames, workers={args.workers}")
    print("| command | wall s | frames/s |")
    print("|---|---|---|")
    print(f"| collect | {collect_s:.1f} | {frames / collect_s:.0f} |")
    print(f"| augment (camera_viewpoint, lighting ood_1) | {augment_s:.1f} | {frames / augment_s:.0f} |")
    print(f"augment / collect: {collect_s / augment_s:.1f}x")


if __name__ == "__main__":
    main()
