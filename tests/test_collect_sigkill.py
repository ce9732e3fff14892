"""A real ``toyland collect`` killed with SIGKILL at the moments a collection spends its time in
resumes, each time, to the dataset an uninterrupted run makes; with the network closed and the
hub's offline switch unset, no connection is attempted."""

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

from toyland.data.check import check_dataset, repair_dataset
from toyland.data.episode_log import read_episode_log
from toyland.data.writer import KILL_ENV

EPISODES = 6
COLLECT = ["collect", f"episodes={EPISODES}", "env.image_size=32", "env.cameras=[front]", "checkpoint_every=2", "workers=1"]
OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")

# `toyland collect` in an interpreter whose network is closed: every name lookup or TCP/UDP connection
# is written to $TOYLAND_TEST_NETWORK_LOG and refused
NO_NETWORK = """
import os, socket, sys

def _refuse(what):
    with open(os.environ["TOYLAND_TEST_NETWORK_LOG"], "a") as f:
        f.write(f"{what}\\n")
    raise OSError(f"network closed by the test: {what}")

_connect = socket.socket.connect
def _guarded_connect(self, address, *args):
    if self.family in (socket.AF_INET, socket.AF_INET6):
        _refuse(address)
    return _connect(self, address, *args)
socket.socket.connect = _guarded_connect
socket.getaddrinfo = lambda host, *args, **kwargs: _refuse(host)

from toyland.cli import main
main(sys.argv[1:])
"""

# (what the kill interrupts, TOYLAND_TEST_KILL_AT or None for a SIGKILL sent from outside, episodes
# durable when it lands). One collection is killed at each in turn: each run resumes the one before.
KILLS = [
    ("the first episode, lerobot's info.json already counting it", "metadata:1", 0),
    ("a checkpoint's finalize: frames file closed, episode-metadata file without its footer", "finalize:2", 2),
    ("a checkpoint finalized and backed up, its record not yet written", "commit:2", 4),
    ("the time between checkpoints, a frames file open without its footer (SIGKILL from outside)", None, 4),
]


def start(tmp_path, root, name, kill_at=None, args=COLLECT):
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_SWITCHES and k != KILL_ENV}
    env["TOYLAND_TEST_NETWORK_LOG"] = str(tmp_path / "network.log")
    if kill_at:
        env[KILL_ENV] = kill_at
    cmd = [sys.executable, "-c", NO_NETWORK, *args, f"output_dir={root}", f"hydra.run.dir={tmp_path / name}"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def kill_between_checkpoints(proc, root, timeout=120):
    """SIGKILLs ``proc`` once it has begun writing a frames file that no checkpoint covers."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        log = read_episode_log(root)
        covered = set(log.checkpoint.files) if log and log.checkpoint else set()
        if any(str(p.relative_to(root)) not in covered for p in (root / "data").glob("*/*.parquet")):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    return finish(proc)


def frames(root):
    """Every frame of the dataset at ``root`` as lerobot's LeRobotDataset reads it."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset("test/sigkill", root=root)
    items = [ds[i] for i in range(len(ds))]
    arrays = {k: np.stack([item[k].numpy() for item in items]) for k in items[0] if k != "task"}
    arrays["task"] = np.array([item["task"] for item in items])
    return arrays


def first_episodes(arrays, n):
    keep = arrays["episode_index"] < n
    return {k: v[keep] for k, v in arrays.items()}


def assert_same(got, want):
    assert set(got) == set(want)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_sigkilled_collection_resumes_to_the_uninterrupted_dataset(tmp_path, network_attempts):
    base, root = tmp_path / "uninterrupted", tmp_path / "killed"
    uninterrupted = start(tmp_path, base, "hydra-base")  # alongside the first killed run
    for i, (moment, kill_at, durable) in enumerate(KILLS):
        proc = start(tmp_path, root, f"hydra-{i}", kill_at)
        rc, err = kill_between_checkpoints(proc, root) if kill_at is None else finish(proc)
        assert rc == -signal.SIGKILL, f"not killed during {moment}: exit {rc}\n{err[-3000:]}"
        if i == 0:
            rc, err = finish(uninterrupted)
            assert rc == 0, err[-3000:]
            want = frames(base)
        # the kill left something no checkpoint covers ...
        assert not check_dataset(root).ok, moment
        # ... and rolling back to the last checkpoint keeps every episode it made durable
        copy = tmp_path / f"repaired-{i}"
        shutil.copytree(root, copy)
        actions, report = repair_dataset(copy)
        assert actions and report.ok, (moment, actions, report.format())
        assert read_episode_log(copy).checkpoint.episodes == durable, moment
        if durable:
            assert_same(frames(copy), first_episodes(want, durable))
    rc, err = finish(start(tmp_path, root, "hydra-last"))  # the same command once more, to the end
    assert rc == 0, err[-3000:]
    assert_same(frames(root), want)
    resumed, fresh = read_episode_log(root), read_episode_log(base)
    assert resumed.episodes == fresh.episodes and resumed.discarded == fresh.discarded
    report = check_dataset(root)
    assert report.ok and report.episodes == EPISODES, report.format()
    assert not (tmp_path / "network.log").exists(), (tmp_path / "network.log").read_text()
    assert not network_attempts


def test_sigkilled_video_collection_resumes_to_the_uninterrupted_dataset(tmp_path, network_attempts):
    """Video storage: lerobot appends each episode to an mp4 it rewrites; the kill lands after an episode
    beyond the checkpoint went into a new video file."""
    args = [a if not a.startswith("episodes=") else "episodes=4" for a in COLLECT] + ["video=true"]
    base, root = tmp_path / "uninterrupted", tmp_path / "killed"
    uninterrupted = start(tmp_path, base, "hydra-base", args=args)
    rc, err = finish(start(tmp_path, root, "hydra-killed", "metadata:3", args=args))
    assert rc == -signal.SIGKILL, err[-3000:]
    assert any("videos/" in p for p in check_dataset(root).problems)
    rc, err = finish(start(tmp_path, root, "hydra-resumed", args=args))
    assert rc == 0, err[-3000:]
    assert "removed videos/" in err
    assert finish(uninterrupted)[0] == 0
    assert_same(frames(root), frames(base))
    assert check_dataset(root).ok
    assert not (tmp_path / "network.log").exists() and not network_attempts
