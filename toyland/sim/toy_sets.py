"""Named toy sets: a seed range plus generator ranges, loaded from YAML in configs/toy_set/.

Held-out sets differ from ``train`` by seed range (unseen toys of the same distribution) or by
composition (part counts or kind mixes the train generator can never produce), so a set is
configuration, not code. Extra folders of set files can be registered with :func:`add_search_path`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

from toyland.config_keys import reject_unknown_keys
from toyland.sim.mesh_objects import MeshSet, mesh_set_from_config
from toyland.sim.toys import ToyGenerator, ToySpec

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "configs" / "toy_set"
_SEARCH_PATH: list[Path] = [BUILTIN_DIR]
KEYS = {"name", "description", "seeds", "num_toys", "generator", "meshes"}


@dataclass(frozen=True)
class ToySet:
    name: str
    seeds: tuple[int, int]  # half-open range [lo, hi)
    generator: ToyGenerator
    num_toys: int | None = None  # only the first N seeds of the range: the "number of toys" axis
    description: str = ""

    def __post_init__(self):
        lo, hi = self.seeds
        if not 0 <= lo < hi:
            raise ValueError(f"toy set '{self.name}' field 'seeds' = {self.seeds}; need 0 <= lo < hi")
        if self.num_toys is not None and not 1 <= self.num_toys <= hi - lo:
            raise ValueError(f"toy set '{self.name}' field 'num_toys' = {self.num_toys}; allowed range [1, {hi - lo}]")

    @property
    def size(self) -> int:
        return self.num_toys or (self.seeds[1] - self.seeds[0])

    def sample_seed(self, rng: np.random.Generator) -> int:
        return int(self.seeds[0] + rng.integers(self.size))

    def toy(self, seed: int) -> ToySpec:
        lo, hi = self.seeds
        if not lo <= seed < lo + self.size:
            raise ValueError(f"toy seed {seed} is not in toy set '{self.name}' (seeds {lo}..{lo + self.size - 1})")
        return self.generator.generate(seed)

    @classmethod
    def from_config(cls, cfg: dict) -> "ToySet":
        reject_unknown_keys(cfg, KEYS, "toy set config")
        return cls(
            name=cfg["name"],
            seeds=tuple(int(s) for s in cfg["seeds"]),
            generator=ToyGenerator.from_config(cfg.get("generator")),
            num_toys=cfg.get("num_toys"),
            description=cfg.get("description", ""),
        )


def add_search_path(folder: str | Path) -> None:
    """Makes the ``*.yaml`` toy sets in ``folder`` loadable by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"toy set folder {folder} does not exist")
    _SEARCH_PATH.insert(0, folder)
    _load_all.cache_clear()


@lru_cache(maxsize=None)
def _load_all() -> dict[str, ToySet]:
    sets: dict[str, ToySet] = {}
    for folder in reversed(_SEARCH_PATH):
        for path in sorted(folder.glob("*.yaml")):
            cfg = yaml.safe_load(path.read_text()) or {}
            cfg.setdefault("name", path.stem)
            try:
                if "meshes" in cfg:  # a mesh object set (pybullet_data or a folder)
                    sets[cfg["name"]] = mesh_set_from_config(
                        cfg["name"], cfg["meshes"], cfg.get("num_toys"), cfg.get("description", "")
                    )
                    continue
                sets[cfg["name"]] = ToySet.from_config(cfg)
            except (ValueError, TypeError, KeyError, FileNotFoundError) as err:
                raise ValueError(f"toy set file {path}: {err}") from err
    return sets


def toy_set_names() -> list[str]:
    return sorted(_load_all())


def get_toy_set(name: str, num_toys: int | None = None) -> ToySet:
    """A toy set or mesh set by name; a folder path gives a mesh set of its OBJ/STL files."""
    sets = _load_all()
    if name not in sets and Path(name).expanduser().is_dir():
        return mesh_set_from_config(name, {"source": name}, num_toys)
    if name not in sets:
        raise KeyError(
            f"unknown toy set '{name}'; valid toy sets: {', '.join(sorted(sets))} (or a folder of OBJ/STL meshes)"
        )
    toy_set = sets[name]
    if isinstance(toy_set, MeshSet):
        return toy_set.with_num_toys(num_toys) if num_toys is not None else toy_set
    if num_toys is not None:
        toy_set = ToySet(toy_set.name, toy_set.seeds, toy_set.generator, num_toys, toy_set.description)
    return toy_set
