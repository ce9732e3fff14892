#!/usr/bin/env bash
# The main job on the small default: install what is missing, then the whole loop on Lift:
# collect expert demonstrations into a LeRobotDataset, train toyland's diffusion policy briefly,
# evaluate it on held-out seeds and print its success rate. Extra Hydra overrides go to `toyland
# train`, e.g. `bash scripts/demo.sh steps=2000 policy=lerobot_act`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/toyland collect episodes=30 env.image_size=64 output_dir=outputs/quickstart/data \
  hydra.run.dir=outputs/quickstart/collect
exec .venv/bin/toyland train experiment=quickstart "$@"
