#!/usr/bin/env bash
# Installs everything toyland needs on a fresh Debian machine; safe to run again.
#   - Mesa for headless MuJoCo rendering (EGL, with OSMesa as the fallback)
#   - a Python 3.12 virtual environment in .venv with toyland, its lerobot plugins and its test tools
set -euo pipefail
cd "$(dirname "$0")/.."

# (g++: pybullet, whose meshes toyland's held-out object sets use, builds from source on Python 3.12)
APT_PACKAGES=(libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 ffmpeg g++)
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

# toyland needs Python 3.12 (lerobot 0.5 and later do): $PYTHON, python3.12 on PATH, or pyenv's newest 3.12
is_312() { [ -n "$1" ] && command -v "$1" >/dev/null && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; }  # (a pyenv shim of an unselected version fails)
find_python() {
  for candidate in "${PYTHON:-}" python3.12; do
    if is_312 "$candidate"; then command -v "$candidate"; return 0; fi
  done
  if command -v pyenv >/dev/null; then
    local version
    version=$(pyenv versions --bare 2>/dev/null | grep -E '^3\.12(\.[0-9]+)?$' | sort -V | tail -1)
    if [ -n "$version" ] && is_312 "$(pyenv root)/versions/$version/bin/python3.12"; then
      echo "$(pyenv root)/versions/$version/bin/python3.12"; return 0
    fi
  fi
  return 1
}
if [ -x .venv/bin/python ] && ! is_312 .venv/bin/python; then
  echo "[setup] .venv is $(.venv/bin/python --version 2>&1); toyland now needs Python 3.12: making a new .venv"
  rm -rf .venv
fi
if [ ! -x .venv/bin/python ]; then
  if ! PYTHON=$(find_python); then
    echo "[setup] error: toyland needs Python 3.12 and none was found (not \$PYTHON, python3.12 on PATH, nor pyenv's 3.12)." >&2
    echo "[setup] get one with 'pyenv install 3.12', or 'apt-get install python3.12 python3.12-venv' where Debian has it," >&2
    echo "[setup] then run this again (or PYTHON=/path/to/python3.12 bash scripts/setup.sh)" >&2
    exit 1
  fi
  echo "[setup] creating .venv with $($PYTHON --version) ($PYTHON)"
  "$PYTHON" -m venv .venv
fi

# Reinstall only when the dependency list changed.
PLUGINS=(plugins/lerobot_env_toyland plugins/lerobot_policy_toyland plugins/lerobot_robot_toyland)
stamp=".venv/.toyland-setup-$(cat pyproject.toml plugins/*/pyproject.toml | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  # torch's Linux wheels bring CUDA libraries: .venv ends up ~9.5 GB.
  need_gb=10
  free_gb=$(df -Pk . | awk 'NR==2 {print int($4 / 1048576)}')
  if [ "$free_gb" -lt "$need_gb" ]; then
    echo "[setup] error: installing needs about $need_gb GB free next to $(pwd), and only $free_gb GB is;" \
         "free some space (old clones' .venv folders are ~9 GB each) and run this again" >&2
    exit 1
  fi
  echo "[setup] installing toyland, its lerobot plugins and their dependencies into .venv (~9.5 GB, most of it torch" \
       "and CUDA libraries; about 10 minutes the first time, 5 of them building pybullet, which has no Python 3.12 wheel)"
  # (this machine's pip config lists local wheel folders that may not exist; hide those warnings)
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | { grep -v "^WARNING: Location 'file://" || true; }
  editable=(-e ".[test]"); for plugin in "${PLUGINS[@]}"; do editable+=(-e "$plugin"); done
  .venv/bin/python -m pip install -q "${editable[@]}" 2>&1 | { grep -v "^WARNING: Location 'file://" || true; }
  rm -f .venv/.toyland-setup-*
  touch "$stamp"
fi
echo "[setup] ready: $(.venv/bin/python -c 'import toyland, mujoco, torch; print("toyland", toyland.__version__, "| mujoco", mujoco.__version__, "| torch", torch.__version__)')"
