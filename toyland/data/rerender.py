"""``toyland augment``: re-rendered counterfactual datasets.

Every episode of a toyland dataset is replayed from its recorded simulator state
(``toyland.data.replay``) under new appearance factors, or with the object colours of another
dataset's episode, and written as a new LeRobotDataset with the same states, actions and other
features, new images (and depth, segmentation and masks where the source has them), new camera
geometry, and the new factor values in the episode log. The env is rebuilt from the source's
recorded config and reset with the episode's recorded seed; each factor draws from its own stream
of the episode seed, so the toys and poses are the recorded ones, and that is checked: the state
after reset must equal the recorded first frame's. The new factor values of episode k are drawn
from (its episode seed, the factor, ``seed``), so the same seed gives the same views.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toyland.data.episode_log import DatasetError, read_episode_log
from toyland.data.replay import ReplayError, current_state, set_rendered_state
from toyland.sim.instructions import INSTRUCTION_PICTURE

# MjModel fields that change only what the cameras see
APPEARANCE_FIELDS = frozenset({"cam_pos", "cam_quat", "cam_fovy", "light_dir", "light_diffuse", "geom_matid",
                               "mat_rgba", "geom_rgba"})
# factors with appearance axes and a physics axis that must stay at its nominal value
NOMINAL_AXES = {"target_appearance": ("size",)}
RENDERED = ("observation.images.", "observation.depth.", "observation.segmentation.", "observation.masks.",
            "camera.intrinsics.", "camera.pose.", INSTRUCTION_PICTURE)  # (a new colour changes the picture too)
BOOKKEEPING = ("timestamp", "frame_index", "episode_index", "index", "task_index")
STATE_TOLERANCE = 1e-9  # the replayed start against the recorded one (both float64 from the same code)
OBS_TOLERANCE = 1e-6  # the replayed observation.state against the recorded float32 one
STREAM = 0xA06  # the augment's own factor streams, apart from the env's


def appearance_factors() -> list[str]:
    from toyland.sim.factors import FACTORS

    return [name for name in FACTORS.names()
            if set(FACTORS.get(name).touches) <= APPEARANCE_FIELDS or name in NOMINAL_AXES]


def check_overrides(factors: dict | None) -> dict:
    """The factor levels to re-render at (an axis may be a ``[lo, hi]`` range, drawn per episode);
    refuses factors that change physics or the task."""
    from toyland.sim.factors import FACTORS
    from toyland.sim.shortcut import check_ranged_levels

    factors = dict(factors or {})
    allowed = appearance_factors()
    bad = sorted(set(factors) - set(allowed))
    if bad:
        known = [n for n in bad if n in FACTORS.names()]
        what = f"{known} change physics or the task, which a replay of the recorded states cannot show" if known else \
            f"{bad} are not factors"
        raise ValueError(f"factors {what}; re-render with appearance factors only: {', '.join(allowed)}")
    check_ranged_levels(factors)
    for name, axes in NOMINAL_AXES.items():
        if name not in factors:
            continue
        level, nominal = factors[name], FACTORS.get(name).nominal
        if not hasattr(level, "items") or any(level.get(a, nominal[a]) != nominal[a] for a in axes):
            appearance = [a for a in FACTORS.get(name).axes if a not in axes]
            raise ValueError(f"factor '{name}' at {level!r} also changes {', '.join(axes)} (physics); pin its "
                             f"appearance axes alone, e.g. 'factors.{name}={{{appearance[0]}: 0.2}}'")
    return factors


def draw_factor(name: str, level, episode_seed: int, seed: int) -> dict:
    """Episode ``episode_seed``'s new values of factor ``name`` at ``level`` under augment seed ``seed``."""
    from toyland.sim.shortcut import draw_level

    rng = np.random.default_rng([int(episode_seed), zlib.crc32(name.encode()), int(seed), STREAM])
    return draw_level(name, level, rng)


