"""Policies: the policy API (base.py), the registry, toyland's diffusion policy and VLA, and
adapters that run lerobot's own policies through toyland's trainer and evaluation."""

from toyland.policies.registry import POLICIES, make_policy, policy_config
from toyland.policies import diffusion  # noqa: F401  (registers "diffusion")
from toyland.policies import vla  # noqa: F401  (registers "vla")
from toyland.policies import lerobot_adapter  # noqa: F401  (registers "lerobot_diffusion", "lerobot_act", ...)

__all__ = ["POLICIES", "make_policy", "policy_config"]
