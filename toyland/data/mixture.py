"""Data configs (configs/data/*.yaml): one dataset or a weighted co-training mixture.

    sources:
      - {name: sim, path: data/lift, weight: 0.7}
      - {name: real, path: ~/real_lift, weight: 0.3, rename: {observation.images.front: observation.images.top}}
    phases:                       # optional schedule; replaces the per-source weights
      - {steps: 2000, weights: {sim: 1.0}}
      - {weights: {sim: 0.5, real: 0.5}}
    cache_dir: null               # decode once into .npy files here and memory-map them later

``rename`` maps a batch key to the source's own key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from toyland.config_keys import reject_unknown_keys
from toyland.data.batches import BatchSampler, Phase, Source
from toyland.data.frames import DatasetError, FrameStore, check_dataset_path

DATA_KEYS = {"sources", "phases", "cache_dir"}
SOURCE_KEYS = {"name", "path", "weight", "rename"}
PHASE_KEYS = {"steps", "weights"}


def load_sources(cfg: dict, keys: list[str] | None = None) -> list[Source]:
    """Decodes every source of a data config; ``keys``: the batch keys a policy needs (None: all)."""
    reject_unknown_keys(cfg, DATA_KEYS, "data config")
    entries = cfg.get("sources") or []
    if not entries:
        raise DatasetError("data config: `sources` is empty; list at least one dataset path")
    sources = []
    for i, entry in enumerate(entries):
        if isinstance(entry, (str, Path)):
            entry = {"path": str(entry)}
        reject_unknown_keys(entry, SOURCE_KEYS, f"data source {i}")
        if "path" not in entry:
            raise DatasetError(f"data source {i} has no `path`")
        rename = dict(entry.get("rename") or {})
        want = None if keys is None else [rename.get(k, k) for k in keys]
        store = FrameStore.load(entry["path"], keys=_present(entry["path"], want), cache_dir=cfg.get("cache_dir"))
        sources.append(Source(entry.get("name") or Path(entry["path"]).name, store, rename))
    return sources


def _present(path, keys):
    """The wanted keys the dataset has (a mixture masks the rest; the sampler errors if none has one)."""
    if keys is None:
        return None
    features = json.loads((check_dataset_path(path) / "meta" / "info.json").read_text())["features"]
    return [k for k in keys if k in features]


def build_sampler(cfg: dict, deltas: dict[str, list[float]], batch_size: int, seed: int = 0,
                  transform: Callable | None = None) -> BatchSampler:
    sources = load_sources(cfg, list(deltas))
    phases_cfg = cfg.get("phases")
    if phases_cfg:
        phases = []
        for i, p in enumerate(phases_cfg):
            reject_unknown_keys(p, PHASE_KEYS, f"data phase {i}")
            phases.append(Phase(weights=dict(p.get("weights") or {}), steps=p.get("steps")))
    else:
        entries = [e if isinstance(e, dict) else {} for e in cfg["sources"]]
        phases = [Phase({s.name: float(e.get("weight", 1.0)) for s, e in zip(sources, entries)})]
    return BatchSampler(sources, deltas, batch_size, seed=seed, phases=phases, transform=transform)

