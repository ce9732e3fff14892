"""Atomic small-file writes under concurrent writers."""

from __future__ import annotations

import json
from pathlib import Path

from toyland.files import write_json_atomic, write_text_atomic


def _write_many(path: str, who: str, times: int, start) -> None:
    start.wait()  # both started: the writes overlap
    for i in range(times):
        write_json_atomic(Path(path), {"who": who, "i": i, "pad": "x" * 4096})


def test_two_processes_writing_one_file_at_once_both_succeed(tmp_path, run_at_once):
    """Two `--only` runs of one study both write study.json at their start: neither may fail, and the file
    left is one whole write."""
    path = tmp_path / "study.json"
    run_at_once(_write_many, [(str(path), who, 300) for who in ("a", "b")])
    last = json.loads(path.read_text())
    assert last["who"] in ("a", "b") and last["i"] == 299 and len(last["pad"]) == 4096
    assert [p.name for p in tmp_path.iterdir()] == ["study.json"]  # no temp file left behind


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a.json"
    write_json_atomic(path, {"v": 1})
    try:
        write_text_atomic(path, "\ud800")  # a lone surrogate: the write itself fails, after the temp is open
    except UnicodeEncodeError:
        pass
    else:
        raise AssertionError("a lone surrogate cannot be encoded and must raise")
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
