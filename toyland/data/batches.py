"""Training batches from one dataset or a weighted mixture of several (co-training).

A batch holds, per requested feature, the frames at the requested time offsets (observation
history, action chunks) as ``[B, T, ...]`` tensors with ``<key>_is_pad`` marking offsets that fall
outside the episode, as lerobot's ``delta_timestamps`` do. Images come out float in [0, 1] as
``[B, T, C, H, W]``. Each sample also carries its instruction (``task``) and the embodiment its source
was recorded on (``robot_type``), as lists of strings.

Sources may differ: a camera one source lacks is all zeros with ``<key>_present`` False for its
samples, and a shorter state or action vector is zero-padded with ``<key>_dim_mask`` marking its
real dimensions. Masks are only emitted for features where some source differs, and a feature no
source has is an error. Every batch is a function of ``(seed, step)``, so a resumed run sees the
batches an uninterrupted one would have.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch

from toyland.data.frames import DatasetError, FrameStore

TOLERANCE_FRAMES = 1e-3  # a delta timestamp must land this close to a frame of every source


@dataclass(frozen=True)
class Source:
    name: str
    store: FrameStore
    rename: dict = field(default_factory=dict)  # batch key -> this source's key

    def key(self, key: str) -> str:
        return self.rename.get(key, key)

    def has(self, key: str) -> bool:
        return self.key(key) in self.store.arrays


@dataclass(frozen=True)
class Phase:
    weights: dict  # source name -> weight
    steps: int | None = None  # length of the phase; None for the last, open-ended one


def check_weights(weights: dict, names: list[str], where: str) -> np.ndarray:
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise DatasetError(f"{where}: weights for unknown sources {unknown}; sources: {names}")
    w = np.array([float(weights.get(n, 0.0)) for n in names])
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise DatasetError(f"{where}: weights must be finite and non-negative, got {dict(zip(names, w.tolist()))}")
    if w.sum() <= 0:
        raise DatasetError(f"{where}: weights sum to zero; give at least one source a positive weight")
    return w / w.sum()


class BatchSampler:
    def __init__(self, sources: list[Source], deltas: dict[str, list[float]], batch_size: int, seed: int = 0,
                 phases: list[Phase] | None = None, transform: Callable | None = None):
        """``deltas``: batch key -> time offsets in seconds (``[0.0]``: the current frame only)."""
        if not sources:
            raise DatasetError("no data sources given")
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise DatasetError(f"source names must be unique, got {names}")
        if batch_size < 1:
            raise DatasetError(f"batch_size={batch_size} must be positive")
        self.sources, self.batch_size, self.seed, self.transform = sources, batch_size, seed, transform
        self.deltas = {k: [float(t) for t in v] for k, v in deltas.items()}
        phases = phases or [Phase({n: float(len(s.store)) for n, s in zip(names, sources)})]  # default: by size
        self.phase_weights = [check_weights(p.weights, names, f"mixture phase {i}") for i, p in enumerate(phases)]
        self.phase_ends = np.cumsum([p.steps if p.steps is not None else np.inf for p in phases])
        if any(p.steps is not None and p.steps < 1 for p in phases) or any(p.steps is None for p in phases[:-1]):
            raise DatasetError("every mixture phase but the last needs a positive `steps`")
        self.shapes, self.padded, self.absent = self._resolve_features()
        self.offsets = [self._frame_offsets(s) for s in sources]
        self._image_keys = [k for k in self.deltas if self._dtype(k) == np.uint8 and len(self.shapes[k]) == 3]

    # --- feature mapping ----------------------------------------------------------------------
    def _resolve_features(self):
        shapes, padded, absent = {}, set(), set()
        for key in self.deltas:
            have = [s for s in self.sources if s.has(key)]
            if not have:
                options = sorted({k for s in self.sources for k in s.store.arrays})
                hint = ("; `toyland collect` records the experts' annotations: collect the demos again"
                        if key.startswith("annotation.") else "")
                raise DatasetError(f"feature '{key}' is in none of the datasets {[s.name for s in self.sources]}; "
                                   f"they have {options} (map names with a source's `rename`){hint}")
            if len(have) < len(self.sources):
                absent.add(key)
            found = {s.name: s.store.shape(s.key(key)) for s in have}
            if len(set(found.values())) == 1:
                shapes[key] = next(iter(found.values()))
                if len(shapes[key]) == 1:
                    self._check_same_meaning(key, have)
            elif all(len(v) == 1 for v in found.values()):
                shapes[key] = (max(v[0] for v in found.values()),)
                padded.add(key)
                self._check_prefix_meaning(key, have)
            else:
                raise DatasetError(f"feature '{key}' has different shapes across sources {found}; only vectors "
                                   "can be padded (resize images before mixing)")
        return shapes, padded, absent

    @staticmethod
    def _check_same_meaning(key: str, sources: list[Source]) -> None:
        """Same-sized vectors with different entry names (tool deltas and tool poses, say) would mix silently."""
        names = {s.name: tuple(s.store.features.get(s.key(key), {}).get("names") or ()) for s in sources}
        if len({n for n in names.values() if n}) > 1:
            raise DatasetError(f"'{key}' means different things across sources: {names}; mix data whose entries "
                               "agree (toyland demos: collected with the same env.control_mode)")

    @staticmethod
    def _check_prefix_meaning(key: str, sources: list[Source]) -> None:
        """A shorter vector is padded at its end, so its entries must be the longer ones' first entries:
        a 7-joint arm's state beside a 6-axis gripper's would put joints under axes."""
        names = {}
        for s in sources:
            entry = tuple(s.store.features.get(s.key(key), {}).get("names") or ())
            if entry and len(entry) == s.store.shape(s.key(key))[0]:
                names[s.name] = entry
        if not names:
            return
        longest = max(names.values(), key=len)
        if any(n != longest[: len(n)] for n in names.values()):
            raise DatasetError(f"'{key}' has different entries across sources {names}; a shorter vector is padded at "
                               "its end, so its entries must be the first of the longer ones' (for robots of different "
                               "arms, collect with env.state=tool: the opening and tool pose, the same on each)")

    def _frame_offsets(self, source: Source) -> dict[str, np.ndarray]:
        fps = source.store.fps
        out = {}
        for key, seconds in self.deltas.items():
            frames = np.asarray(seconds) * fps
            if np.any(np.abs(frames - np.round(frames)) > TOLERANCE_FRAMES):
                raise DatasetError(f"delta timestamps {seconds} of '{key}' are not multiples of 1/{fps} s, "
                                   f"the frame period of source '{source.name}'")
            out[key] = np.round(frames).astype(np.int64)
        return out

    # --- sampling -----------------------------------------------------------------------------
    def weights_at(self, step: int) -> np.ndarray:
        phase = int(np.searchsorted(self.phase_ends, step, side="right"))
        return self.phase_weights[min(phase, len(self.phase_weights) - 1)]

    def sample(self, step: int) -> dict:
        return self._finish(*self._draw(step))

    def _draw(self, step: int) -> tuple[dict, int]:
        """The batch of ``step`` gathered with numpy alone (images still uint8), and its transform's seed.
        No torch kernel runs here: the prefetch thread calls this, and a torch op on a second thread
        starts a second OpenMP team, which slowed the training step by a third on
        two cores (benchmarks/data_loading.py)."""
        rng = np.random.default_rng([self.seed, step])
        which = rng.choice(len(self.sources), size=self.batch_size, p=self.weights_at(step))
        rows = np.empty(self.batch_size, dtype=np.int64)
        for i, source in enumerate(self.sources):
            picked = which == i
            rows[picked] = rng.integers(len(source.store), size=int(picked.sum()))
        return self._assemble(which, rows), int(rng.integers(2**63))

    def _finish(self, batch: dict, transform_seed: int) -> dict:
        """Images to float [B, T, C, H, W] in [0, 1], then the transform (on the consuming thread)."""
        for key in self._image_keys:
            batch[key] = batch[key].permute(0, 1, 4, 2, 3).float().div_(255.0)
        if self.transform is not None:
            batch = self.transform(batch, torch.Generator().manual_seed(transform_seed))
        return batch

    def _assemble(self, which: np.ndarray, rows: np.ndarray) -> dict:
        B = len(rows)
        batch: dict = {"source": torch.from_numpy(which), "task": [None] * B, "robot_type": [None] * B,
                       "index": torch.from_numpy(rows), "episode_index": torch.zeros(B, dtype=torch.long)}
        outs = {k: np.zeros((B, len(d), *self.shapes[k]), dtype=self._dtype(k)) for k, d in self.deltas.items()}
        pads = {k: np.zeros((B, len(d)), dtype=bool) for k, d in self.deltas.items()}
        present = {k: np.zeros(B, dtype=bool) for k in self.absent}
        dim_mask = {k: np.zeros((B, self.shapes[k][0]), dtype=bool) for k in self.padded}
        for i, source in enumerate(self.sources):
            sel = np.flatnonzero(which == i)
            if not len(sel):
                continue
            store, r = source.store, rows[sel]
            batch["episode_index"][sel] = torch.from_numpy(store.episode_index[r])
            for j, b in enumerate(sel):
                batch["task"][b] = store.tasks[store.task_index[r[j]]]
                batch["robot_type"][b] = store.robot_type
            start, end = store.episode_start[r][:, None], store.episode_end[r][:, None]
            for key, offsets in self.offsets[i].items():
                if not source.has(key):
                    pads[key][sel] = True
                    continue
                want = r[:, None] + offsets[None, :]
                pads[key][sel] = (want < start) | (want >= end)
                values = store.arrays[source.key(key)][np.clip(want, start, end - 1)]
                if key in self.padded:
                    n = values.shape[-1]
                    outs[key][sel, ..., :n] = values
                    dim_mask[key][sel, :n] = True
                else:
                    outs[key][sel] = values
                if key in self.absent:
                    present[key][sel] = True
        for key, value in outs.items():
            batch[key] = torch.from_numpy(value)  # images stay [B, T, H, W, C] uint8 until _finish
            batch[f"{key}_is_pad"] = torch.from_numpy(pads[key])
        for key, value in present.items():
            batch[f"{key}_present"] = torch.from_numpy(value)
        for key, value in dim_mask.items():
            batch[f"{key}_dim_mask"] = torch.from_numpy(value)
        return batch

    def _dtype(self, key: str):
        source = next(s for s in self.sources if s.has(key))
        return source.store.arrays[source.key(key)].dtype

    def batches(self, start_step: int = 0, prefetch: int = 2) -> Iterator[dict]:
        """Endless batches from ``start_step`` on, gathered ``prefetch`` ahead on a thread (numpy releases
        the GIL while copying, so gathering overlaps the training step); images are converted and the
        transform applied as each batch is taken."""
        q: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        stop = threading.Event()

        def work():
            step = start_step
            try:
                while not stop.is_set():
                    q.put(self._draw(step))
                    step += 1
            except BaseException as exc:  # hand the error to the consumer
                q.put(exc)

        thread = threading.Thread(target=work, daemon=True, name="toyland-batches")
        thread.start()
        try:
            while True:
                item = q.get()
                if isinstance(item, BaseException):
                    raise item
                yield self._finish(*item)
        finally:
            stop.set()
            while thread.is_alive():  # unblock a producer waiting on a full queue
                try:
                    q.get_nowait()
                except queue.Empty:
                    thread.join(timeout=0.01)

    # --- normalization ------------------------------------------------------------------------
    def values(self, key: str) -> np.ndarray:
        """Every frame's value of a vector feature over all sources, [N, D] (for fits beyond stats.json)."""
        if key in self.padded:
            raise DatasetError(f"'{key}' has different sizes across sources; map them to one size first")
        return np.concatenate([np.asarray(s.store.arrays[s.key(key)]) for s in self.sources if s.has(key)])

    def stats(self) -> dict[str, dict[str, np.ndarray]]:
        """Normalization statistics of each batch key, pooled over the sources by frame count."""
        out = {}
        for key in self.deltas:
            parts = []
            for s in self.sources:
                if not s.has(key):
                    continue
                st = s.store.stats.get(s.key(key))
                if st is None or "mean" not in st:
                    raise DatasetError(f"source '{s.name}' ({s.store.root}) has no normalization statistics for "
                                       f"'{s.key(key)}' in meta/stats.json; recompute them with lerobot's tools")
                parts.append((st, len(s.store)))
            out[key] = pool_stats(parts, self.shapes[key] if key in self.padded else None)
        return out


