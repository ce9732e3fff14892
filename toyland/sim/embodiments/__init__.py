"""Robots: each builds its own MjSpec and is attached to the arena under ``<name>/``."""

from toyland.sim.embodiments import floating_gripper, panda, so101  # noqa: F401  (registration)
from toyland.sim.embodiments.base import EMBODIMENTS, Embodiment, get_embodiment

__all__ = ["EMBODIMENTS", "Embodiment", "get_embodiment"]
