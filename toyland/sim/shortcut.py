"""Shortcut scenarios (after "Shortcut learning in generalist robot policies", arXiv 2508.06426).

A nuisance factor is tied to the instructed target: each cue slot k pins the factor to
``values[k]`` and names ``colours[k]`` for its object. ``correlated`` (training): the cue always
matches the instructed target, so a policy can solve the training data by reading the cue and
ignoring the instruction. ``swapped`` (evaluation): the cue points to another object than the
instruction. ``independent``: the cue is drawn apart from the target. ``pinned``: ``pin: [target,
cue]`` fixes both slots (the evaluation cells of the paper: island A's view with B's instruction is
``pin: [1, 0]``). The env then reports both the instructed success and ``cue_success``: the object
the cue points to was carried out instead.

The paper's islands: ``islands: {axis, disparity, width, centre}`` instead of ``values`` gives slot
k the range ``[c_k - width/2, c_k + width/2]`` of one axis, the centres ``c_k`` ``disparity`` apart
and centred on ``centre``: width is the diversity inside an island, disparity the distance between
islands. Any value may give an axis a range ``[lo, hi]`` instead of a number; the episode's value is
drawn uniformly from it (``draw_level``; ``toyland augment`` takes such levels too). ``extra_cues:
{factor: [value per slot]}`` pins more factors to the cue slot (a second cue, e.g. the table's
colour).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from toyland.config_keys import reject_unknown_keys
from toyland.sim.factors import FACTORS, check_levels

MODES = ("correlated", "swapped", "independent", "pinned")
KEYS = {"factor", "values", "islands", "colours", "mode", "pin", "extra_cues"}
ISLAND_KEYS = {"axis", "disparity", "width", "centre"}


# --- levels whose axes may be ranges ------------------------------------------------------------


def _is_range(value) -> bool:
    return isinstance(value, (list, tuple))


def _range_ends(level: dict, which: int) -> dict:
    return {axis: (value[which] if _is_range(value) else value) for axis, value in level.items()}


def check_level(name: str, level) -> None:
    """Validates one factor level that may give continuous axes as ``[lo, hi]`` ranges."""
    if not hasattr(level, "items"):
        check_levels({name: level})
        return
    factor = FACTORS.get(name)
    for axis, value in level.items():
        if not _is_range(value):
            continue
        if axis in factor.axes and factor.axes[axis].categorical:
            raise ValueError(f"factor '{name}' axis '{axis}' is categorical; give one of its choices, not a range {value}")
        if len(value) != 2 or not float(value[0]) <= float(value[1]):
            raise ValueError(f"factor '{name}' axis '{axis}' range {value}: give [lo, hi] with lo <= hi")
    check_levels({name: _range_ends(level, 0)})  # both ends inside the axis's declared range
    check_levels({name: _range_ends(level, 1)})


def check_ranged_levels(levels: dict | None) -> dict:
    levels = dict(levels or {})
    for name, level in levels.items():
        check_level(name, level)
    return levels


def resolve_ranges(level, rng: np.random.Generator):
    """``level`` with each ``[lo, hi]`` axis drawn uniformly (in axis order); other levels unchanged."""
    if not hasattr(level, "items"):
        return level
    return {axis: float(rng.uniform(float(v[0]), float(v[1]))) if _is_range(v) else v for axis, v in level.items()}


def draw_level(name: str, level, rng: np.random.Generator) -> dict:
    """Factor ``name``'s values at ``level``, whose axes may be ``[lo, hi]`` ranges."""
    return FACTORS.get(name).sample(resolve_ranges(level, rng), rng)


# --- islands ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Islands:
    """K islands along one axis: centres ``disparity`` apart around ``centre``, each ``width`` wide."""

    axis: str
    disparity: float
    width: float = 0.0
    centre: float = 0.0

    @classmethod
    def from_config(cls, cfg: dict) -> "Islands":
        cfg = dict(cfg)
        reject_unknown_keys(cfg, ISLAND_KEYS, "shortcut islands")
        return cls(str(cfg["axis"]), float(cfg["disparity"]), float(cfg.get("width", 0.0)), float(cfg.get("centre", 0.0)))

    def values(self, k: int) -> tuple[dict, ...]:
        if self.disparity <= 0 or self.width < 0:
            raise ValueError(f"shortcut islands need disparity > 0 and width >= 0, got {self.disparity}, {self.width}")
        out = []
        for i in range(k):
            c = self.centre + (i - (k - 1) / 2) * self.disparity
            out.append({self.axis: [c - self.width / 2, c + self.width / 2]} if self.width else {self.axis: c})
        return tuple(out)


