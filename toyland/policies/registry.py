"""POLICIES: policy name -> class. ``make_policy`` builds one from a config dict (Hydra's
``policy`` group): ``name`` picks the class, the other keys are its config dataclass's fields."""

from __future__ import annotations

import dataclasses

from toyland.config_keys import reject_unknown_keys
from toyland.registry import Registry

POLICIES: Registry[type] = Registry("policy")


def policy_config(cfg: dict):
    """(class, config instance) from ``{name: ..., <field>: ...}``; unknown fields are named."""
    import toyland.policies  # noqa: F401  (registers every policy)

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
