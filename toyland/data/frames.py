"""A LeRobotDataset decoded once into arrays, for training.

lerobot's ``__getitem__`` decodes every sample's images (and video frames) again on every epoch;
on two CPU cores that costs more than the policy's step. ``FrameStore`` decodes each feature once
into one array per feature, in memory or, with ``cache_dir``, into ``.npy`` files that later runs
memory-map. It reads any LeRobotDataset v3 on local disk: toyland's own or a real robot's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from toyland.data.episode_log import LOG_PATH, DatasetError, EpisodeLog, read_episode_log

BOOKKEEPING = ("timestamp", "frame_index", "episode_index", "index", "task_index")
DECODE_CHUNK = 1024  # frames decoded at a time (bounds the memory of a pass)
OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")

__all__ = ["DatasetError", "FrameStore", "check_dataset_path", "hub_offline", "open_local_dataset", "require_readable"]


def check_dataset_path(path: str | Path) -> Path:
    root = Path(path).expanduser()
    if not root.exists():
        raise DatasetError(f"dataset path {root} does not exist; collect one with `toyland collect output_dir={root}`")
    if not (root / "meta" / "info.json").is_file():
        raise DatasetError(f"{root} is not a LeRobotDataset (no meta/info.json); give the dataset's root folder")
    return root


@contextlib.contextmanager
def hub_offline():
    """The hub libraries offline while a local dataset is opened: lerobot falls back to downloading a
    dataset whose local files it cannot load, and a local dataset must fail here, not go online.
    Sets the switches the libraries read at import (environment) and at call time (their constants),
    and restores them after, so that the rest of the process keeps its own setting."""
    saved_env = {key: os.environ.get(key) for key in OFFLINE_ENV}
    os.environ.update({key: "1" for key in OFFLINE_ENV})
    import datasets.config
    import huggingface_hub.constants

    flags = [(huggingface_hub.constants, "HF_HUB_OFFLINE"), (datasets.config, "HF_HUB_OFFLINE"),
             (datasets.config, "HF_DATASETS_OFFLINE")]
    saved_flags = [getattr(module, name) for module, name in flags]
    for module, name in flags:
        setattr(module, name, True)
    # (huggingface_hub 1.x checks the constant at every request, so sessions made before obey it too)
    try:
        yield
    finally:
        for (module, name), value in zip(flags, saved_flags):
            setattr(module, name, value)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _repair_hint(root: Path) -> str:
    try:
        log = read_episode_log(root)
    except DatasetError as exc:  # a broken log: its own message says what to do
        return str(exc)
    if log is not None and log.checkpoint is not None:
        return (f"resume it with the same `toyland collect` command, or run `toyland data check {root} --repair` to roll "
                f"it back to its last checkpoint, or delete {root} and collect it again")
    return (f"it has no toyland checkpoint to roll back to: run `toyland data check {root}` for the details, "
            f"and delete it and collect (or download) it again")


def require_readable(path: str | Path) -> Path:
    """Checks, from file metadata only, that lerobot can load the dataset at ``path`` from local disk:
    readable info.json, tasks, episode metadata and data files that agree on the episode and frame
    counts, and every video file they refer to. Raises a DatasetError naming the first bad file."""
    import pyarrow.parquet as pq

    root = check_dataset_path(path)

    def bad(file: Path, what: str) -> DatasetError:
        return DatasetError(f"{file} {what}; {_repair_hint(root)}")

    info_path = root / "meta" / "info.json"
    try:
        info = json.loads(info_path.read_text())
        total_episodes, total_frames = int(info["total_episodes"]), int(info["total_frames"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise bad(info_path, f"is not a readable lerobot info file ({type(exc).__name__}: {exc})") from exc
    if total_episodes == 0:
        raise bad(info_path, "says the dataset holds no episodes")
    tasks = root / "meta" / "tasks.parquet"
    if not tasks.is_file():
        raise bad(tasks, "is missing")
    rows = {}
    for folder in ("meta/episodes", "data", "meta/tasks.parquet"):
        files = [root / folder] if folder.endswith(".parquet") else sorted((root / folder).glob("*/*.parquet"))
        if not files:
            raise bad(root / folder, "holds no parquet file")
        rows[folder] = 0
        for file in files:
            try:
                rows[folder] += pq.read_metadata(file).num_rows
            except Exception as exc:  # pyarrow says ArrowInvalid, OSError or others for a torn file
                raise bad(file, f"is not a complete parquet file ({exc}); it was being written when the "
                                "process stopped") from exc
    if rows["meta/episodes"] != total_episodes:
        raise bad(root / "meta" / "episodes", f"lists {rows['meta/episodes']} episodes but {info_path} says {total_episodes}")
    if rows["data"] != total_frames:
        raise bad(root / "data", f"holds {rows['data']} frames but {info_path} says {total_frames}")
    log = read_episode_log(root)
    if log is not None and log.checkpoint is not None and log.checkpoint.episodes != total_episodes:
        raise bad(root / LOG_PATH, f"made {log.checkpoint.episodes} episodes durable but {info_path} says "
                                   f"{total_episodes}: the collection stopped between two checkpoints")
    for key, ft in info.get("features", {}).items():
        if ft.get("dtype") == "video":
            for file in _video_files(root, info, key):
                if not file.is_file():
                    raise bad(file, f"is missing (episode metadata refers to it for {key})")
    return root


def _video_files(root: Path, info: dict, key: str) -> list[Path]:
    import pyarrow.parquet as pq

    columns = [f"videos/{key}/chunk_index", f"videos/{key}/file_index"]
    files = set()
    for path in sorted((root / "meta" / "episodes").glob("*/*.parquet")):
        table = pq.read_table(path, columns=columns).to_pydict()
        files.update(zip(*(table[c] for c in columns)))
    return [root / info["video_path"].format(video_key=key, chunk_index=c, file_index=f) for c, f in sorted(files)]


def open_local_dataset(path: str | Path, **kwargs):
    """lerobot's LeRobotDataset of the folder at ``path``, checked first and opened with the hub offline,
    so that it is read from local disk or refused with the name of the bad file, never downloaded."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from toyland.data.writer import _quiet_datasets

    root = require_readable(path)
    _quiet_datasets()
    with hub_offline():
        return LeRobotDataset(root.name, root=root, **kwargs)


