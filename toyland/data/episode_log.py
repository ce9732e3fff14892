"""The per-episode record toyland keeps next to a LeRobotDataset (``meta/toyland_episodes.json``):
the collection config, and for every kept episode its seed, instruction, factor values and toy
specs; the seeds that were tried and discarded too, so that a resumed collection neither repeats
nor skips one. lerobot ignores the file; ``read_episode_log`` reads it back.

The file is also the collection's commit record: it is replaced atomically only when a checkpoint
is complete, and its ``checkpoint`` names every dataset file that checkpoint made durable (with its
size) and the backup of lerobot's rewritable metadata. Whatever the record does not cover was
written after the checkpoint and is rolled back on resume (``toyland.data.writer.rollback``)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

LOG_PATH = Path("meta") / "toyland_episodes.json"
LOG_VERSION = 2  # 2 added the checkpoint record; version 1 logs (no record) are still read
READABLE_VERSIONS = (1, 2)


class DatasetError(ValueError):
    """A dataset that is missing, malformed or lacks what is asked of it."""


@dataclass
class Checkpoint:
    """What one checkpoint made durable."""

    index: int  # 0 for the empty dataset, +1 per checkpoint
    episodes: int
    frames: int
    files: dict[str, int]  # append-only dataset files (data/, videos/, meta/episodes/): relative path -> size
    backups: dict[str, str]  # lerobot's rewritable meta files (info.json, stats.json, ...): name -> sha256

    @property
    def backup_dir(self) -> Path:
        return BACKUP_ROOT / str(self.index)


BACKUP_ROOT = Path("meta") / "toyland_checkpoint"


@dataclass
class EpisodeLog:
    config: dict
    episodes: list[dict] = field(default_factory=list)  # kept, in dataset episode order
    discarded: list[dict] = field(default_factory=list)
    checkpoint: Checkpoint | None = None  # None: written by a toyland older than the checkpoint record

    @property
    def next_seed(self) -> int:
        tried = [e["seed"] for e in self.episodes + self.discarded]
        return max(tried) + 1 if tried else int(self.config["seed"])

    def trim(self, kept: int) -> None:
        """Forget what came after the dataset's last durable episode (those seeds are tried again)."""
        if kept > len(self.episodes):
            raise DatasetError(
                f"the dataset holds {kept} episodes but its {LOG_PATH} lists only {len(self.episodes)}; "
                "it was changed by something other than toyland collect, so it cannot be resumed"
            )
        if kept == len(self.episodes):
            return
        self.episodes = self.episodes[:kept]
        last = self.episodes[-1]["seed"] if self.episodes else int(self.config["seed"]) - 1
        self.discarded = [d for d in self.discarded if d["seed"] < last]

    def save(self, root: Path) -> None:
        """Atomic and durable: a reader sees the old file or the new one, never half of one."""
        path = Path(root) / LOG_PATH
        tmp = path.with_suffix(".tmp")
        data = {"version": LOG_VERSION, "config": self.config, "episodes": self.episodes, "discarded": self.discarded,
                "checkpoint": asdict(self.checkpoint) if self.checkpoint else None}
        with open(tmp, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Makes a rename or a new file in ``path`` survive a power loss, not only a killed process."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_episode_log(root: str | Path) -> EpisodeLog | None:
    """The toyland record of a dataset, or None for a dataset made elsewhere (e.g. a real robot's)."""
    path = Path(root) / LOG_PATH
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} is not readable JSON ({exc}); the collection's checkpoint record is lost: "
                           f"delete {Path(root)} and collect again") from exc
    if data.get("version") not in READABLE_VERSIONS:
        raise DatasetError(f"{path} has version {data.get('version')}; this toyland reads versions {READABLE_VERSIONS}")
    record = data.get("checkpoint")
    return EpisodeLog(config=data["config"], episodes=data["episodes"], discarded=data["discarded"],
                      checkpoint=Checkpoint(**record) if record else None)
