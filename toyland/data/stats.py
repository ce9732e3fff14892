"""``toyland data stats``: how diverse each dataset is along every factor, and how fragmented a
collection of sub-datasets is, through the lens of the shortcut-learning study (arXiv 2508.06426):
a policy can take a shortcut when a nuisance factor predicts the instructed task, or when
sub-datasets that carry different tasks occupy different regions of a factor.

Per dataset and factor axis: how many of the axis's bins are occupied (coverage) and the
normalized entropy of its histogram. Over all datasets: the mutual information between the
instructed task and each axis (bits, and normalized by the smaller entropy), and between the
sub-dataset identity and each axis, and between the instructed task and each factor as a whole (its
binned axes together: ``task_vs_factor_joint``; ``camera_viewpoint`` there is the instruction-viewpoint
MI the shortcut study tracks per arm); per pair of sub-datasets, the Jensen-Shannon divergence of each
axis's distribution (bits, 0 = identical, 1 = disjoint). Continuous axes are binned over the
factor's declared range (train and every OOD band), so numbers are comparable between datasets.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toyland.data.episode_log import read_episode_log
from toyland.data.frames import check_dataset_path


@dataclass
class AxisValues:
    name: str  # factor.axis
    categorical: bool
    values: list  # one per episode; None where the episode did not draw this factor
    size: int  # categories declared, or bins
    edges: np.ndarray | None = None  # continuous: bin edges over the declared range


def task_label(record: dict) -> str:
    """The instructed task: the target's colour when colours name it, else the instruction."""
    colours = record.get("colours") or []
    target = record.get("target_index")
    if target is not None and target < len(colours) and colours[target]:
        return str(colours[target])
    return str(record.get("instruction", ""))


def episode_axes(records: list[dict], bins: int) -> dict[str, AxisValues]:
    """Every declared factor axis seen in ``records`` (undeclared extras such as a phrasing template are skipped)."""
    from toyland.sim.factors import FACTORS

    axes: dict[str, AxisValues] = {}
    for factor_name in sorted({f for r in records for f in (r.get("factors") or {})}):
        factor = FACTORS.get(factor_name) if factor_name in FACTORS else None
        if factor is None:
            continue
        for axis_name, axis in factor.axes.items():
            values = [(r.get("factors") or {}).get(factor_name, {}).get(axis_name) for r in records]
            if all(v is None for v in values):
                continue
            key = f"{factor_name}.{axis_name}"
            if axis.categorical:
                choices = {str(c) for c in [*axis.train, *(c for band in axis.ood for c in band)]}
                axes[key] = AxisValues(key, True, [None if v is None else str(v) for v in values], len(choices))
            else:
                lo, hi = axis.limits()
                axes[key] = AxisValues(key, False, values, bins, np.linspace(lo, hi, bins + 1))
    return axes


def discretize(axis: AxisValues) -> list:
    if axis.categorical:
        return axis.values
    inner = axis.edges[1:-1]
    return [None if v is None else int(np.searchsorted(inner, float(v), side="right")) for v in axis.values]


def entropy(labels: list) -> float:
    _, counts = np.unique(np.asarray([str(x) for x in labels]), return_counts=True)
    p = counts / counts.sum()
    return float(max(0.0, -(p * np.log2(p)).sum()))


def _codes(labels) -> np.ndarray:
    return np.unique(np.asarray([str(x) for x in labels]), return_inverse=True)[1].ravel()


def _mi_codes(x: np.ndarray, y: np.ndarray) -> float:
    joint = np.bincount(x * (y.max() + 1) + y).astype(float)
    pxy = joint[joint > 0] / len(x)
    px = np.bincount(x) / len(x)
    py = np.bincount(y) / len(y)
    hx = -(px[px > 0] * np.log2(px[px > 0])).sum()
    hy = -(py[py > 0] * np.log2(py[py > 0])).sum()
    return float(max(0.0, hx + hy + (pxy * np.log2(pxy)).sum()))


