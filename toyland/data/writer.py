"""Appends episodes to a LeRobotDataset on local disk with lerobot's own writer, so that a SIGKILL at
any moment loses at most the episodes since the last checkpoint.

lerobot keeps its current parquet files (frames, episode metadata) open between episodes and writes
their footers only in ``finalize()``: until then the file cannot be read. It also rewrites
``meta/info.json``, ``stats.json`` and ``tasks.parquet`` in place after every episode. Hence:

- A checkpoint finalizes, copies the rewritable meta files into a backup folder, and commits by
  atomically replacing the episode log, whose record lists every append-only file (``data/``,
  ``videos/``, ``meta/episodes/``) with its size. A kill before that replace leaves the previous
  record, and the files and backup it names, as they were.
- After a checkpoint the dataset is reopened for appending, and lerobot then starts new files: no
  file a record lists is written again.
- toyland's own side files (``sim/episode_<index>.npz``, the simulator state of an episode's frames)
  are written before their episode is saved and tracked like lerobot's append-only files.
- One process writes a collection at a time (``WriteLock``): a second one waits, saying for whom, and
  then resumes what the first left, so two study arms that share a dataset can start together.
- Opening an existing collection rolls it back to its record (``rollback``): files the record does
  not list are removed and the meta files restored from its backup. The collection then goes on
  from the record's seeds, so the result equals an uninterrupted collection.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toyland.data.episode_log import (BACKUP_ROOT, LOG_PATH, Checkpoint, DatasetError, EpisodeLog, fsync_dir,
                                      read_episode_log)

TRACKED = ("data", "videos", "meta/episodes", "sim")  # append-only folders: a record lists their files
SIM_DIR = "sim"  # toyland's per-episode side arrays (the simulator state of every frame), one .npz each
SCRATCH = re.compile(r"^(images|tmp[A-Za-z0-9_]{8})$")  # lerobot's frames of unsaved episodes, its mkdtemp folders
KILL_ENV = "TOYLAND_TEST_KILL_AT"
KILL_POINTS = ("episode", "metadata", "finalize", "commit")


def _quiet_datasets() -> None:
    import datasets

    # one "Map" bar per saved episode drowns the collection's own; lerobot re-enables them after
    # some of its calls, hence a call before each write
    datasets.disable_progress_bars()
    logging.getLogger("datasets").setLevel(logging.ERROR)
    # lerobot 0.6 names its default video codec each time a dataset is opened for writing, images or not
    logging.getLogger("lerobot.configs.video").setLevel(logging.WARNING)


def is_lerobot_dataset(root: Path) -> bool:
    return (Path(root) / "meta" / "info.json").is_file()


def sim_state_path(root: Path, episode_index: int) -> Path:
    return Path(root) / SIM_DIR / f"episode_{int(episode_index):06d}.npz"


def tracked_files(root: Path) -> dict[str, int]:
    """The append-only files of the dataset at ``root``: relative path -> size."""
    root = Path(root)
    return {str(p.relative_to(root)): p.stat().st_size
            for folder in TRACKED for p in sorted((root / folder).rglob("*")) if p.is_file()}


def rewritable_meta(root: Path) -> list[Path]:
    """lerobot's meta files rewritten in place (info.json, stats.json, tasks.parquet, ...), not toyland's own."""
    return sorted(p for p in (Path(root) / "meta").iterdir() if p.is_file() and not p.name.startswith("toyland_"))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _copy_durably(src: Path, dst: Path) -> None:
    """``dst`` holds the old content or all of ``src``, never part of it."""
    tmp = dst.with_name(dst.name + ".toyland-tmp")
    shutil.copyfile(src, tmp)
    _fsync(tmp)
    os.replace(tmp, dst)


def commit_checkpoint(root: Path, log: EpisodeLog, hit=lambda point: None) -> Checkpoint:
    """Records the dataset as it is now as the collection's checkpoint (its files must be finalized).
    Durable against power loss too: the new files and the backup are synced before the record is
    written, and the record's replace is the commit."""
    root = Path(root)
    info = json.loads((root / "meta" / "info.json").read_text())
    previous = log.checkpoint
    index = previous.index + 1 if previous else 0
    files = tracked_files(root)
    for rel, size in files.items():
        if previous is None or previous.files.get(rel) != size:
            _fsync(root / rel)
    for folder in {(root / rel).parent for rel in files} | {root / "meta"}:
        fsync_dir(folder)
    backup = root / BACKUP_ROOT / str(index)
    if backup.exists():
        shutil.rmtree(backup)  # half made by a commit that was killed
    backup.mkdir(parents=True)
    backups = {}
    for path in rewritable_meta(root):
        shutil.copyfile(path, backup / path.name)
        _fsync(backup / path.name)
        backups[path.name] = _sha256(backup / path.name)
    fsync_dir(backup)
    record = Checkpoint(index=index, episodes=int(info["total_episodes"]), frames=int(info["total_frames"]),
                        files=files, backups=backups)
    if record.episodes != len(log.episodes):
        raise RuntimeError(f"{root}: the dataset holds {record.episodes} episodes but the episode log "
                           f"{len(log.episodes)}; this is a bug in toyland's writer")
    hit("commit")
    dataclasses.replace(log, checkpoint=record).save(root)  # the commit
    log.checkpoint = record
    for old in (root / BACKUP_ROOT).iterdir():
        if old.name != str(index):
            shutil.rmtree(old)
    return record


