"""A study's report, rebuilt from the episode records of its evaluations: ``report.md`` and
``report.json`` in the study folder, plots under ``plots/``.

- arms by cells: successes pooled over the arm's training seeds with a Wilson interval, and each
  seed's own count (the spread between seeds is the part of the error the pooled interval omits);
- paired differences between each arm and the first (the baseline), cell by cell, on the episodes
  both ran: the same training seed and the same episode seed (every arm sees the same scenes),
  with McNemar's exact test and a paired bootstrap interval, and each training seed's own
  difference beside them (the pooled test takes the episodes of one model as independent);
- the mutual information between instruction and camera viewpoint in each arm's training data
  (``toyland data stats`` over its datasets, pooled), where the data records viewpoints;
- learning curves (success against optimization time) and the CPU cost of every part;
- the command, the commit and the date that produced it.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from pathlib import Path

from toyland.eval.records import RUN, read_records
from toyland.eval.stats import paired_comparison, paired_ratio, wilson_interval
from toyland.eval.suite import ID as ID_CELL


def commit() -> str:
    """The toyland checkout's commit (``+dirty`` with uncommitted changes); in a copy exported by
    `git archive`, the commit it was exported from (``+archive``); otherwise ``unknown``."""
    from toyland._archived_commit import COMMIT

    root = Path(__file__).resolve().parent.parent.parent
    try:
        top, head = subprocess.run(["git", "-C", str(root), "rev-parse", "--show-toplevel", "--short", "HEAD"],
                                   capture_output=True, text=True, check=True).stdout.splitlines()
        if Path(top).resolve() != root:  # an exported copy inside some other repository
            raise OSError(top)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown" if COMMIT.startswith("$Format") else COMMIT + "+archive"


def gather(study) -> dict:
    """arm -> suite -> cell -> {(train seed, episode seed): record}, over what has finished."""
    table: dict = {}
    for arm in study.cfg["arms"]:
        for seed in study.cfg["arms"][arm]["seeds"]:
            for suite in study.cfg["suites"]:
                folder = study.run_dir(arm, seed) / "eval" / suite
                if not (folder / RUN).is_file():
                    continue
                meta = json.loads((folder / RUN).read_text())
                wanted = set(range(meta["seed_start"], meta["seed_start"] + meta["episodes"]))
                for r in read_records(folder):
                    if r["seed"] in wanted:
                        table.setdefault(arm, {}).setdefault(suite, {}).setdefault(r["cell"], {})[(seed, r["seed"])] = r
    return table


def summarize_study(study) -> dict:
    table = gather(study)
    arms = [a for a in study.cfg["arms"] if a in table]
    rows = []
    for arm in arms:
        for suite, cells in table[arm].items():
            for cell, records in cells.items():
                k, n = sum(r["success"] for r in records.values()), len(records)
                per_seed = {}
                for (seed, _), r in records.items():
                    s = per_seed.setdefault(seed, [0, 0])
                    s[0] += r["success"]
                    s[1] += 1
                row = {"arm": arm, "suite": suite, "cell": cell, "successes": k, "episodes": n,
                       "success_rate": k / n, "ci95": list(wilson_interval(k, n)), "per_seed": per_seed,
                       "training_seeds": len(per_seed)}
                wrong = sum(bool(r["outcome"].get("wrong_object")) for r in records.values())
                if any("wrong_object" in r["outcome"] for r in records.values()):
                    row.update(wrong_object=wrong, wrong_object_ci95=list(wilson_interval(wrong, n)))
                if any(r.get("cue_index") is not None for r in records.values()):
                    cue = sum(bool(r["outcome"].get("cue_success")) for r in records.values())
                    row.update(shortcut=cue, shortcut_ci95=list(wilson_interval(cue, n)))
                if cell != ID_CELL and ID_CELL in cells:  # how much of in-distribution success transfers
                    row["of_id"] = paired_ratio({key: r["success"] for key, r in records.items()},
                                                {key: r["success"] for key, r in cells[ID_CELL].items()})
                rows.append(row)
    comparisons = []
    if arms:
        base = arms[0]
        for arm in arms[1:]:
            for suite, cells in table[arm].items():
                for cell, records in cells.items():
                    ref = table[base].get(suite, {}).get(cell)
                    if not ref:
                        continue
                    a = {key: r["success"] for key, r in records.items()}
                    b = {key: r["success"] for key, r in ref.items()}
                    entry = {"arm": arm, "baseline": base, "suite": suite, "cell": cell,
                             **paired_comparison(a, b), "per_seed": per_seed_difference(a, b)}
                    if any(r.get("cue_index") is not None for r in records.values()):
                        # a remedy is judged by the shortcut rate it removes, paired the same way
                        entry["shortcut"] = paired_comparison(
                            {key: bool(r["outcome"].get("cue_success")) for key, r in records.items()},
                            {key: bool(r["outcome"].get("cue_success")) for key, r in ref.items()})
                    comparisons.append(entry)
    return {"rows": rows, "comparisons": comparisons, "contrasts": contrasts(study, table),
            "curves": curves(study, arms), "cost": cost(study), "training_time": training_time(study),
            "data": data_stats(study), "series": series(study, table)}


def contrasts(study, table: dict) -> list[dict]:
    """Each suite's ``contrasts`` (cell -> reference cell, in the suite or ``OTHER_SUITE/CELL``), paired
    within every arm by training seed and episode seed: what one condition costs against its twin, on
    the same scenes."""
    from toyland.study.driver import split_reference

    out = []
    for suite, spec in study.cfg["suites"].items():
        for cell, reference in (spec.get("contrasts") or {}).items():
            ref_suite, ref_cell = split_reference(suite, reference)
            for arm, suites in table.items():
                cells, ref_cells = suites.get(suite, {}), suites.get(ref_suite, {})
                if cell not in cells or ref_cell not in ref_cells:
                    continue
                a = {key: r["success"] for key, r in cells[cell].items()}
                b = {key: r["success"] for key, r in ref_cells[ref_cell].items()}
                out.append({"arm": arm, "suite": suite, "cell": cell, "reference": reference,
                            **paired_comparison(a, b), "per_seed": per_seed_difference(a, b)})
    return out


def per_seed_difference(a: dict, b: dict) -> dict:
    """{training seed: mean of a - b over its paired episodes}, for outcomes keyed (training seed, episode
    seed). Pairs within one training seed share that seed's model: the pooled test treats them as
    independent, so each seed's own difference is reported beside it."""
    out = {}
    for seed in sorted({s for s, _ in a} & {s for s, _ in b}):
        both = [k for k in a if k[0] == seed and k in b]
        out[seed] = sum(a[k] - b[k] for k in both) / len(both)
    return out