@dataclass
class FrameStore:
    root: Path
    fps: int
    features: dict  # lerobot's feature dict
    arrays: dict[str, np.ndarray]  # key -> (N, ...) ; images as (N, H, W, C) uint8
    episode_index: np.ndarray  # (N,) per frame
    episode_start: np.ndarray  # (N,) first frame of the frame's episode (dataset row index)
    episode_end: np.ndarray  # (N,) one past its last frame
    task_index: np.ndarray  # (N,)
    tasks: list[str]
    stats: dict[str, dict[str, np.ndarray]]
    log: EpisodeLog | None = None
    camera_keys: tuple[str, ...] = field(default=())
    robot_type: str | None = None  # info.json's robot_type: the embodiment the data was recorded on

    def __len__(self) -> int:
        return len(self.episode_index)

    @property
    def num_episodes(self) -> int:
        return int(len(np.unique(self.episode_index)))

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self.arrays[key].shape[1:])

    @classmethod
    def load(cls, path: str | Path, keys: Iterable[str] | None = None, cache_dir: str | Path | None = None) -> "FrameStore":
        """Decodes ``keys`` (default: every feature) of the dataset at ``path``."""
        root = Path(path).expanduser()
        ds = open_local_dataset(root)
        data_keys = [k for k in ds.meta.features if k not in BOOKKEEPING]
        keys = list(data_keys if keys is None else keys)
        missing = [k for k in keys if k not in ds.meta.features]
        if missing:
            raise DatasetError(f"{root} lacks features {missing}; it has {sorted(data_keys)}")
        hf = ds.hf_dataset.with_format("numpy")
        book = hf.select_columns(["episode_index", "task_index", "index"])[0 : len(hf)]
        episodes = ds.meta.episodes
        starts = dict(zip(episodes["episode_index"], episodes["dataset_from_index"]))
        ends = dict(zip(episodes["episode_index"], episodes["dataset_to_index"]))
        if not np.array_equal(book["index"], np.arange(len(hf))):
            raise DatasetError(f"{root}: frame indices are not contiguous from 0; rewrite it with lerobot's tools")
        ep = book["episode_index"].astype(np.int64)
        cache = _cache_folder(root, cache_dir)
        arrays = {}
        for key in keys:
            arrays[key] = _decode_feature(ds, hf, key, cache)
        stats = {k: {s: np.asarray(v) for s, v in st.items()} for k, st in (ds.meta.stats or {}).items()}
        return cls(
            root=root, fps=int(ds.meta.fps), features=dict(ds.meta.features), arrays=arrays, episode_index=ep,
            episode_start=np.array([starts[e] for e in ep], dtype=np.int64),
            episode_end=np.array([ends[e] for e in ep], dtype=np.int64),
            task_index=book["task_index"].astype(np.int64), tasks=list(ds.meta.tasks.index),
            stats=stats, log=read_episode_log(root), camera_keys=tuple(k for k in keys if k in ds.meta.camera_keys),
            robot_type=ds.meta.robot_type,
        )


