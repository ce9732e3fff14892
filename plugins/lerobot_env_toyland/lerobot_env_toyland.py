"""Registers ``--env.type=toyland`` with lerobot (the code lives in toyland.plugins.env)."""

from toyland.plugins import env  # noqa: F401
