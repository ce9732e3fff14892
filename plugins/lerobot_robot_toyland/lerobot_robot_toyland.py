"""Registers ``--robot.type=toyland`` with lerobot (the code lives in toyland.plugins.toyland_robot)."""

from toyland.plugins import config_toyland_robot  # noqa: F401