def _same(a, b) -> bool:
    return json.loads(json.dumps(a)) == json.loads(json.dumps(b))


@dataclass
class SourceDataset:
    """A toyland dataset to replay: its episode log, and where each episode's state lies."""

    root: Path
    log: object  # EpisodeLog

    @classmethod
    def open(cls, path: str | Path) -> "SourceDataset":
        from toyland.data.frames import require_readable
        from toyland.data.writer import sim_state_path

        root = require_readable(path)
        log = read_episode_log(root)
        if log is None or "env" not in log.config:
            raise DatasetError(f"{root} has no toyland episode log with its env config: only datasets collected by "
                               "`toyland collect` can be replayed")
        for k in range(len(log.episodes)):
            if not sim_state_path(root, k).is_file():
                raise ReplayError(
                    f"episode {k} of {root} cannot be replayed: it has no recorded simulator state "
                    f"({sim_state_path(root, k).relative_to(root)}); it was collected by a toyland that did not record "
                    "it: recollect it with the same `toyland collect` command into a new output_dir")
        return cls(root, log)

    def sim_state(self, k: int) -> dict[str, np.ndarray]:
        from toyland.data.writer import sim_state_path

        with np.load(sim_state_path(self.root, k)) as z:
            return {key: z[key] for key in z.files}


@dataclass
class Rendered:
    index: int
    frames: list[dict]
    task: str
    record: dict
    sim_state: dict


