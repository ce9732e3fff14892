"""Registers ``--policy.type=toyland_diffusion`` and ``toyland_vla`` with lerobot (toyland.plugins)."""

from toyland.plugins import configuration_toyland  # noqa: F401
