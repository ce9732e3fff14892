"""Scenarios: YAML files in configs/scenario/ that fix how factors are sampled for training and for
evaluation. Top-level env keys hold for both splits; ``train:`` and ``eval:`` add or override
them (typically ``factors`` levels, a ``shortcut`` and its mode, and the toy set)."""

from __future__ import annotations

from pathlib import Path

import yaml

from toyland.config_keys import reject_unknown_keys
from toyland.sim import ENV_KEYS

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "configs" / "scenario"
SPLITS = ("train", "eval")


def scenario_names() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def load_scenario(name: str) -> dict:
    path = SCENARIO_DIR / f"{name}.yaml"
    if not path.is_file():
        raise KeyError(f"unknown scenario '{name}'; valid scenarios: {', '.join(scenario_names())}")
    return yaml.safe_load(path.read_text()) or {}


def split_env_config(cfg: dict, split: str, source: str = "scenario") -> dict:
    """The env config of one split of a scenario dict (pass to ``make_env``)."""
    if split not in SPLITS:
        raise ValueError(f"scenario split '{split}'; valid: {', '.join(SPLITS)}")
    reject_unknown_keys(cfg, ENV_KEYS | set(SPLITS) | {"description"}, source)
    for name in SPLITS:
        reject_unknown_keys(cfg.get(name) or {}, ENV_KEYS, f"{source} ({name} split)")
    env = {k: v for k, v in cfg.items() if k in ENV_KEYS}
    for key, value in (cfg.get(split) or {}).items():
        if key == "factors":
            env["factors"] = {**(env.get("factors") or {}), **value}
        else:
            env[key] = value
    return env


def scenario_env_config(name: str, split: str) -> dict:
    return split_env_config(load_scenario(name), split, source=str(SCENARIO_DIR / f"{name}.yaml"))
