"""``toyland data check PATH [--repair]``: is a LeRobotDataset on local disk whole, and if not, back
to its last consistent state.

The check reads file metadata, the episode metadata and the frames' bookkeeping columns: every
parquet file complete, episode indices and frame ranges contiguous and equal to info.json's totals,
every episode's frames in the file its metadata names, every video file there and long enough, and
for a toyland collection the episode log and its checkpoint record agreeing with all of it. Then it
reads the first and last frame of every episode through lerobot. ``--repair`` rolls a toyland
collection back to its checkpoint record (``toyland.data.writer.rollback``).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from toyland.data.episode_log import LOG_PATH, DatasetError, EpisodeLog, read_episode_log
from toyland.data.frames import check_dataset_path

EPISODE_COLUMNS = ("episode_index", "length", "dataset_from_index", "dataset_to_index", "data/chunk_index",
                   "data/file_index", "tasks")


@dataclass
class CheckReport:
    root: Path
    episodes: int = 0
    frames: int = 0
    problems: list[str] = field(default_factory=list)
    log: EpisodeLog | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        record = self.log.checkpoint if self.log is not None else None
        kept = f"; checkpoint {record.index} ({record.episodes} episodes)" if record else ""
        if self.ok:
            return f"{self.root}: ok, {self.episodes} episodes, {self.frames} frames, every episode readable{kept}"
        lines = [f"{self.root}: {len(self.problems)} problem(s){kept}"] + [f"  - {p}" for p in self.problems]
        if record is not None:
            lines.append(f"run `toyland data check {self.root} --repair` to roll it back to checkpoint {record.index} "
                         f"({record.episodes} episodes), or resume it with the same `toyland collect` command")
        else:
            lines.append("it has no toyland checkpoint record, so --repair cannot roll it back: "
                         "collect, record or download it again")
        return "\n".join(lines)


def check_dataset(path: str | Path, read_frames: bool = True) -> CheckReport:
    """Every problem found in the dataset at ``path`` (none: lerobot reads all of it)."""
    root = check_dataset_path(path)
    report = CheckReport(root)
    info_path = root / "meta" / "info.json"
    try:
        info = json.loads(info_path.read_text())
        report.episodes, report.frames = int(info["total_episodes"]), int(info["total_frames"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        report.problems.append(f"{info_path.relative_to(root)} is not a readable lerobot info file ({exc})")
        _check_log(root, report, None)
        return report
    episodes = _check_files_and_episodes(root, info, report)
    if episodes is not None:
        _check_frames(root, info, episodes, report)
        _check_videos(root, info, episodes, report)
    _check_log(root, report, episodes)
    if report.ok and read_frames and episodes is not None:
        _read_every_episode(root, episodes, report)
    return report


def _parquet_rows(path: Path, report: CheckReport) -> int | None:
    import pyarrow.parquet as pq

    try:
        return pq.read_metadata(path).num_rows
    except Exception as exc:  # a torn file: ArrowInvalid, OSError, ...
        report.problems.append(f"{path.relative_to(report.root)} is not a complete parquet file ({exc})")
        return None


def _check_files_and_episodes(root: Path, info: dict, report: CheckReport) -> dict | None:
    """The episode metadata as columns, or None when it cannot be read whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tasks = root / "meta" / "tasks.parquet"
    if tasks.is_file():
        _parquet_rows(tasks, report)
    elif report.episodes:
        report.problems.append("meta/tasks.parquet is missing")
    data_ok = [_parquet_rows(p, report) is not None for p in sorted((root / "data").glob("*/*.parquet"))]
    meta_files = sorted((root / "meta" / "episodes").glob("*/*.parquet"))
    meta_ok = [_parquet_rows(p, report) is not None for p in meta_files]
    if not all(data_ok) or not all(meta_ok):
        return None
    if not meta_files:
        if report.episodes:
            report.problems.append(f"meta/episodes holds no parquet file but info.json says {report.episodes} episodes")
        return None
    tables = [pq.read_table(p) for p in meta_files]
    columns = [c for c in tables[0].column_names if c in EPISODE_COLUMNS or c.startswith("videos/")]
    eps = pa.concat_tables([t.select(columns) for t in tables]).to_pydict()
    n = len(eps["episode_index"])
    if eps["episode_index"] != list(range(n)):
        report.problems.append(f"meta/episodes lists episode indices {_span(eps['episode_index'])}, not 0..{n - 1}")
    if n != report.episodes:
        report.problems.append(f"meta/episodes lists {n} episodes but meta/info.json says {report.episodes}")
    if sum(eps["length"]) != report.frames:
        report.problems.append(f"the episodes' lengths sum to {sum(eps['length'])} frames but meta/info.json says "
                               f"{report.frames}")
    starts = [0] + eps["dataset_to_index"][:-1]
    if eps["dataset_from_index"] != starts or [b - a for a, b in zip(eps["dataset_from_index"], eps["dataset_to_index"])] != eps["length"]:
        report.problems.append("the episodes' frame ranges (dataset_from_index, dataset_to_index) are not contiguous")
    return eps


