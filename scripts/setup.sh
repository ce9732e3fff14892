#!/usr/bin/env bash
# Installs everything toyland needs on a fresh Debian machine; safe to run again.
#   - Mesa for headless MuJoCo rendering (EGL, with OSMesa as the fallback)
#   - a virtual environment in .venv with toyland and its test tools
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 ffmpeg)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "[setup] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi

# Reinstall only when the dependency list changed.
stamp=".venv/.toyland-setup-$(sha1sum pyproject.toml | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  # lerobot 0.4.4 needs torch < 2.11, whose Linux wheels bring CUDA libraries: .venv ends up ~9.3 GB.
  need_gb=10
  free_gb=$(df -Pk . | awk 'NR==2 {print int($4 / 1048576)}')
  if [ "$free_gb" -lt "$need_gb" ]; then
    echo "[setup] error: installing needs about $need_gb GB free next to $(pwd), and only $free_gb GB is;" \
         "free some space (old clones' .venv folders are ~9 GB each) and run this again" >&2
    exit 1
  fi
  echo "[setup] installing toyland and its dependencies into .venv (~9.3 GB, most of it torch and CUDA libraries)"
  # (this machine's pip config lists local wheel folders that may not exist; hide those warnings)
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | { grep -v "^WARNING: Location 'file://" || true; }
  .venv/bin/python -m pip install -q -e ".[test]" 2>&1 | { grep -v "^WARNING: Location 'file://" || true; }
  rm -f .venv/.toyland-setup-*
  touch "$stamp"
fi
echo "[setup] ready: $(.venv/bin/python -c 'import toyland, mujoco, torch; print("toyland", toyland.__version__, "| mujoco", mujoco.__version__, "| torch", torch.__version__)')"
