"""An evaluation run on disk: ``run.json`` (what was evaluated), ``episodes.jsonl`` (one record per
finished episode, appended and synced as it finishes) and ``results.json``; and the summary of the
records, per cell with Wilson intervals and paired gaps to the in-distribution cell."""

from __future__ import annotations

import json
from pathlib import Path

from toyland.eval.stats import paired_comparison, wilson_interval
from toyland.eval.suite import ID, Suite

RECORDS, RESULTS, RUN = "episodes.jsonl", "results.json", "run.json"
RESULTS_VERSION = 2  # 2: records carry clipped_actions and every scalar outcome (1: boolean outcomes only)


def read_records(out: Path) -> list[dict]:
    path = Path(out) / RECORDS
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill: that episode runs again
            continue
    return records


def summarize(records: list[dict], suite: Suite, episodes: int, seed_start: int) -> dict:
    seeds = set(range(seed_start, seed_start + episodes))
    by_cell: dict[str, dict[int, dict]] = {}
    for r in records:
        if r["seed"] in seeds:
            by_cell.setdefault(r["cell"], {})[r["seed"]] = r  # a replayed duplicate keeps one record
    cells = {}
    for cell in suite.cells:
        rs = list(by_cell.get(cell.name, {}).values())
        n, k = len(rs), sum(r["success"] for r in rs)
        lo, hi = wilson_interval(k, n)
        wrong = sum(bool(r["outcome"].get("wrong_object", False)) for r in rs)
        entry = {**cell.to_dict(), "episodes": n, "successes": k, "success_rate": k / n if n else None, "ci95": [lo, hi],
                 "wrong_object": wrong, "wrong_object_rate": wrong / n if n else None,
                 "wrong_object_ci95": list(wilson_interval(wrong, n)),
                 # episodes in which the actor asked for an action outside the env's range (clipped, then executed)
                 "clipped_episodes": sum(bool(r.get("clipped_actions")) for r in rs)}
        if any("grasped_ever" in r["outcome"] for r in rs):  # how the failures failed
            failed = [r for r in rs if not r["success"]]
            entry["failures"] = {"never_grasped": sum(not r["outcome"].get("grasped_ever") for r in failed),
                                 "grasped_not_done": sum(bool(r["outcome"].get("grasped_ever")) for r in failed)}
        if any(r.get("cue_index") is not None for r in rs):
            cue = sum(r["outcome"].get("cue_success", False) for r in rs)
            entry["shortcut_rate"], entry["shortcut_ci95"] = cue / n, list(wilson_interval(cue, n))
        cells[cell.name] = entry
    id_success = {s: r["success"] for s, r in by_cell.get(ID, {}).items()}
    gaps = {}
    for cell in suite.cells:
        if cell.name == ID:
            continue
        ood = {s: r["success"] for s, r in by_cell.get(cell.name, {}).items()}
        gaps[cell.name] = paired_comparison(id_success, ood)  # ID minus OOD, paired by seed
    return {"cells": cells, "gaps": gaps, "episodes_per_cell": episodes, "seed_start": seed_start}