def _span(values: list[int]) -> str:
    return f"{values[:5]}{' ...' if len(values) > 5 else ''}"


def _check_frames(root: Path, info: dict, eps: dict, report: CheckReport) -> None:
    """Every episode's frames in the file its metadata names, with the frame indices it gives."""
    import pyarrow.parquet as pq

    counts, first, last = Counter(), {}, {}
    where = {}
    for path in sorted((root / "data").glob("*/*.parquet")):
        table = pq.read_table(path, columns=["episode_index", "index"]).to_pydict()
        rel = str(path.relative_to(root))
        for ep, index in zip(table["episode_index"], table["index"]):
            counts[ep] += 1
            first.setdefault(ep, index)
            last[ep] = index
            where.setdefault(ep, rel)
    listed = set(eps["episode_index"])
    stray = sorted(set(counts) - listed)
    if stray:
        report.problems.append(f"the frame files hold frames of episodes {_span(stray)} that meta/episodes does not list")
    for i, ep in enumerate(eps["episode_index"]):
        expected = info["data_path"].format(chunk_index=eps["data/chunk_index"][i], file_index=eps["data/file_index"][i])
        if counts[ep] != eps["length"][i] or where.get(ep) != expected:
            report.problems.append(f"episode {ep}: {counts[ep]} frames found ({where.get(ep)}), its metadata says "
                                   f"{eps['length'][i]} in {expected}")
        elif (first[ep], last[ep] + 1) != (eps["dataset_from_index"][i], eps["dataset_to_index"][i]):
            report.problems.append(f"episode {ep}: frame indices {first[ep]}..{last[ep]} disagree with its metadata")


def _check_videos(root: Path, info: dict, eps: dict, report: CheckReport) -> None:
    from lerobot.datasets.video_utils import get_video_duration_in_s

    fps = float(info["fps"])
    for key, ft in info["features"].items():
        if ft.get("dtype") != "video":
            continue
        ends = {}
        for i, ep in enumerate(eps["episode_index"]):
            file = info["video_path"].format(video_key=key, chunk_index=eps[f"videos/{key}/chunk_index"][i],
                                             file_index=eps[f"videos/{key}/file_index"][i])
            ends[file] = max(ends.get(file, 0.0), eps[f"videos/{key}/to_timestamp"][i])
        for file, end in sorted(ends.items()):
            if not (root / file).is_file():
                report.problems.append(f"{file} is missing (the episode metadata refers to it)")
                continue
            try:
                duration = get_video_duration_in_s(root / file)
            except Exception as exc:  # a torn mp4 has no readable container
                report.problems.append(f"{file} is not a readable video ({exc})")
                continue
            if duration < end - 1.0 / fps:
                report.problems.append(f"{file} lasts {duration:.2f} s but its episodes reach {end:.2f} s")