def mutual_information(a: list, b: list, permutations: int = 200, seed: int = 0) -> dict:
    """Plug-in MI in bits over the pairs where both are defined, with a permutation test.

    The plug-in estimate is biased upwards on small samples (about (|A|-1)(|B|-1) / (2 N ln 2)
    bits), so the report also gives the mean MI of ``a`` shuffled against ``b``, the excess over it,
    and the permutation p-value of the observed MI."""
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None]
    if len(pairs) < 2:
        return {"mi_bits": 0.0, "null_bits": 0.0, "excess_bits": 0.0, "p_value": 1.0, "n": len(pairs)}
    x, y = _codes([p[0] for p in pairs]), _codes([p[1] for p in pairs])
    mi = _mi_codes(x, y)
    rng = np.random.default_rng(seed)
    null = np.array([_mi_codes(rng.permutation(x), y) for _ in range(permutations)])
    return {"mi_bits": mi, "null_bits": float(null.mean()), "excess_bits": max(0.0, mi - float(null.mean())),
            "p_value": float((1 + np.sum(null >= mi - 1e-12)) / (1 + permutations)), "n": len(pairs)}


def js_divergence(a: list, b: list) -> float:
    """Jensen-Shannon divergence in bits between the empirical distributions of two label lists."""
    a = [str(x) for x in a if x is not None]
    b = [str(x) for x in b if x is not None]
    if not a or not b:
        return float("nan")
    support = sorted(set(a) | set(b))
    p = np.array([a.count(s) for s in support], float) / len(a)
    q = np.array([b.count(s) for s in support], float) / len(b)
    m = (p + q) / 2

    def kl(x):
        nz = x > 0
        return float((x[nz] * np.log2(x[nz] / m[nz])).sum())

    return 0.5 * kl(p) + 0.5 * kl(q)


def dataset_stats(paths: list[str | Path], bins: int = 8) -> dict:
    roots = [check_dataset_path(p) for p in paths]
    names = _unique_names(roots)
    records, source, report = [], [], {"bins": bins, "datasets": {}, "notes": []}
    for name, root in zip(names, roots):
        info = json.loads((root / "meta" / "info.json").read_text())
        log = read_episode_log(root)
        entry = {"path": str(root), "episodes": info["total_episodes"], "frames": info["total_frames"]}
        if log is None:
            report["notes"].append(f"{name}: no toyland episode log (meta/toyland_episodes.json); "
                                   "factor statistics need a dataset made by `toyland collect`")
        else:
            entry["discarded"] = len(log.discarded)
            records += log.episodes
            source += [name] * len(log.episodes)
        report["datasets"][name] = entry
    if not records:
        return report
    axes = episode_axes(records, bins)
    tasks = [task_label(r) for r in records]
    binned = {k: discretize(a) for k, a in axes.items()}
    for name in names:
        sel = [i for i, s in enumerate(source) if s == name]
        if not sel:
            continue
        entry = report["datasets"][name]
        entry["tasks"] = {t: int(c) for t, c in zip(*np.unique([tasks[i] for i in sel], return_counts=True))}
        entry["diversity"] = {}
        for key, axis in axes.items():
            labels = [binned[key][i] for i in sel if binned[key][i] is not None]
            if not labels:
                continue
            size, h = axis.size, entropy(labels)
            entry["diversity"][key] = {
                "distinct": len(set(labels)),
                "coverage": len(set(labels)) / size,
                "entropy_bits": h,
                "normalized_entropy": h / np.log2(size) if size > 1 else 0.0,
            }
        entry["task_vs_factor"] = task_vs_factor([tasks[i] for i in sel], {k: [v[i] for i in sel] for k, v in binned.items()})
    report["task_vs_factor"] = task_vs_factor(tasks, binned)
    report["task_vs_factor_joint"] = task_vs_factor(tasks, joint_factors(axes, binned))
    if len(set(source)) > 1:
        report["dataset_vs_factor"] = {k: mutual_information(source, binned[k]) for k in axes}
        report["pairwise_js"] = {}
        for x, y in itertools.combinations(sorted(set(source)), 2):
            report["pairwise_js"][f"{x} | {y}"] = {
                k: js_divergence([v for v, s in zip(binned[k], source) if s == x], [v for v, s in zip(binned[k], source) if s == y])
                for k in axes
            }
    return report


