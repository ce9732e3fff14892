"""toyland: a robot-learning generalization testbed on MuJoCo toys.

Importing toyland chooses a headless GL backend (before MuJoCo loads) and registers the
gymnasium environments ``toyland/<Task>-v0``.
"""

from toyland.sim import gl as _gl

_gl.choose_backend()

from toyland.sim.env import ToylandEnv, register_envs  # noqa: E402

register_envs()

__all__ = ["ToylandEnv", "register_envs"]
__version__ = "0.1.0"