# --- the shortcut -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shortcut:
    factor: str
    values: tuple[dict, ...]
    colours: tuple[str, ...]
    mode: str = "correlated"
    pin: tuple[int, int] | None = None
    extra_cues: dict = field(default_factory=dict)  # factor -> one value per slot
    dropped: frozenset = frozenset()  # factors still drawn (same random stream) but no longer pinned

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"shortcut mode '{self.mode}'; valid: {', '.join(MODES)}")
        if (self.mode == "pinned") != (self.pin is not None):
            raise ValueError("shortcut mode 'pinned' needs `pin: [target slot, cue slot]`, and `pin` needs mode 'pinned'")
        k = len(self.colours)
        if k < 2 or len(self.values) != k:
            raise ValueError("a shortcut needs at least two cue values and one colour per value")
        if len(set(self.colours)) != k:
            raise ValueError(f"shortcut colours must differ, got {self.colours}")
        if self.pin is not None and (len(self.pin) != 2 or not all(0 <= int(s) < k for s in self.pin)):
            raise ValueError(f"shortcut pin {list(self.pin)}: give [target slot, cue slot], each in 0..{k - 1}")
        for name, values in self.cues().items():
            if len(values) != k:
                raise ValueError(f"shortcut cue '{name}' has {len(values)} values for {k} colours")
            for value in values:
                check_level(name, value)  # names its axes, ranges inside the declared ones, or raises

    def cues(self) -> dict[str, tuple]:
        return {self.factor: self.values, **{name: tuple(v) for name, v in self.extra_cues.items()}}

    @classmethod
    def from_config(cls, cfg: dict) -> "Shortcut":
        cfg = dict(cfg)
        reject_unknown_keys(cfg, KEYS, "shortcut")
        colours = tuple(cfg["colours"])
        if ("values" in cfg) == ("islands" in cfg):
            raise ValueError("a shortcut needs either `values` (one cue value per colour) or `islands`, not both")
        values = (tuple(dict(v) for v in cfg["values"]) if "values" in cfg
                  else Islands.from_config(cfg["islands"]).values(len(colours)))
        extra = {str(name): tuple(dict(v) for v in vs) for name, vs in dict(cfg.get("extra_cues") or {}).items()}
        if cfg["factor"] in extra:
            raise ValueError(f"shortcut extra_cues repeats the main factor '{cfg['factor']}'")
        pin = cfg.get("pin")
        return cls(factor=cfg["factor"], values=values, colours=colours, mode=cfg.get("mode", "correlated"),
                   pin=None if pin is None else tuple(int(s) for s in pin), extra_cues=extra)

    def without(self, factors) -> "Shortcut":
        """This shortcut with ``factors`` no longer pinned (``toyland augment`` sets them itself); the
        slots and the other cues' draws stay those of the recorded episode."""
        return Shortcut(self.factor, self.values, self.colours, self.mode, self.pin, self.extra_cues,
                        self.dropped | frozenset(factors))

    def draw(self, rng: np.random.Generator) -> tuple[int, int, dict]:
        """(instructed target slot, cue slot, {factor: its values for this episode}) for every pinned cue."""
        k = len(self.values)
        if self.mode == "pinned":
            target, cue = self.pin
        else:
            target = int(rng.integers(k))
            if self.mode == "correlated":
                cue = target
            elif self.mode == "swapped":
                cue = (target + 1 + int(rng.integers(k - 1))) % k
            else:
                cue = int(rng.integers(k))
        levels = {}
        for name, values in self.cues().items():  # ranges drawn in a fixed order, dropped ones too
            drawn = resolve_ranges(values[cue], rng)
            if name not in self.dropped:
                levels[name] = drawn
        return int(target), int(cue), levels
