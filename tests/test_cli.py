"""The ``toyland`` command as a user runs it."""

import json
import subprocess
import sys

import imageio.v2 as imageio


def toyland(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "toyland.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_demo_prints_success_per_toy_set_and_writes_a_video(tmp_path):
    out = tmp_path / "run"
    proc = toyland(
        "demo", "episodes=3", "toy_sets=[train,heldout]", "video.episodes=1", "video.size=64",
        f"hydra.run.dir={out}", cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "expert on" in line]
    assert len(lines) == 2 and "train" in lines[0] and "heldout" in lines[1]
    assert all("/3 =" in line and "95% CI" in line for line in lines)
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"train", "heldout"} and all(r["episodes"] == 3 for r in results.values())
    reader = imageio.get_reader(out / "expert.mp4", format="FFMPEG")
    assert reader.get_data(0).shape == (64, 64, 3) and 3 <= reader.count_frames() <= 101


def test_bad_config_key_is_named(tmp_path):
    proc = toyland("demo", "episodez=3", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode != 0 and "episodez" in proc.stderr
    proc = toyland("demo", "env.embodiment=octopus", "episodes=1", f"hydra.run.dir={tmp_path}", cwd=tmp_path)
    assert proc.returncode != 0 and "octopus" in proc.stderr and "panda" in proc.stderr


def test_unknown_command_lists_commands(tmp_path):
    proc = toyland("trian", cwd=tmp_path)
    assert proc.returncode == 2 and "demo" in proc.stderr


def test_export_names_what_it_cannot_export(tmp_path):
    proc = toyland("export", str(tmp_path / "nowhere"), str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 2 and "nowhere" in proc.stderr
    proc = toyland("export", str(tmp_path), str(tmp_path / "out"), "weigths=ema", cwd=tmp_path)
    assert proc.returncode != 0 and "weigths" in proc.stderr