METRICS = {  # what a series plots: a record -> 0 or 1
    "success": lambda r: bool(r["success"]),
    "shortcut": lambda r: bool(r["outcome"].get("cue_success")),
    "wrong_object": lambda r: bool(r["outcome"].get("wrong_object")),
}


def series(study, table: dict) -> dict:
    """name -> the study's ``series`` entry with its points: a metric pooled over some cells and every
    training seed of each arm, against the value the arm stands for (e.g. a shortcut rate against the
    width of the islands), with Wilson intervals."""
    out = {}
    for name, spec in (study.cfg.get("series") or {}).items():
        points = []
        for arm, x in spec["arms"].items():
            cells = table.get(arm, {}).get(spec["suite"], {})
            # (training seed, episode seed) repeats across cells: a list, not a dict
            records = [(key, r) for cell in spec["cells"] for key, r in cells.get(cell, {}).items()]
            if records:
                k, n = sum(METRICS[spec["metric"]](r) for _, r in records), len(records)
                points.append({"arm": arm, "x": x, "k": k, "n": n, "rate": k / n, "ci95": list(wilson_interval(k, n)),
                               "training_seeds": len({seed for (seed, _), _ in records})})
        out[name] = {**spec, "points": points}
    return out


def data_stats(study) -> dict:
    """arm -> the MI between instruction and camera viewpoint in its training data (its datasets'
    episodes pooled, mixture weights aside), for arms whose datasets all exist and record viewpoints."""
    from toyland.data.stats import dataset_stats, instruction_vs_factor

    out = {}
    for arm in study.cfg["arms"]:
        paths = [study.data_dir(d) for d in study.arm_data(arm)]
        if not all((p / "meta" / "toyland_episodes.json").is_file() for p in paths):
            continue
        report = dataset_stats(paths)
        mi = instruction_vs_factor(report)
        if mi is not None:
            out[arm] = {"datasets": list(study.arm_data(arm)),
                        "episodes": sum(d["episodes"] for d in report["datasets"].values()), **mi}
    return out


