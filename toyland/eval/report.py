"""Reports of evaluation runs, rebuilt from their per-episode records: ``report.md``, success
against perturbation magnitude per factor with Wilson bands, a cell-by-run heatmap, and paired
comparisons between runs (same seeds, McNemar's exact test and a paired bootstrap).

    toyland report RUN [RUN ...] [--out DIR]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from toyland.eval.records import RECORDS, RESULTS, RUN, read_records, summarize
from toyland.eval.suite import ID, build_suite


def load_run(run: Path) -> dict:
    """A run's results recomputed from ``episodes.jsonl`` and ``run.json``."""
    run = Path(run)
    if not (run / RUN).is_file() or not (run / RECORDS).is_file():
        raise FileNotFoundError(f"{run} is not a toyland evaluation run (needs {RUN} and {RECORDS})")
    meta = json.loads((run / RUN).read_text())
    records = read_records(run)
    suite = build_suite(meta["suite"])
    episodes = meta.get("episodes") or max((sum(r["cell"] == c for r in records) for c in suite.names()), default=0)
    results = summarize(records, suite, episodes, meta["seed_start"])
    stored = json.loads((run / RESULTS).read_text()) if (run / RESULTS).is_file() else {}
    results.update(actor=stored.get("actor", meta["actor"]), speed=stored.get("speed"), videos=stored.get("videos", {}),
                   records=records, suite=suite, name=run.name, path=str(run))
    return results


def _success_by_seed(results: dict, cell: str) -> dict[int, bool]:
    return {r["seed"]: r["success"] for r in results["records"] if r["cell"] == cell}


def plot_factors(runs: list[dict], path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    factors = sorted({c.factor for c in runs[0]["suite"].cells if c.factor and "+" not in c.factor and c.factor != "toy_set"})
    if not factors:
        return None
    cols = min(3, len(factors))
    rows = int(np.ceil(len(factors) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, factor in zip(axes.flat, factors):
        for run in runs:
            cells = [run["cells"][ID]] + sorted((c for c in run["cells"].values() if c["factor"] == factor),
                                                key=lambda c: c["magnitude"])
            cells = [c for c in cells if c["episodes"]]
            x = [c["magnitude"] for c in cells]
            y = [c["success_rate"] for c in cells]
            ax.plot(x, y, marker="o", label=run["name"])
            ax.fill_between(x, [c["ci95"][0] for c in cells], [c["ci95"][1] for c in cells], alpha=0.2)
        ax.set_title(factor)
        ax.set_xticks([0, 1, 2, 3], ["ID", "ood_1", "ood_2", "ood_3"])
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("success")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(factors):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_heatmap(runs: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = [c.name for c in runs[0]["suite"].cells]
    grid = np.array([[run["cells"].get(c, {}).get("success_rate") or 0.0 for run in runs] for c in cells])
    fig, ax = plt.subplots(figsize=(2.0 + 1.6 * len(runs), 0.8 + 0.32 * len(cells)))
    image = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_yticks(range(len(cells)), cells, fontsize=8)
    ax.set_xticks(range(len(runs)), [r["name"] for r in runs], rotation=20, ha="right", fontsize=8)
    for i in range(len(cells)):
        for j in range(len(runs)):
            ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if grid[i, j] < 0.5 else "black")
    fig.colorbar(image, ax=ax, label="success")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(run_dirs: list[str | Path], out: str | Path) -> Path:
    from toyland.eval.stats import paired_comparison

    runs = [load_run(Path(r)) for r in run_dirs]
    out = Path(out)
    factors = plot_factors(runs, out / "plots" / "factors.png")
    heatmap = plot_heatmap(runs, out / "plots" / "heatmap.png")
    lines = ["# toyland evaluation report", ""]
    for run in runs:
        speed = run.get("speed") or {}
        rate = f", {speed['episodes_per_hour']:.0f} episodes/hour on {speed['workers']} workers" if speed.get("episodes_per_hour") else ""
        lines += [f"## {run['name']}: {run['actor']}", "",
                  f"{run['episodes_per_cell']} episodes per cell, seeds from {run['seed_start']} (the same in every cell){rate}.", "",
                  "| cell | success | 95% CI | gap vs ID (paired) | McNemar p | shortcut rate | video |",
                  "|---|---|---|---|---|---|---|"]
        for name, cell in run["cells"].items():
            gap = run["gaps"].get(name, {})
            gap_text = f"{gap['difference']:+.2f} [{gap['ci95'][0]:+.2f}, {gap['ci95'][1]:+.2f}]" if gap.get("n") else ""
            p = f"{gap['mcnemar_p']:.3f}" if gap.get("n") else ""
            shortcut = f"{cell['shortcut_rate']:.2f}" if cell.get("shortcut_rate") is not None else ""
            vids = " ".join(f"[{k}]({v})" + (" (replayed alone, ended otherwise)" if cell_videos.get(f"{k}_replay_differs") else "")
                            for cell_videos in [(run.get("videos") or {}).get(name, {})]
                            for k, v in cell_videos.items() if isinstance(v, str))
            rate_text = f"{cell['successes']}/{cell['episodes']} = {cell['success_rate']:.2f}" if cell["episodes"] else "-"
            lines.append(f"| {name} | {rate_text} | {cell['ci95'][0]:.2f}-{cell['ci95'][1]:.2f} | {gap_text} | {p} | {shortcut} | {vids} |")
        lines.append("")
    if len(runs) > 1:
        base = runs[0]
        lines += [f"## Paired comparison against {base['name']} (same seeds)", "",
                  "| run | cell | difference | 95% CI (paired bootstrap) | McNemar p | n |", "|---|---|---|---|---|---|"]
        for run in runs[1:]:
            for cell in base["cells"]:
                cmp = paired_comparison(_success_by_seed(run, cell), _success_by_seed(base, cell))
                if cmp["n"]:
                    lines.append(f"| {run['name']} | {cell} | {cmp['difference']:+.2f} | {cmp['ci95'][0]:+.2f} to "
                                 f"{cmp['ci95'][1]:+.2f} | {cmp['mcnemar_p']:.3f} | {cmp['n']} |")
        lines.append("")
    if factors:
        lines += [f"![success against perturbation magnitude]({factors.relative_to(out)})", ""]
    lines += [f"![success per cell and run]({heatmap.relative_to(out)})", ""]
    path = out / "report.md"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path
