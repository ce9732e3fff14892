"""Appends episodes to a LeRobotDataset on local disk with lerobot's own writer, durably.

lerobot keeps parquet files open until ``finalize()``; a file without its footer cannot be read.
The writer therefore finalizes every ``checkpoint_every`` episodes and reopens the dataset, which
lerobot resumes into a new file. The episode log is saved just before each finalize and trimmed to
the dataset on reopening, so the two always agree.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from toyland.data.episode_log import LOG_PATH, EpisodeLog, read_episode_log


def _quiet_datasets() -> None:
    import datasets

    # one "Map" bar per saved episode drowns the collection's own; lerobot re-enables them after
    # some of its calls, hence a call before each write
    datasets.disable_progress_bars()
    logging.getLogger("datasets").setLevel(logging.ERROR)


def is_lerobot_dataset(root: Path) -> bool:
    return (Path(root) / "meta" / "info.json").is_file()


class DatasetWriter:
    def __init__(self, root: str | Path, repo_id: str, features: dict, fps: int, robot_type: str,
                 use_videos: bool, config: dict, checkpoint_every: int = 10, image_threads: int = 2):
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        _quiet_datasets()
        self.root, self.repo_id = Path(root), repo_id
        self.checkpoint_every, self.image_threads = max(1, int(checkpoint_every)), image_threads
        self._pending = 0
        log = None
        if self.root.exists() and any(self.root.iterdir()):
            if not is_lerobot_dataset(self.root):
                raise FileExistsError(f"{self.root} exists and is not a LeRobotDataset; choose a new or empty output_dir")
            log = read_episode_log(self.root)
            if log is None:
                raise FileExistsError(f"{self.root} is a LeRobotDataset without {LOG_PATH}: not a toyland collection, "
                                      "so it cannot be resumed; choose a new output_dir")
            changed = sorted(k for k in set(log.config) | set(config) if log.config.get(k) != config.get(k))
            if changed:
                raise ValueError(f"{self.root} was collected with a different config (keys {changed} differ); "
                                 "resume with the same config or choose a new output_dir")
            if json.loads((self.root / "meta" / "info.json").read_text())["total_episodes"] == 0:
                shutil.rmtree(self.root)  # nothing durable yet; lerobot cannot reopen an empty dataset
            else:
                self.dataset = LeRobotDataset(repo_id, root=self.root)
                self._check_features(features)
                log.trim(self.dataset.meta.total_episodes)
        if not self.root.exists() or not any(self.root.iterdir()):
            self.dataset = LeRobotDataset.create(repo_id, fps=fps, features=features, root=self.root,
                                                 robot_type=robot_type, use_videos=use_videos)
            log = EpisodeLog(config=config, discarded=log.discarded if log else [])
            log.save(self.root)
        self.log = log
        self.dataset.start_image_writer(num_processes=0, num_threads=self.image_threads)

    def _check_features(self, features: dict) -> None:
        stored = {k: v for k, v in self.dataset.meta.features.items() if k in features}
        for key, ft in features.items():
            if key not in stored or tuple(stored[key]["shape"]) != tuple(ft["shape"]) or stored[key]["dtype"] != ft["dtype"]:
                raise ValueError(f"{self.root}: feature '{key}' {ft} does not match the stored {stored.get(key)}")

    @property
    def num_episodes(self) -> int:
        return len(self.log.episodes)

    def add_episode(self, frames: list[dict], task: str, record: dict) -> None:
        for frame in frames:
            self.dataset.add_frame({**frame, "task": task})
        _quiet_datasets()
        self.dataset.save_episode()
        self.log.episodes.append({"episode_index": self.num_episodes, **record})
        self._pending += 1
        if self._pending >= self.checkpoint_every:
            self.checkpoint()

    def discard(self, record: dict) -> None:
        self.log.discarded.append(record)

    def checkpoint(self) -> None:
        """Make everything added so far durable: save the log, finalize, reopen for appending."""
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        self.log.save(self.root)
        if not self._pending:
            return
        self.dataset.stop_image_writer()
        self.dataset.finalize()
        self._pending = 0
        _quiet_datasets()
        self.dataset = LeRobotDataset(self.repo_id, root=self.root)
        self.dataset.start_image_writer(num_processes=0, num_threads=self.image_threads)

    def close(self) -> None:
        self.log.save(self.root)
        self.dataset.stop_image_writer()
        self.dataset.finalize()
