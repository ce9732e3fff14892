"""The per-episode record toyland keeps next to a LeRobotDataset (``meta/toyland_episodes.json``):
the collection config, and for every kept episode its seed, instruction, factor values and toy
specs; the seeds that were tried and discarded too, so that a resumed collection neither repeats
nor skips one. lerobot ignores the file; ``read_episode_log`` reads it back."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

LOG_PATH = Path("meta") / "toyland_episodes.json"
LOG_VERSION = 1


@dataclass
class EpisodeLog:
    config: dict
    episodes: list[dict] = field(default_factory=list)  # kept, in dataset episode order
    discarded: list[dict] = field(default_factory=list)

    @property
    def next_seed(self) -> int:
        tried = [e["seed"] for e in self.episodes + self.discarded]
        return max(tried) + 1 if tried else int(self.config["seed"])

    def trim(self, kept: int) -> None:
        """Forget what came after the dataset's last durable episode (those seeds are tried again)."""
        if kept > len(self.episodes):
            raise RuntimeError(
                f"the dataset holds {kept} episodes but its {LOG_PATH} lists only {len(self.episodes)}; "
                "it was changed by something other than toyland collect, so it cannot be resumed"
            )
        if kept == len(self.episodes):
            return
        self.episodes = self.episodes[:kept]
        last = self.episodes[-1]["seed"] if self.episodes else int(self.config["seed"]) - 1
        self.discarded = [d for d in self.discarded if d["seed"] < last]

    def save(self, root: Path) -> None:
        """Atomic: a reader sees the old file or the new one, never half of one."""
        path = Path(root) / LOG_PATH
        tmp = path.with_suffix(".tmp")
        data = {"version": LOG_VERSION, "config": self.config, "episodes": self.episodes, "discarded": self.discarded}
        with open(tmp, "w") as f:
            json.dump(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def read_episode_log(root: str | Path) -> EpisodeLog | None:
    """The toyland record of a dataset, or None for a dataset made elsewhere (e.g. a real robot's)."""
    path = Path(root) / LOG_PATH
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if data.get("version") != LOG_VERSION:
        raise ValueError(f"{path} has version {data.get('version')}; this toyland reads version {LOG_VERSION}")
    return EpisodeLog(config=data["config"], episodes=data["episodes"], discarded=data["discarded"])
