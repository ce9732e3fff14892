"""Headless OpenGL selection. Must run before ``mujoco`` is first imported anywhere.

MuJoCo picks ``mujoco.GLContext`` from MUJOCO_GL when it is first imported. We choose EGL when
libEGL loads, else OSMesa, and create contexts from that backend's module directly
(:func:`context_class`), so toyland renders headless even when mujoco was imported first. With
neither library, rendering fails with :class:`GLUnavailableError` naming the packages to install
(simulation without cameras still works).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

INSTALL_HINT = (
    "MuJoCo could not create a headless OpenGL context. On Debian/Ubuntu install Mesa with\n"
    "  sudo apt-get install -y libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6\n"
    "(scripts/setup.sh does this), or set MUJOCO_GL=egl|osmesa|glfw to pick a backend yourself."
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


def context_class():
    """The GLContext class of the backend in force (EGL or OSMesa unless the user chose another)."""
    backend = choose_backend()
    try:
        if backend == "egl":
            from mujoco.egl import GLContext
        elif backend == "osmesa":
            from mujoco.osmesa import GLContext
        elif backend:
            from mujoco import GLContext  # the user's explicit choice, e.g. glfw with a display
        else:
            raise GLUnavailableError(f"{INSTALL_HINT}\n(neither libEGL nor libOSMesa could be loaded)")
    except ImportError as err:
        raise GLUnavailableError(f"{INSTALL_HINT}\n(MUJOCO_GL={backend}: {err})") from err
    return GLContext