def rollback(root: Path, log: EpisodeLog) -> list[str]:
    """Returns the dataset at ``root`` to ``log``'s checkpoint; one line per file removed or restored.
    Raises a DatasetError when a file the checkpoint made durable is gone or changed."""
    root, record = Path(root), log.checkpoint
    start_over = f"the collection cannot be rolled back; delete {root} and collect it again"
    for rel, size in record.files.items():
        path = root / rel
        if not path.is_file():
            raise DatasetError(f"{path} is missing but checkpoint {record.index} made it durable; {start_over}")
        if path.stat().st_size != size:
            raise DatasetError(f"{path} has {path.stat().st_size} bytes but checkpoint {record.index} made it "
                               f"durable with {size}; {start_over}")
    backup = root / record.backup_dir
    for name, digest in record.backups.items():
        if not (backup / name).is_file() or _sha256(backup / name) != digest:
            raise DatasetError(f"{backup / name}, checkpoint {record.index}'s copy of meta/{name}, is missing or "
                               f"changed; {start_over}")
    actions = []
    for rel in sorted(set(tracked_files(root)) - set(record.files)):
        (root / rel).unlink()
        actions.append(f"removed {rel} (written after checkpoint {record.index})")
    for path in rewritable_meta(root):
        if path.name not in record.backups:
            path.unlink()
            actions.append(f"removed meta/{path.name} (written after checkpoint {record.index})")
    for name, digest in record.backups.items():
        target = root / "meta" / name
        if not target.is_file() or _sha256(target) != digest:
            _copy_durably(backup / name, target)
            actions.append(f"restored meta/{name} as checkpoint {record.index} left it")
    for path in sorted(root.iterdir()):
        if path.is_dir() and SCRATCH.match(path.name):
            if _holds_files(path):  # lerobot leaves the empty folders of saved episodes' frames behind
                actions.append(f"removed {path.name}/ (lerobot's frames of an unsaved episode)")
            shutil.rmtree(path)
    for old in sorted((root / BACKUP_ROOT).iterdir()):
        if old.name != str(record.index):
            shutil.rmtree(old)
            actions.append(f"removed {old.relative_to(root)}/ (a backup that checkpoint {record.index} does not use)")
    for folder in TRACKED:  # empty chunk folders of removed files, deepest first
        for path in sorted((root / folder).rglob("*"), key=lambda p: len(p.parts), reverse=True):
            if path.is_dir() and not any(path.iterdir()):
                path.rmdir()
    fsync_dir(root / "meta")
    return actions


def _holds_files(root: Path) -> bool:
    return any(p.is_file() for p in Path(root).rglob("*"))