def curves(study, arms: list[str]) -> dict:
    """arm -> seed -> [(train minutes, success rate, step)] from the trainer's periodic evaluations."""
    out = {}
    for arm in arms:
        for seed in study.cfg["arms"][arm]["seeds"]:
            log = study.run_dir(arm, seed) / "train_log.jsonl"
            if log.is_file():
                points = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
                out.setdefault(arm, {})[seed] = [(p["train_s"] / 60, p["success_rate"], p["step"]) for p in points]
    return out


def cost(study) -> dict:
    path = study.out / "timing.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def training_time(study) -> list[dict]:
    """Each trained arm's optimization time from its newest checkpoint: every run that resumed it counted,
    a killed one up to its last checkpoint (the driver's own clock sees only the run that finished)."""
    from toyland.policies.checkpoint import read_record
    from toyland.train.state import latest_checkpoint, training_seconds

    out = []
    for arm, spec in study.cfg["arms"].items():
        for seed in spec["seeds"]:
            run = study.run_dir(arm, seed)
            ckpt = latest_checkpoint(run) if (run / "checkpoints").is_dir() else None
            if ckpt is None:
                continue
            state = read_record(ckpt).get("train_state") or {}
            seconds = training_seconds(state) if "step" in state else None
            if seconds is not None:  # None: a checkpoint from before the clock was stored
                out.append({"arm": arm, "seed": seed, "step": int(state["step"]), "train_s": seconds})
    return out


def _paired_row(names: list, d: dict, per_seed: dict | None = None) -> str:
    """A table row of a paired comparison: its names, pairs, difference with interval, [per training
    seed,] the discordant counts and McNemar's p."""
    cells = [*names, d["n"], f"{d['difference']:+.2f} ({d['ci95'][0]:+.2f} to {d['ci95'][1]:+.2f})"]
    if per_seed is not None:
        cells.append(", ".join(f"{v:+.2f}" for v in per_seed.values()))
    cells += [f"{d['a_only']} / {d['b_only']}", f"{d['mcnemar_p']:.3f}"]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _fmt(k: int, n: int, ci: list[float]) -> str:
    return f"{k}/{n} = {k / n:.2f} ({ci[0]:.2f}-{ci[1]:.2f})"


