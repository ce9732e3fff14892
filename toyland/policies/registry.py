"""POLICIES: policy name -> class. ``make_policy`` builds one from a config dict (Hydra's
``policy`` group): ``name`` picks the class, the other keys are its config dataclass's fields.

The built-in policies are declared here by the module that registers each, and imported on first
lookup: this module imports no policy, so neither it nor ``toyland.policies`` forms an import cycle,
and naming ``diffusion`` does not import lerobot."""

from __future__ import annotations

import dataclasses

from toyland.config_keys import reject_unknown_keys
from toyland.registry import Registry

POLICIES: Registry[type] = Registry("policy")
BUILTIN = {
    "diffusion": "toyland.policies.diffusion",
    "vla": "toyland.policies.vla",
    "lerobot": "toyland.policies.lerobot_adapter",
    "lerobot_diffusion": "toyland.policies.lerobot_adapter",
    "lerobot_act": "toyland.policies.lerobot_adapter",
}
for _name, _module in BUILTIN.items():
    POLICIES.register_lazy(_name, _module)


def policy_config(cfg: dict):
    """(class, config instance) from ``{name: ..., <field>: ...}``; unknown fields are named."""
    cfg = dict(cfg)
    if "name" not in cfg:
        raise ValueError(f"policy config needs a `name`; registered policies: {', '.join(POLICIES.names())}")
    cls = POLICIES.get(cfg.pop("name"))
    fields = {f.name: f for f in dataclasses.fields(cls.config_class)}
    reject_unknown_keys(cfg, fields, f"policy '{cls.name}' config")
    for key, value in cfg.items():  # YAML gives lists where the dataclass keeps tuples
        if isinstance(value, list) and isinstance(fields[key].default, tuple):
            cfg[key] = tuple(value)
    return cls, cls.config_class(**cfg)


def make_policy(cfg: dict, features, stats: dict | None):
    cls, config = policy_config(cfg)
    return cls(config, features, stats)
