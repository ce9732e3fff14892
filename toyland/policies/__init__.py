"""Policies: the policy API (base.py), the registry, toyland's diffusion policy and VLA, and
adapters that run lerobot's own policies through toyland's trainer and evaluation.

Policy modules are imported when their name is first looked up in ``POLICIES`` (see registry.py)."""

from toyland.policies.registry import POLICIES, make_policy, policy_config

__all__ = ["POLICIES", "make_policy", "policy_config"]