class Rerenderer:
    """One env rebuilt from the source's config; re-renders episode k on call (lives in a worker)."""

    def __init__(self, source: str | Path, factors: dict, seed: int, swap_from: str | Path | None = None):
        from toyland.data.frames import open_local_dataset
        from toyland.sim import make_env

        self.source = SourceDataset.open(source)
        self.factors, self.seed = check_overrides(factors), int(seed)
        self.swap = SourceDataset.open(swap_from) if swap_from else None
        self.env_cfg = dict(self.source.log.config["env"])
        self.env = make_env(self.env_cfg, terminate_on_success=False)
        if self.env.unwrapped.shortcut is not None:  # a re-rendered factor replaces the shortcut's cue for it
            self.env.unwrapped.shortcut = self.env.unwrapped.shortcut.without(self.factors)
        ds = open_local_dataset(self.source.root)
        self.copied = [k for k in ds.meta.features if k not in BOOKKEEPING and not k.startswith(RENDERED)]
        # a one-number feature (annotation.target_id) comes back from the table as a scalar: give it its shape
        self.shapes = {k: tuple(ds.meta.features[k]["shape"]) for k in self.copied}
        self.hf = ds.hf_dataset.with_format("numpy").select_columns(self.copied)
        self.bounds = dict(zip(ds.meta.episodes["episode_index"],
                               zip(ds.meta.episodes["dataset_from_index"], ds.meta.episodes["dataset_to_index"])))

    def __call__(self, k: int) -> Rendered:
        from toyland.data.features import camera_frame, to_frame
        from toyland.sim.factors import check_levels

        where = f"episode {k} of {self.source.root}"
        record = self.source.log.episodes[k]
        base = self.env.unwrapped
        new = {name: draw_factor(name, level, record["episode_seed"], self.seed) for name, level in self.factors.items()}
        base.factor_levels = check_levels({**(self.env_cfg.get("factors") or {}), **new})
        _, info = self.env.reset(seed=int(record["seed"]))
        if info["episode_seed"] != record["episode_seed"]:
            raise ReplayError(f"{where}: reset seed {record['seed']} gives episode seed {info['episode_seed']}, the "
                              f"log says {record['episode_seed']}; the env config or toyland changed since collection")
        for name, values in info["factors"].items():
            want = new.get(name, record["factors"].get(name))
            if not _same(values, want):
                raise ReplayError(f"{where}: factor '{name}' came out {values} on replay, expected {want} (a scenario's "
                                  "shortcut cue sets it per episode, or the factor's sampling changed since collection)")
        task, record = record["instruction"], {**record, "factors": info["factors"]}
        if self.swap is not None:
            task, record = self._swap_colours(k, record)
        sim = self.source.sim_state(k)
        m, d = base.scene.model, base.scene.data
        start = current_state(m, d)
        recorded = sim["state"][0]
        if start.shape != recorded.shape:
            raise ReplayError(f"{where}: the replayed scene has a simulator state of {start.size} numbers, the recorded "
                              f"{recorded.size}: different toys; the env config or toyland changed since collection")
        gap = float(np.abs(start - recorded).max())
        if gap > STATE_TOLERANCE:
            raise ReplayError(f"{where}: after reset the simulator state differs from the recorded first frame's by "
                              f"{gap:.3g}; the toys' start is not reproduced (toyland changed since collection)")
        lo, hi = self.bounds[k]
        columns = self.hf[int(lo):int(hi)]
        frames = []
        for t in range(hi - lo):
            set_rendered_state(m, d, sim["state"][t], sim["render_qpos"][t])
            obs = base._observation()
            copied = {key: np.asarray(columns[key][t]).reshape(self.shapes[key]) for key in self.copied}
            if "observation.state" in copied:
                gap = float(np.abs(obs["observation.state"] - copied["observation.state"]).max())
                if gap > OBS_TOLERANCE:
                    raise ReplayError(f"{where}: frame {t}'s replayed robot state differs from the recorded one by {gap:.3g}")
            rendered = {key: v for key, v in to_frame(obs, np.zeros(0)).items() if key.startswith(RENDERED)}
            frames.append({**copied, **rendered, **camera_frame(self.env)})
        record["augment"] = {"source_episode": k, "factors": new}
        return Rendered(k, frames, task, record, sim)

    def _swap_colours(self, k: int, record: dict) -> tuple[str, dict]:
        """Episode k's objects take the part colours of episode k of ``swap_from``: target to target,
        the d-th distractor to the d-th (the rest keep theirs); a part beyond the other toy's parts
        takes them cyclically. The instruction's colour word follows the target's colour name."""
        where = f"episode {k} of {self.source.root}"
        if k >= len(self.swap.log.episodes):
            raise ReplayError(f"{where}: swap_from {self.swap.root} has only {len(self.swap.log.episodes)} episodes")
        other = self.swap.log.episodes[k]
        base = self.env.unwrapped
        m = base.scene.model
        t, ot = record["target_index"], other["target_index"]
        mine = [t] + [i for i in range(len(record["toys"])) if i != t]
        theirs = [ot] + [i for i in range(len(other["toys"])) if i != ot]
        toys, names = [dict(toy) for toy in record["toys"]], list(record["colours"])
        for i, j in zip(mine, theirs):
            parts = other["toys"][j]["parts"]
            toys[i]["parts"] = [{**part, "rgba": parts[p % len(parts)]["rgba"]} for p, part in enumerate(toys[i]["parts"])]
            for p, part in enumerate(toys[i]["parts"]):
                for g in range(m.ngeom):
                    if m.geom(g).name.startswith(f"toy{i}/p{p}g"):
                        m.geom_rgba[g] = part["rgba"]
            names[i] = other["colours"][j]
        task = record["instruction"]
        old, now = record["colours"][t], names[t]
        if old is not None:
            if now is None:
                raise ReplayError(f"{where}: its instruction names the target's colour ('{old}') but the target of "
                                  f"episode {k} of {self.swap.root} has no colour name to put in its place")
            if len({n for n in names if n is not None}) < sum(n is not None for n in names):
                raise ReplayError(f"{where}: after the swap two objects share a colour name ({names}); the "
                                  "instruction would not single out the target")
            task = task.replace(f"{old} ", f"{now} ", 1)
        record = {**record, "toys": toys, "colours": names, "instruction": task,
                  "swap": {"from": str(self.swap.root), "episode": k}}
        return task, record


