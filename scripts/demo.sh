#!/usr/bin/env bash
# The main job on the small default: install what is missing, then run `toyland demo` (Hydra
# overrides pass through, e.g. `bash scripts/demo.sh episodes=50 env.embodiment=floating_gripper`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/toyland demo "$@"