def _cache_folder(root: Path, cache_dir) -> Path | None:
    """A folder per dataset version: its path and its info.json (frame count, features) hashed."""
    if cache_dir is None:
        return None
    info = (root / "meta" / "info.json").read_text()
    digest = hashlib.sha1(f"{root.resolve()}\n{info}".encode()).hexdigest()[:16]
    folder = Path(cache_dir).expanduser() / f"{root.name}-{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _decode_feature(ds, hf, key: str, cache: Path | None) -> np.ndarray:
    ft = ds.meta.features[key]
    n = len(hf)
    is_image = ft["dtype"] in ("image", "video")
    shape = _hwc(ft["shape"], ft.get("names")) if is_image else tuple(ft["shape"])
    dtype = np.uint8 if is_image else np.dtype(ft["dtype"])
    path = cache / f"{key}.npy" if cache is not None else None
    if path is not None and path.is_file():
        return np.load(path, mmap_mode="r")
    if path is not None:
        # each decoder its own temp file: two trainings on one dataset may fill the cache at once
        _remove_dead_decoders_temps(path)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(n, *shape))
    else:
        out = np.empty((n, *shape), dtype=dtype)
    if ft["dtype"] == "video":
        _decode_video(ds, key, out)
    else:
        column = hf.select_columns([key])
        for i in range(0, n, DECODE_CHUNK):
            chunk = np.asarray(column[i : i + DECODE_CHUNK][key])
            out[i : i + len(chunk)] = chunk.reshape(len(chunk), *shape) if not is_image else _to_hwc(chunk, shape)
    if path is not None:
        out.flush()
        del out
        os.replace(tmp, path)  # a cache file exists only once complete
        return np.load(path, mmap_mode="r")
    return out


def _remove_dead_decoders_temps(path: Path) -> None:
    """A killed decoder leaves its temp file (as large as the array) behind: remove those whose process is gone."""
    for temp in path.parent.glob(f".{path.stem}.*.tmp.npy"):
        pid = temp.name[len(path.stem) + 2 : -len(".tmp.npy")]
        if pid.isdigit() and not _process_alive(int(pid)):
            temp.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _hwc(shape, names) -> tuple[int, int, int]:
    """Image shape as (H, W, C) whichever order the dataset declared."""
    shape = tuple(shape)
    if names and list(names)[:1] == ["channels"] or (len(shape) == 3 and shape[0] in (1, 3) and shape[2] not in (1, 3)):
        return (shape[1], shape[2], shape[0])
    return shape


def _to_hwc(chunk: np.ndarray, shape) -> np.ndarray:
    if chunk.shape[1:] == tuple(shape):
        return chunk
    if chunk.shape[1:] == (shape[2], shape[0], shape[1]):
        return chunk.transpose(0, 2, 3, 1)
    raise DatasetError(f"decoded images of shape {chunk.shape[1:]} do not match the declared {shape}")


def _decode_video(ds, key: str, out: np.ndarray) -> None:
    """All frames of each episode in one call to lerobot's decoder."""
    import torch
    from lerobot.datasets.video_utils import decode_video_frames
    from lerobot.utils.import_utils import get_safe_default_video_backend

    eps = ds.meta.episodes
    for e in range(len(eps)):
        row = eps[e]
        start, end = row["dataset_from_index"], row["dataset_to_index"]
        base = row[f"videos/{key}/from_timestamp"]
        stamps = [base + i / ds.meta.fps for i in range(end - start)]
        frames = decode_video_frames(ds.root / ds.meta.get_video_file_path(row["episode_index"], key), stamps,
                                     ds.tolerance_s, get_safe_default_video_backend())
        out[start:end] = (frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