def pool_stats(parts: list[tuple[dict, int]], vector_shape: tuple | None = None) -> dict[str, np.ndarray]:
    """Mean/std pooled exactly (parallel variance), min/max as extremes, quantiles as count-weighted
    means (an approximation). Vectors of different lengths pool each dimension over the sources
    that have it."""
    names = ("mean", "std", "min", "max") + tuple(k for k in parts[0][0] if k.startswith("q"))
    dim = vector_shape[0] if vector_shape else None

    def padded(value, fill):
        value = np.asarray(value, dtype=np.float64)
        if dim is None:
            return value
        return np.concatenate([value, np.full(dim - value.shape[0], fill)])

    weights = np.stack([padded(np.ones_like(np.asarray(st["mean"], dtype=np.float64)) * n, 0.0) for st, n in parts])
    total = weights.sum(0)
    out = {}
    mean = sum(w * padded(st["mean"], 0.0) for w, (st, _) in zip(weights, parts)) / total
    second = sum(w * (padded(st["std"], 0.0) ** 2 + padded(st["mean"], 0.0) ** 2) for w, (st, _) in zip(weights, parts)) / total
    out["mean"], out["std"] = mean, np.sqrt(np.maximum(second - mean**2, 0.0))
    out["min"] = np.min(np.stack([padded(st["min"], np.inf) for st, _ in parts]), 0)
    out["max"] = np.max(np.stack([padded(st["max"], -np.inf) for st, _ in parts]), 0)
    for q in names[4:]:
        if all(q in st for st, _ in parts):
            out[q] = sum(w * padded(st[q], 0.0) for w, (st, _) in zip(weights, parts)) / total
    out["count"] = np.array([int(sum(n for _, n in parts))])
    return {k: v.astype(np.float32) if k != "count" else v for k, v in out.items()}