@dataclass
class KillSwitch:
    """Test hook: with ``TOYLAND_TEST_KILL_AT=point:n`` the process SIGKILLs itself the n-th time it
    reaches ``point``, so that tests can kill a real collection at a chosen moment. Points: episode (an
    episode saved, not yet checkpointed), metadata (lerobot has just rewritten info.json and stats.json
    for a saved episode), finalize (inside lerobot's finalize: the frames file closed, the
    episode-metadata file still without its footer), commit (a checkpoint finalized and backed up, its
    record not yet written)."""

    point: str | None = None
    n: int = 1
    seen: int = 0

    @classmethod
    def from_env(cls) -> "KillSwitch":
        spec = os.environ.get(KILL_ENV, "")
        if not spec:
            return cls()
        point, _, n = spec.partition(":")
        if point not in KILL_POINTS:
            raise ValueError(f"{KILL_ENV}={spec}: use one of {', '.join(KILL_POINTS)}, optionally with ':n'")
        return cls(point, int(n or 1))

    def hit(self, point: str) -> None:
        if point == self.point:
            self.seen += 1
            if self.seen == self.n:
                os.kill(os.getpid(), signal.SIGKILL)

    @contextlib.contextmanager
    def inside(self, obj, name: str, point: str, after: bool):
        """While in the block, ``obj.name`` (a lerobot method) reaches ``point`` before or after it runs."""
        if point != self.point:
            yield
            return
        method = getattr(obj, name)

        def wrapped(*args, **kwargs):
            if not after:
                self.hit(point)
            result = method(*args, **kwargs)
            if after:
                self.hit(point)
            return result

        setattr(obj, name, wrapped)
        try:
            yield
        finally:
            delattr(obj, name)  # the class's method again (and no reference cycle through the wrapper)


