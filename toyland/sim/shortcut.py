"""Shortcut scenarios (after "Shortcut learning in generalist robot policies", arXiv 2508.06426).

A nuisance factor is tied to the instructed target: each cue slot k pins the factor to
``values[k]`` and names ``colours[k]`` for its object. ``correlated`` (training): the cue always
matches the instructed target, so a policy can solve the training data by reading the cue and
ignoring the instruction. ``swapped`` (evaluation): the cue points to another object than the
instruction. ``independent``: the cue is drawn apart from the target. The env then reports both the
instructed success and ``cue_success``: the object the cue points to was carried out instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from toyland.config_keys import reject_unknown_keys
from toyland.sim.factors import FACTORS

MODES = ("correlated", "swapped", "independent")
KEYS = {"factor", "values", "colours", "mode"}


@dataclass(frozen=True)
class Shortcut:
    factor: str
    values: tuple[dict, ...]
    colours: tuple[str, ...]
    mode: str = "correlated"

    def __post_init__(self):
        factor = FACTORS.get(self.factor)
        if self.mode not in MODES:
            raise ValueError(f"shortcut mode '{self.mode}'; valid: {', '.join(MODES)}")
        if len(self.values) < 2 or len(self.values) != len(self.colours):
            raise ValueError("a shortcut needs at least two cue values and one colour per value")
        if len(set(self.colours)) != len(self.colours):
            raise ValueError(f"shortcut colours must differ, got {self.colours}")
        for value in self.values:
            factor.sample(value, np.random.default_rng(0))  # names its axes or raises

    @classmethod
    def from_config(cls, cfg: dict) -> "Shortcut":
        cfg = dict(cfg)
        reject_unknown_keys(cfg, KEYS, "shortcut")
        return cls(
            factor=cfg["factor"],
            values=tuple(dict(v) for v in cfg["values"]),
            colours=tuple(cfg["colours"]),
            mode=cfg.get("mode", "correlated"),
        )

    def draw(self, rng: np.random.Generator) -> tuple[int, int, dict]:
        """(instructed target slot, cue slot, the pinned factor value of the cue)."""
        k = len(self.values)
        target = int(rng.integers(k))
        if self.mode == "correlated":
            cue = target
        elif self.mode == "swapped":
            cue = (target + 1 + int(rng.integers(k - 1))) % k
        else:
            cue = int(rng.integers(k))
        return target, cue, dict(self.values[cue])
