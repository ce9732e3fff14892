"""Renders one Language Lift episode under several factor levels side by side (docs/factors.png).

    .venv/bin/python scripts/factor_gallery.py [--seed 3] [--size 160] [--out docs/factors.png]
"""

from __future__ import annotations

import toyland  # noqa: F401, I001  (headless GL first)

import argparse
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from toyland.sim import make_env

PANELS = [
    ("nominal", {}),
    ("camera ood_2", {"camera_viewpoint": "ood_2"}),
    ("lighting ood_3", {"lighting": "ood_3"}),
    ("table ood_2", {"table_appearance": "ood_2"}),
    ("distractors ood_2", {"distractors": "ood_2"}),
    ("target ood_3", {"target_appearance": "ood_3"}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--out", default="docs/factors.png")
    args = parser.parse_args()
    tiles = []
    for label, factors in PANELS:
        env = make_env(task="language_lift", cameras={"front": {"height": args.size, "width": args.size}}, factors=factors)
        obs, _ = env.reset(seed=args.seed)
        tiles.append(obs["observation.images.front"])
        print(f"{label:>18s}: {obs['task']}")
        env.close()
    gap = np.full((args.size, 4, 3), 255, np.uint8)
    row = np.concatenate([x for tile in tiles for x in (tile, gap)][:-1], axis=1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    imageio.imwrite(args.out, row)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