class WriteLock:
    """An exclusive advisory lock on a file beside ``root`` (a collection, or a study's timing.json; not
    inside a collection: a fresh start removes the folder). A second writer would roll back files the first is still writing; it waits instead,
    saying which process holds the lock. The kernel releases it when the holder dies, even by SIGKILL."""

    def __init__(self, root: Path, wait: bool = True):
        root.parent.mkdir(parents=True, exist_ok=True)
        self.path = root.parent / f".{root.name}.lock"
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "unknown"
            if not wait:
                self.release()
                raise DatasetError(f"{root} is being written by process {holder}; try again after it stops") from None
            logging.getLogger(__name__).warning("%s is being written by process %s; waiting until it stops", root, holder)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)  # (a no-op where this descriptor never got the lock)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "WriteLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class DatasetWriter:
    def __init__(self, root: str | Path, repo_id: str, features: dict, fps: int, robot_type: str,
                 use_videos: bool, config: dict, checkpoint_every: int = 10, image_threads: int = 2):
        self.root = Path(root)
        self._lock = WriteLock(self.root)
        try:
            self._open(repo_id, features, fps, robot_type, use_videos, config, checkpoint_every, image_threads)
        except BaseException:
            self._lock.release()
            raise

    def _open(self, repo_id: str, features: dict, fps: int, robot_type: str, use_videos: bool, config: dict,
              checkpoint_every: int, image_threads: int) -> None:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        _quiet_datasets()
        self.repo_id = repo_id
        self.checkpoint_every, self.image_threads = max(1, int(checkpoint_every)), image_threads
        self._pending = 0  # episodes saved since the last checkpoint
        self._discards_committed = 0
        self._kill = KillSwitch.from_env()
        self.rolled_back: list[str] = []  # what opening the collection removed or restored
        log = self._resume(config) if self.root.exists() and _holds_files(self.root) else None
        if log is not None and log.checkpoint.episodes > 0:
            self.log, self._discards_committed = log, len(log.discarded)
            self.dataset = self._open_for_append()
            self._check_features(features)
        else:  # nothing durable yet: lerobot cannot reopen a dataset without episodes, so start it afresh
            if self.root.exists():
                shutil.rmtree(self.root)
            self.dataset = LeRobotDataset.create(repo_id, fps=fps, features=features, root=self.root,
                                                 robot_type=robot_type, use_videos=use_videos,
                                                 image_writer_threads=self.image_threads)
            self.log = EpisodeLog(config=config, discarded=log.discarded if log else [])
            self._discards_committed = len(self.log.discarded)
            commit_checkpoint(self.root, self.log)  # the empty record: a kill from here on rolls back to it

    def _resume(self, config: dict) -> EpisodeLog | None:
        """The log of the collection at ``root``, rolled back to its checkpoint; None when it holds nothing to keep."""
        if not is_lerobot_dataset(self.root):
            raise FileExistsError(f"{self.root} exists and is not a LeRobotDataset; choose a new or empty output_dir")
        log = read_episode_log(self.root)
        if log is None:
            if not tracked_files(self.root):
                return None  # stopped before its first record was written: no episode to lose
            raise FileExistsError(f"{self.root} is a LeRobotDataset without {LOG_PATH}: not a toyland collection, "
                                  "so it cannot be resumed; choose a new output_dir")
        from toyland.sim import resolved_env_config

        # env options added since take their defaults on both sides, as they did then (a re-render
        # carries its source's env as that source recorded it)
        recorded, config = dict(log.config), dict(config)
        for side in (recorded, config):
            if isinstance(side.get("env"), dict):
                side["env"] = resolved_env_config(side["env"])
        changed = sorted(k for k in set(recorded) | set(config) if recorded.get(k) != config.get(k))
        if changed:
            raise ValueError(f"{self.root} was collected with a different config (keys {changed} differ); "
                             "resume with the same config or choose a new output_dir")
        if log.checkpoint is None:  # by a toyland without checkpoint records
            if not tracked_files(self.root):
                return None
            self._adopt(log)
        self.rolled_back = rollback(self.root, log)
        for line in self.rolled_back:
            logging.getLogger(__name__).warning("resuming %s: %s", self.root, line)
        return log

    def _adopt(self, log: EpisodeLog) -> None:
        """A collection by a toyland without checkpoint records: kept when complete, given a record."""
        from toyland.data.frames import require_readable

        try:
            require_readable(self.root)
        except DatasetError as exc:
            raise DatasetError(f"{self.root} was collected by an older toyland, without checkpoint records, and "
                               f"stopped mid-write, so it cannot be rolled back: {exc}") from exc
        log.trim(json.loads((self.root / "meta" / "info.json").read_text())["total_episodes"])
        commit_checkpoint(self.root, log)

    def _open_for_append(self):
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        from toyland.data.frames import hub_offline, require_readable

        require_readable(self.root)
        _quiet_datasets()
        with hub_offline():  # (resume reads the metadata only, not the frames)
            return LeRobotDataset.resume(self.repo_id, root=self.root, image_writer_threads=self.image_threads)

    def _check_features(self, features: dict) -> None:
        stored = {k: v for k, v in self.dataset.meta.features.items() if k in features}
        new = sorted(k for k in features if k not in stored)
        if new:
            raise ValueError(
                f"{self.root}: this collection records {new}, which the dataset there lacks (it was collected by an "
                "older toyland, or with other cameras or modalities): resume it with the toyland and config that "
                "started it, or collect into a new folder")
        for key, ft in features.items():
            if key not in stored or tuple(stored[key]["shape"]) != tuple(ft["shape"]) or stored[key]["dtype"] != ft["dtype"]:
                raise ValueError(f"{self.root}: feature '{key}' {ft} does not match the stored {stored.get(key)}")

    @property
    def num_episodes(self) -> int:
        return len(self.log.episodes)

    def add_episode(self, frames: list[dict], task: str, record: dict, sim_state: dict | None = None) -> None:
        """Appends an episode; ``sim_state`` (name -> per-frame array) goes to ``sim/episode_<index>.npz``,
        a tracked file: written before the episode is saved, so a checkpoint covers both or neither."""
        if sim_state is not None:
            path = sim_state_path(self.root, self.num_episodes)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".toyland-tmp")
            with open(tmp, "wb") as f:
                np.savez_compressed(f, **sim_state)
            os.replace(tmp, path)  # the checkpoint's commit fsyncs it
        for frame in frames:
            self.dataset.add_frame({**frame, "task": task})
        _quiet_datasets()
        with self._kill.inside(self.dataset.meta, "save_episode", "metadata", after=True):
            self.dataset.save_episode()
        self.log.episodes.append({"episode_index": self.num_episodes, **record})
        self._pending += 1
        self._kill.hit("episode")
        if self._pending >= self.checkpoint_every:
            self.checkpoint()

    def discard(self, record: dict) -> None:
        self.log.discarded.append(record)

    def _finalize_and_commit(self) -> None:
        if self._pending or len(self.log.discarded) != self._discards_committed:
            with self._kill.inside(self.dataset.meta, "_close_writer", "finalize", after=False):
                self.dataset.finalize()  # (stops lerobot's image writer threads first)
            commit_checkpoint(self.root, self.log, self._kill.hit)
            self._discards_committed = len(self.log.discarded)
        else:
            self.dataset.writer.stop_image_writer()

    def checkpoint(self) -> None:
        """Make everything added so far durable: finalize, commit the record, reopen for appending."""
        self._finalize_and_commit()
        if self._pending:  # a finalized lerobot dataset would overwrite its last files: reopen
            self._pending = 0
            self.dataset = self._open_for_append()

    def close(self) -> None:
        try:
            self._finalize_and_commit()
            self._pending = 0
        finally:
            self._lock.release()
