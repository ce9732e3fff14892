"""Headless OpenGL selection. Must run before ``mujoco`` is first imported anywhere.

MuJoCo picks its GL backend from MUJOCO_GL at import time. We choose EGL when libEGL loads,
else OSMesa, and otherwise leave it unset so that rendering fails with :class:`GLUnavailableError`
naming the packages to install (simulation without cameras still works).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

INSTALL_HINT = (
    "MuJoCo could not create a headless OpenGL context. On Debian/Ubuntu install Mesa with\n"
    "  sudo apt-get install -y libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6\n"
    "(scripts/setup.sh does this), or set MUJOCO_GL=egl|osmesa|glfw to pick a backend yourself.\n"
    "If mujoco was imported before toyland, MuJoCo chose its GL backend then: import toyland first\n"
    "or export MUJOCO_GL=egl."
)


class GLUnavailableError(RuntimeError):
    pass


def _loads(*names: str) -> bool:
    for name in names:
        path = ctypes.util.find_library(name)
        for candidate in filter(None, (path, f"lib{name}.so.1", f"lib{name}.so.0", f"lib{name}.so")):
            try:
                ctypes.CDLL(candidate)
                return True
            except OSError:
                continue
    return False


def choose_backend() -> str | None:
    """Sets MUJOCO_GL (and PYOPENGL_PLATFORM) if the user has not, returns the backend in force."""
    # Mesa's llvmpipe rasterizes on a thread pool that a forked child does not inherit, so a
    # worker forked after the parent rendered (gymnasium's AsyncVectorEnv) deadlocks in its first
    # MjrContext. Rasterizing on the calling thread is fork-safe and no slower at camera sizes.
    os.environ.setdefault("LP_NUM_THREADS", "0")
    chosen = os.environ.get("MUJOCO_GL")
    if chosen:
        return chosen
    if _loads("EGL"):
        chosen = "egl"
    elif _loads("OSMesa"):
        chosen = "osmesa"
    else:
        return None
    os.environ["MUJOCO_GL"] = chosen
    os.environ.setdefault("PYOPENGL_PLATFORM", chosen)
    return chosen
