from toyland.sim.tasks import lift, pick_place, push  # noqa: F401  (registration)
from toyland.sim.tasks.base import TASKS, Task

__all__ = ["TASKS", "Task"]
