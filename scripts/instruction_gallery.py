"""Each episode's front view beside the picture its instruction shows (env.instruction=image):
Language Lift on train toys, then Lift on the two mesh sets (docs/instruction_pictures.png).

    .venv/bin/python scripts/instruction_gallery.py [--size 128] [--out docs/instruction_pictures.png]
"""

from __future__ import annotations

import toyland  # noqa: F401, I001  (headless GL first)

import argparse
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from toyland.sim import make_env
from toyland.sim.instructions import INSTRUCTION_PICTURE

PANELS = [  # (env options, episode seeds)
    ({"task": "language_lift", "toy_set": "train"}, (0, 1, 2)),
    ({"task": "lift", "toy_set": "pybullet_household"}, (0, 1)),
    ({"task": "lift", "toy_set": "pybullet_random"}, (0, 1)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--out", default="docs/instruction_pictures.png")
    args = parser.parse_args()
    tiles = []
    for options, seeds in PANELS:
        env = make_env(cameras=["front"], image_size=args.size, instruction="image",
                       instruction_picture_size=args.size // 2, **options)
        for seed in seeds:
            obs, _ = env.reset(seed=seed)
            picture = np.full((args.size, args.size // 2, 3), 255, np.uint8)
            picture[args.size // 4: args.size // 4 + args.size // 2] = obs[INSTRUCTION_PICTURE]
            tiles.append(np.concatenate([obs["observation.images.front"], picture], 1))
        env.close()
    gap = np.full((args.size, 6, 3), 255, np.uint8)
    row = np.concatenate([part for tile in tiles for part in (tile, gap)][:-1], 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    imageio.imwrite(args.out, row)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