@dataclass
class AugmentSummary:
    root: Path
    episodes: int
    written_now: int
    complete: bool


def output_features(source_root: Path, env) -> dict:
    """The source's features with the rendered ones as the replay env renders them."""
    from toyland.data.features import camera_features, env_features
    from toyland.data.frames import open_local_dataset

    meta = open_local_dataset(source_root).meta
    video = any(ft["dtype"] == "video" for ft in meta.features.values())
    rendered = {**env_features(env, video=video), **camera_features(env)}
    mine = {k for k in meta.features if k.startswith(RENDERED)}
    theirs = {k for k in rendered if k.startswith(RENDERED)}
    if mine != theirs:
        raise ReplayError(f"{source_root}: the replay env renders {sorted(theirs)} but the dataset holds {sorted(mine)}")
    features = {}
    for key, ft in meta.features.items():
        if key in BOOKKEEPING:
            continue
        features[key] = rendered[key] if key in rendered else \
            {"dtype": ft["dtype"], "shape": tuple(ft["shape"]), "names": ft.get("names")}
    return features, int(meta.fps), meta.robot_type, video


def is_complete(root: str | Path) -> bool:
    """Whether a ``toyland augment`` output holds every episode of its source."""
    log = read_episode_log(root)
    return log is not None and len(log.episodes) == log.config.get("augment", {}).get("source_episodes", -1)


def ordered(source, factors, seed, swap_from, first: int, count: int, workers: int):
    """Re-rendered episodes first .. count - 1 in order, on ``workers`` processes."""
    if workers <= 1:
        renderer = Rerenderer(source, factors, seed, swap_from)
        for k in range(first, count):
            yield renderer(k)
        return
    from toyland.parallel import map_ordered

    yield from map_ordered(range(first, count), Rerenderer, (source, factors, seed, swap_from), "__call__",
                           workers=workers)


def augment(source: str | Path, output_dir: str | Path, factors: dict | None = None, seed: int = 0,
            workers: int = 2, swap_from: str | Path | None = None, checkpoint_every: int = 10,
            repo_id: str | None = None, progress: bool = True) -> AugmentSummary:
    """Re-renders every episode of ``source`` into ``output_dir`` (resuming one that is there)."""
    from tqdm import tqdm

    from toyland.data.collect import StopRequest
    from toyland.data.writer import DatasetWriter
    from toyland.sim import make_env

    factors = check_overrides(factors)
    src = SourceDataset.open(source)
    if swap_from is not None:
        SourceDataset.open(swap_from)
    if Path(output_dir).resolve() == src.root.resolve():
        raise ValueError("output_dir is the source dataset; choose a new folder")
    env_cfg = dict(src.log.config["env"])
    probe = make_env(env_cfg, terminate_on_success=False)
    features, fps, robot_type, video = output_features(src.root, probe)
    probe.close()
    count = len(src.log.episodes)
    config = {**src.log.config,
              "env": {**env_cfg, "factors": {**(env_cfg.get("factors") or {}), **factors}},
              "augment": {"source": str(src.root.resolve()), "source_episodes": count, "factors": factors,
                          "seed": int(seed), "swap_from": str(Path(swap_from).resolve()) if swap_from else None}}
    config = json.loads(json.dumps(config))
    writer = DatasetWriter(output_dir, repo_id or f"toyland/{Path(output_dir).name}", features, fps, robot_type,
                           video, config, checkpoint_every)
    start = writer.num_episodes
    bar = tqdm(total=count, initial=start, desc="augment", unit="ep", disable=not progress)
    try:
        with StopRequest() as stop:
            for episode in ordered(src.root, factors, seed, swap_from, start, count, workers):
                writer.add_episode(episode.frames, episode.task, episode.record, episode.sim_state)
                bar.update(1)
                if stop.signal is not None:
                    break
    finally:
        writer.close()
        bar.close()
    done = writer.num_episodes
    return AugmentSummary(Path(output_dir), done, done - start, done == count)