def task_vs_factor(tasks: list, binned: dict[str, list]) -> dict:
    """MI between the instructed task and each factor axis, normalized by the smaller entropy."""
    out = {}
    for key, values in binned.items():
        defined = [(t, v) for t, v in zip(tasks, values) if v is not None]
        if not defined:
            continue
        mi = mutual_information(*zip(*defined))
        floor = min(entropy([t for t, _ in defined]), entropy([v for _, v in defined]))
        out[key] = {**mi, "normalized_mi": mi["mi_bits"] / floor if floor > 0 else 0.0}
    return out


def joint_factors(axes: dict[str, AxisValues], binned: dict[str, list]) -> dict[str, list]:
    """Per factor, each episode's tuple of binned axis values (None where an axis is undefined)."""
    by_factor: dict[str, list[str]] = {}
    for key in axes:
        by_factor.setdefault(key.split(".")[0], []).append(key)
    out = {}
    for factor, keys in by_factor.items():
        columns = list(zip(*(binned[k] for k in keys)))
        out[factor] = [None if any(v is None for v in row) else "|".join(map(str, row)) for row in columns]
    return out


def instruction_vs_factor(report: dict, factor: str = "camera_viewpoint") -> dict | None:
    """The pooled MI between the instructed task and ``factor`` (all its axes) of a stats report."""
    return (report.get("task_vs_factor_joint") or {}).get(factor)


def _unique_names(roots: list[Path]) -> list[str]:
    names = [r.name for r in roots]
    if len(set(names)) < len(names):
        names = [str(r) for r in roots]
    return names


def format_report(report: dict, top: int = 5) -> str:
    lines = []

    def ranked(table: dict) -> list[str]:
        rows = sorted(table.items(), key=lambda kv: -kv[1]["excess_bits"])[:top]
        return [f"    {k:30s} MI {d['mi_bits']:.3f} bits (null {d['null_bits']:.3f}, p {d['p_value']:.3f})  "
                f"normalized {d['normalized_mi']:.2f}" for k, d in rows]

    for name, entry in report["datasets"].items():
        extra = f", {entry['discarded']} discarded" if "discarded" in entry else ""
        lines.append(f"{name}: {entry['episodes']} episodes, {entry['frames']} frames{extra}")
        if "tasks" not in entry:
            continue
        lines.append("  tasks: " + ", ".join(f"{t} ({c})" for t, c in entry["tasks"].items()))
        lines.append("  diversity per factor axis (coverage of its declared range, normalized entropy):")
        for key, d in entry["diversity"].items():
            lines.append(f"    {key:30s} coverage {d['coverage']:.2f}  entropy {d['normalized_entropy']:.2f}")
        if entry["task_vs_factor"]:
            lines.append(f"  instructed task vs factor, top {top} by MI above the shuffled null (high: shortcut risk):")
            lines += ranked(entry["task_vs_factor"])
    if len(report["datasets"]) > 1 and report.get("task_vs_factor"):
        lines.append(f"all datasets pooled: instructed task vs factor, top {top}:")
        lines += ranked(report["task_vs_factor"])
    joint = instruction_vs_factor(report)
    if joint is not None:
        lines.append(f"instructed task vs camera viewpoint (all its axes, {'pooled' if len(report['datasets']) > 1 else 'this dataset'}): "
                     f"MI {joint['mi_bits']:.3f} bits (null {joint['null_bits']:.3f}, p {joint['p_value']:.3f})  "
                     f"normalized {joint['normalized_mi']:.2f}")
    if report.get("pairwise_js"):
        lines.append("fragmentation between sub-datasets: Jensen-Shannon divergence per factor (0 same, 1 disjoint)")
        for pair, values in report["pairwise_js"].items():
            finite = {k: v for k, v in values.items() if np.isfinite(v)}
            if not finite:
                lines.append(f"  {pair}: no factor in common")
                continue
            worst = sorted(((v, k) for k, v in finite.items()), reverse=True)[:4]
            lines.append(f"  {pair}: mean {np.mean(list(finite.values())):.2f} over {len(finite)} axes; most apart: "
                         + ", ".join(f"{k} {v:.2f}" for v, k in worst))
    lines += [f"note: {n}" for n in report["notes"]]
    return "\n".join(lines)
