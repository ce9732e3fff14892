"""Named toy sets: a seed range plus generator ranges, loaded from YAML in configs/toy_set/.

Held-out sets differ from ``train`` by seed range (unseen toys of the same distribution) or by
composition (part counts or kind mixes the train generator can never produce), so a set is
configuration, not code.

Where sets are found: the built-in folder, after the folders in the environment variable
``TOYLAND_TOY_SETS`` (``os.pathsep``-separated, first wins). The search path lives in the
environment, not in this module, so worker processes (collection and evaluation spawn them)
inherit it; :func:`add_search_path` prepends a folder to that variable. An env config can also
name a single set file directly: ``toy_set: path/to/my_set.yaml``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

from toyland.config_keys import reject_unknown_keys
from toyland.sim.mesh_objects import MeshSet, mesh_set_from_config
from toyland.sim.toys import ToyGenerator, ToySpec

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "configs" / "toy_set"
ENV_VAR = "TOYLAND_TOY_SETS"
SUFFIXES = (".yaml", ".yml")
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


def search_path() -> tuple[Path, ...]:
    """Folders searched for set files, first wins: those in ``TOYLAND_TOY_SETS``, then the built-in one."""
    extra = [Path(p) for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    for folder in extra:
        if not folder.is_dir():
            raise FileNotFoundError(f"toy set folder {folder} (from ${ENV_VAR}) does not exist; "
                                    f"fix or unset ${ENV_VAR}")
    return (*extra, BUILTIN_DIR)


def add_search_path(folder: str | Path) -> None:
    """Makes the ``*.yaml`` toy sets in ``folder`` loadable by name, here and in processes started
    from here afterwards: it prepends ``folder`` to ``$TOYLAND_TOY_SETS``, which children inherit."""
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"toy set folder {folder} does not exist")
    current = [p for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p and Path(p) != folder]
    os.environ[ENV_VAR] = os.pathsep.join([str(folder), *current])


def load_toy_set_file(path: str | Path) -> ToySet:
    """One set file: a procedural toy set, or a mesh set (``meshes:``). Its name defaults to the file's stem."""
    path = Path(path).expanduser()
    cfg = yaml.safe_load(path.read_text()) or {}
    cfg.setdefault("name", path.stem)
    try:
        if "meshes" in cfg:  # a mesh object set (pybullet_data or a folder)
            return mesh_set_from_config(cfg["name"], cfg["meshes"], cfg.get("num_toys"), cfg.get("description", ""))
        return ToySet.from_config(cfg)
    except (ValueError, TypeError, KeyError, FileNotFoundError) as err:
        raise ValueError(f"toy set file {path}: {err}") from err


def _set_files(folders: tuple[Path, ...]) -> tuple[tuple[str, int], ...]:
    """Every set file of ``folders``, last folder first (so earlier folders override), with its mtime."""
    return _set_files_of([p for folder in reversed(folders) for p in sorted(folder.iterdir()) if _is_set_file(p)])


def _set_files_of(paths: list[Path]) -> tuple[tuple[str, int], ...]:
    return tuple((str(p.resolve()), p.stat().st_mtime_ns) for p in paths)


def _is_set_file(path: Path) -> bool:
    return path.suffix in SUFFIXES and path.is_file()


@lru_cache(maxsize=32)
def _load_files(files: tuple[tuple[str, int], ...]) -> dict[str, ToySet]:
    # keyed by the files and their mtimes: a changed search path or an edited file is read afresh
    sets: dict[str, ToySet] = {}
    for path, _ in files:
        toy_set = load_toy_set_file(path)
        sets[toy_set.name] = toy_set
    return sets


def _load_all() -> dict[str, ToySet]:
    return _load_files(_set_files(search_path()))


def toy_set_names() -> list[str]:
    return sorted(_load_all())


def get_toy_set(name: str, num_toys: int | None = None) -> ToySet:
    """A toy set or mesh set by name, or from the path of one set file (``*.yaml``); a folder path
    gives a mesh set of its OBJ/STL files."""
    sets = _load_all()
    path = Path(name).expanduser()
    if name in sets:
        toy_set = sets[name]
    elif _is_set_file(path):
        (toy_set,) = _load_files(_set_files_of([path])).values()
    elif path.is_dir():
        return mesh_set_from_config(name, {"source": name}, num_toys)
    else:
        raise KeyError(
            f"unknown toy set '{name}'; valid toy sets: {', '.join(sorted(sets))}, or the path of a set file "
            f"(*.yaml), or a folder of OBJ/STL meshes; add folders of set files with "
            f"toyland.sim.toy_sets.add_search_path or ${ENV_VAR}"
        )
    if isinstance(toy_set, MeshSet):
        return toy_set.with_num_toys(num_toys) if num_toys is not None else toy_set
    if num_toys is not None:
        toy_set = ToySet(toy_set.name, toy_set.seeds, toy_set.generator, num_toys, toy_set.description)
    return toy_set
