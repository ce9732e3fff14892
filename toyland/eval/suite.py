"""Evaluation suites (configs/suite/*.yaml): the grid of cells a policy is scored on.

    base: {}                      # env overrides shared by every cell (e.g. factors at train)
    factors: [camera_viewpoint, lighting, distractors]
    levels: [ood_1, ood_2, ood_3] # each factor at each level, the others as in `base`
    toy_sets: [heldout]           # held-out object sets, each a cell
    combinations:                 # several factors at once, at one level
      - {factors: [camera_viewpoint, lighting], level: ood_2}
    cells:                        # named cells of env overrides on top of `base` (a shortcut's
      A-B: {shortcut: {mode: pinned, pin: [1, 0]}}   # mode and pin, e.g.; see configs/suite/shortcut_islands.yaml)

Cell ``id`` is ``base`` itself. Every cell runs the same seeds, and each factor draws from its own
random stream, so episode ``i`` of every cell has the same toys and poses and differs only in the
cell's factor: cells (and policies) are compared episode by episode.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from toyland.config_keys import reject_unknown_keys
from toyland.sim.factors import FACTORS, OOD_LEVELS, check_levels

SUITE_KEYS = {"base", "factors", "levels", "toy_sets", "combinations", "cells", "description"}
ID = "id"


@dataclass(frozen=True)
class Cell:
    name: str
    env: dict  # env overrides on top of the run's env config
    factor: str | None = None  # None for id; "toy_set" or "+"-joined names for the others
    level: str | None = None
    magnitude: int = 0  # 0 for id, k for ood_k: the x axis of the per-factor plots

    def to_dict(self) -> dict:
        return {"name": self.name, "env": self.env, "factor": self.factor, "level": self.level, "magnitude": self.magnitude}


@dataclass
class Suite:
    cells: list[Cell] = field(default_factory=list)

    def names(self) -> list[str]:
        return [c.name for c in self.cells]

    def cell(self, name: str) -> Cell:
        return next(c for c in self.cells if c.name == name)


def _with_factors(base: dict, levels: dict) -> dict:
    env = {k: v for k, v in base.items()}
    env["factors"] = {**(base.get("factors") or {}), **levels}
    check_levels(env["factors"])
    return env


def build_suite(cfg: dict) -> Suite:
    """Cells of a suite config; unknown factors, levels and toy sets raise before any episode."""
    from toyland.sim.toy_sets import get_toy_set

    cfg = dict(cfg or {})
    reject_unknown_keys(cfg, SUITE_KEYS, "suite config")
    base = dict(cfg.get("base") or {})
    if base.get("factors"):
        check_levels(base["factors"])
    levels = list(cfg.get("levels") or OOD_LEVELS)
    for level in levels:
        if level not in OOD_LEVELS:
            raise ValueError(f"suite level {level!r}; valid OOD levels: {', '.join(OOD_LEVELS)}")
    cells = [Cell(ID, base)]
    for factor in cfg.get("factors") or []:
        FACTORS.get(factor)  # names the registered factors when unknown
        for level in levels:
            cells.append(Cell(f"{factor}@{level}", _with_factors(base, {factor: level}), factor, level,
                              OOD_LEVELS.index(level) + 1))
    for toy_set in cfg.get("toy_sets") or []:
        get_toy_set(toy_set)  # raises with the valid names
        cells.append(Cell(f"toy_set@{toy_set}", {**base, "toy_set": toy_set}, "toy_set", toy_set, 1))
    for i, combo in enumerate(cfg.get("combinations") or []):
        reject_unknown_keys(combo, {"factors", "level"}, f"suite combination {i}")
        names, level = list(combo["factors"]), combo.get("level", "ood_1")
        if level not in OOD_LEVELS:
            raise ValueError(f"suite combination {names} level {level!r}; valid: {', '.join(OOD_LEVELS)}")
        cells.append(Cell(f"{'+'.join(names)}@{level}", _with_factors(base, {n: level for n in names}), "+".join(names),
                          level, OOD_LEVELS.index(level) + 1))
    for name, env in (cfg.get("cells") or {}).items():
        env = dict(env or {})
        if env.get("factors"):
            check_levels(env["factors"])
        merged = {**base, **env, "factors": {**(base.get("factors") or {}), **(env.get("factors") or {})}}
        cells.append(Cell(str(name), merged))  # no factor: off the per-factor plots, in the tables
    names = [c.name for c in cells]
    if len(set(names)) != len(names):
        raise ValueError(f"suite cells repeat: {sorted(n for n in names if names.count(n) > 1)}")
    return Suite(cells)