def _check_log(root: Path, report: CheckReport, eps: dict | None) -> None:
    """The toyland episode log and its checkpoint record against the dataset (none: not a toyland collection)."""
    from toyland.data.writer import _sha256, rewritable_meta, tracked_files

    try:
        report.log = log = read_episode_log(root)
    except DatasetError as exc:
        report.problems.append(str(exc))
        return
    if log is None:
        return
    if eps is not None:
        if len(log.episodes) != len(eps["episode_index"]):
            report.problems.append(f"{LOG_PATH} lists {len(log.episodes)} episodes, the dataset {len(eps['episode_index'])}")
        for i, (entry, length, tasks) in enumerate(zip(log.episodes, eps["length"], eps["tasks"])):
            if entry.get("length", length) != length or entry.get("instruction", tasks[0]) not in tasks:
                report.problems.append(f"episode {i}: {LOG_PATH} says {entry.get('length')} frames of "
                                       f"'{entry.get('instruction')}', the dataset {length} of {tasks}")
                break
    record = log.checkpoint
    if record is None:
        return
    if (record.episodes, record.frames) != (report.episodes, report.frames):
        report.problems.append(f"checkpoint {record.index} made {record.episodes} episodes ({record.frames} frames) "
                               f"durable but meta/info.json says {report.episodes} ({report.frames})")
    files = tracked_files(root)
    for rel in sorted(set(files) - set(record.files)):
        report.problems.append(f"{rel} was written after checkpoint {record.index}")
    for rel, size in sorted(record.files.items()):
        if files.get(rel) != size:
            report.problems.append(f"{rel}, made durable by checkpoint {record.index} with {size} bytes, "
                                   f"{'is missing' if rel not in files else f'has {files[rel]}'}")
    current = {p.name: p for p in rewritable_meta(root)}
    for name in sorted(set(current) | set(record.backups)):
        if name not in record.backups:
            report.problems.append(f"meta/{name} was written after checkpoint {record.index}")
        elif name not in current or _sha256(current[name]) != record.backups[name]:
            report.problems.append(f"meta/{name} is not as checkpoint {record.index} left it")


def _read_every_episode(root: Path, eps: dict, report: CheckReport) -> None:
    from toyland.data.frames import open_local_dataset

    try:
        ds = open_local_dataset(root)
    except Exception as exc:  # whatever lerobot raises, the report names it
        report.problems.append(f"lerobot cannot open the dataset: {type(exc).__name__}: {exc}")
        return
    for ep, start, end in zip(eps["episode_index"], eps["dataset_from_index"], eps["dataset_to_index"]):
        for index in sorted({start, end - 1}):
            try:
                ds[index]
            except Exception as exc:  # a frame lerobot cannot decode
                report.problems.append(f"episode {ep}: lerobot cannot read frame {index}: {type(exc).__name__}: {exc}")


def repair_dataset(path: str | Path) -> tuple[list[str], CheckReport]:
    """Rolls the toyland collection at ``path`` back to its checkpoint record; what was removed or
    restored, and the check after it."""
    from toyland.data.writer import WriteLock, rollback

    root = check_dataset_path(path)
    log = read_episode_log(root)
    if log is None or log.checkpoint is None:
        raise DatasetError(f"{root} has no toyland checkpoint record ({LOG_PATH}), so there is no state known to be "
                           "consistent to roll back to; collect, record or download it again")
    with WriteLock(root, wait=False):  # rolling back under a live collection would remove what it is writing
        actions = rollback(root, log)
    if log.checkpoint.episodes == 0:
        actions.append(f"checkpoint {log.checkpoint.index} holds no episode: resume with the same `toyland collect` "
                       f"command, or delete {root}")
        return actions, CheckReport(root, log=log)
    return actions, check_dataset(root)