def plot(summary: dict, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    made = []
    rows = summary["rows"]
    if rows:
        cells = list(dict.fromkeys(f"{r['suite']}:{r['cell']}" for r in rows))
        arms = list(dict.fromkeys(r["arm"] for r in rows))
        fig, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(cells) * max(1, len(arms)) ** 0.5 + 2), 3.4))
        width = 0.8 / len(arms)
        for i, arm in enumerate(arms):
            by = {f"{r['suite']}:{r['cell']}": r for r in rows if r["arm"] == arm}
            x = np.arange(len(cells)) + i * width
            y = [by[c]["success_rate"] if c in by else np.nan for c in cells]
            lo = [by[c]["success_rate"] - by[c]["ci95"][0] if c in by else 0 for c in cells]
            hi = [by[c]["ci95"][1] - by[c]["success_rate"] if c in by else 0 for c in cells]
            ax.bar(x, y, width, yerr=[lo, hi], capsize=3, label=arm)
        ax.set_xticks(np.arange(len(cells)) + 0.4 - width / 2, cells, rotation=20, ha="right")
        ax.set_ylim(0, 1)
        ax.set_ylabel("success (pooled over seeds, 95% CI)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, never over them
        fig.tight_layout()
        fig.savefig(folder / "success.png", dpi=110)
        plt.close(fig)
        made.append("plots/success.png")
    if summary["curves"]:
        fig, ax = plt.subplots(figsize=(5, 3.4))
        for arm, seeds in summary["curves"].items():
            for seed, points in seeds.items():
                if points:
                    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=f"{arm} seed {seed}")
        ax.set_xlabel("optimization time (min)")
        ax.set_ylabel("success (periodic evaluation)")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(folder / "curves.png", dpi=110)
        plt.close(fig)
        made.append("plots/curves.png")
    for name, spec in summary.get("series", {}).items():
        points = sorted(spec["points"], key=lambda p: p["x"])
        if not points:
            continue
        x = [p["x"] for p in points]
        fig, ax = plt.subplots(figsize=(6.0, 4.0))
        ax.fill_between(x, [p["ci95"][0] for p in points], [p["ci95"][1] for p in points], alpha=0.25,
                        label="95% Wilson interval")
        ax.plot(x, [p["rate"] for p in points], marker="o", label=f"{spec['metric']} ({', '.join(spec['cells'])})")
        for p in points:
            ax.annotate(p["arm"], (p["x"], p["rate"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xscale(spec.get("x_scale", "linear"))
        ax.set_xlabel(textwrap.fill(spec.get("x_label", "x"), 70), fontsize=9)
        ax.set_ylabel(f"{spec['metric'].replace('_', ' ')} rate, pooled over seeds", fontsize=9)
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2))  # under the axes, never over a point
        # every figure names what made it
        fig.text(0.01, 0.01, f"toyland study {summary.get('study', '')}, {summary.get('commit', '')}, "
                 f"{summary.get('date', '')}", fontsize=6, color="0.4")
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        fig.savefig(folder / f"series_{name}.png", dpi=110)
        plt.close(fig)
        made.append(f"plots/series_{name}.png")
    return made


def write_study_report(study) -> Path:
    summary = summarize_study(study)
    summary.update(study=study.name, command=study.command, commit=commit(), date=time.strftime("%Y-%m-%d"))
    plots = plot(summary, study.out / "plots")
    lines = [f"# Study `{study.name}`", ""]
    if study.cfg.get("description"):
        lines += [study.cfg["description"].strip(), ""]
    lines += [f"Command: `{study.command}`  ", f"Commit: `{summary['commit']}`, {summary['date']}", ""]
    lines += ["## Success, pooled over training seeds", "",
              "| arm | suite | cell | training seeds | success (95% CI) | of in distribution (95% CI) | per seed | "
              "distractor or cue |",
              "|---|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        per_seed = ", ".join(f"{k}/{n}" for k, n in r["per_seed"].values())
        extra = []
        if "wrong_object" in r:
            extra.append(f"wrong object {r['wrong_object']}/{r['episodes']}")
        if "shortcut" in r:
            extra.append(f"shortcut {_fmt(r['shortcut'], r['episodes'], r['shortcut_ci95'])}")
        of_id = r.get("of_id") or {}
        ratio = (f"{of_id['ratio']:.2f} ({of_id['ci95'][0]:.2f}-{of_id['ci95'][1]:.2f})" if of_id.get("ratio") is not None
                 else "")
        lines.append(f"| {r['arm']} | {r['suite']} | {r['cell']} | {r['training_seeds']} | "
                     f"{_fmt(r['successes'], r['episodes'], r['ci95'])} | {ratio} | {per_seed} | {'; '.join(extra)} |")
    if summary["comparisons"]:
        lines += ["", "## Paired differences against the first arm",
                  "", "Pairs: the same training seed and episode seed. Difference = arm minus baseline.", "",
                  "| arm | baseline | suite | cell | pairs | difference (95% CI) | per training seed | arm only / baseline only | McNemar p |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for c in summary["comparisons"]:
            if not c.get("n"):
                continue
            lines.append(_paired_row([c["arm"], c["baseline"], c["suite"], c["cell"]], c, c["per_seed"]))
    if any(c.get("n") for c in summary["contrasts"]):
        lines += ["", "## Paired differences between cells of one arm", "",
                  "The suite's `contrasts`: each cell against its reference, the same training seed and episode seed. "
                  "Difference = cell minus reference.", "",
                  "| arm | suite | cell | reference | pairs | difference (95% CI) | per training seed | cell only / reference only | McNemar p |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for c in summary["contrasts"]:
            if c.get("n"):
                lines.append(_paired_row([c["arm"], c["suite"], c["cell"], c["reference"]], c, c["per_seed"]))
    shortcut = [c for c in summary["comparisons"] if c.get("shortcut", {}).get("n")]
    if shortcut:
        lines += ["", "## Paired differences in the shortcut rate against the first arm", "",
                  "The cue's object lifted instead of the instructed one; negative: the arm takes the shortcut less.", "",
                  "| arm | baseline | suite | cell | pairs | difference (95% CI) | arm only / baseline only | McNemar p |",
                  "|---|---|---|---|---|---|---|---|"]
        for c in shortcut:
            lines.append(_paired_row([c["arm"], c["baseline"], c["suite"], c["cell"]], c["shortcut"]))
    for name, spec in summary.get("series", {}).items():
        if not spec["points"]:
            continue
        lines += ["", f"## Series `{name}`: {spec['metric'].replace('_', ' ')} rate against {spec.get('x_label', 'x')}", "",
                  f"Pooled over cells {', '.join(spec['cells'])} of suite `{spec['suite']}` and every training seed.", "",
                  f"| arm | {spec.get('x_label', 'x')} | training seeds | rate (95% CI) |", "|---|---|---|---|"]
        lines += [f"| {p['arm']} | {p['x']} | {p['training_seeds']} | {_fmt(p['k'], p['n'], p['ci95'])} |"
                  for p in sorted(spec["points"], key=lambda p: p["x"])]
    if summary["data"]:
        lines += ["", "## Training data: instruction vs camera viewpoint", "",
                  "Mutual information between the instructed task and the camera viewpoint (its binned axes together) "
                  "over each arm's training episodes (`toyland data stats`, pooled); high: the viewpoint predicts the task.",
                  "", "| arm | datasets | episodes | MI bits | shuffled null | normalized | p |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {arm} | {', '.join(d['datasets'])} | {d['episodes']} | {d['mi_bits']:.3f} | {d['null_bits']:.3f} | "
                  f"{d['normalized_mi']:.2f} | {d['p_value']:.3f} |" for arm, d in summary["data"].items()]
    if summary["cost"]:
        lines += ["", "## CPU cost (wall time of each part on this machine)", "", "| part | minutes |", "|---|---|"]
        lines += [f"| {part} | {seconds / 60:.1f} |" for part, seconds in summary["cost"].items()]
    if summary["training_time"]:
        lines += ["", "## Training time (optimization only, every run that resumed it)", "",
                  "From each training run's newest checkpoint; the CPU-cost table times only the run of the "
                  "driver that finished a part.", "",
                  "| arm | training seed | steps | minutes |", "|---|---|---|---|"]
        lines += [f"| {t['arm']} | {t['seed']} | {t['step']} | {t['train_s'] / 60:.1f} |" for t in summary["training_time"]]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots]
    (study.out / "report.md").write_text("\n".join(lines) + "\n")
    (study.out / "report.json").write_text(json.dumps(summary, indent=2, default=str))
    return study.out / "report.md"
