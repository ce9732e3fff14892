"""Statistics of paired binary outcomes: every cell and every policy runs the same seeds, so two
success vectors are compared episode by episode (McNemar's exact test, a paired bootstrap)."""

from __future__ import annotations

from math import comb

import numpy as np

__all__ = ["wilson_interval", "mcnemar_exact", "paired_bootstrap", "paired_comparison"]


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default); (0, 1) with no trials."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, float(centre - half)), min(1.0, float(centre + half)))


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs (a succeeded and b failed, and the
    reverse): under the null each discordant pair goes either way with probability 1/2."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    k = min(a_only, b_only)
    tail = sum(comb(n, i) for i in range(k + 1)) / 2**n
    return float(min(1.0, 2 * tail))


def paired_bootstrap(a: np.ndarray, b: np.ndarray, samples: int = 4000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of mean(a) - mean(b), resampling episodes (pairs) with replacement."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) != len(b) or not len(a):
        raise ValueError(f"paired samples need equal, non-zero lengths, got {len(a)} and {len(b)}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(len(a), size=(samples, len(a)))
    diffs = (a[idx] - b[idx]).mean(1)
    return float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def paired_ratio(a: dict, b: dict, samples: int = 4000, seed: int = 0) -> dict:
    """mean(a) / mean(b) over the keys both have (e.g. success out of distribution over success in it,
    paired by episode seed), with a 95% percentile interval resampling the pairs; resamples whose
    denominator is zero are left out. None where ``b`` never succeeds."""
    keys = sorted(set(a) & set(b))
    x = np.array([a[k] for k in keys], float)
    y = np.array([b[k] for k in keys], float)
    if not keys or y.sum() == 0:
        return {"n": len(keys), "ratio": None, "ci95": None}
    idx = np.random.default_rng(seed).integers(len(keys), size=(samples, len(keys)))
    num, den = x[idx].sum(1), y[idx].sum(1)
    draws = num[den > 0] / den[den > 0]
    return {"n": len(keys), "ratio": float(x.sum() / y.sum()),
            "ci95": [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))]}


def paired_comparison(a: dict[int, bool], b: dict[int, bool]) -> dict:
    """``a`` and ``b``: seed -> success. Compared on the seeds both have."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return {"n": 0}
    x = np.array([a[s] for s in seeds], float)
    y = np.array([b[s] for s in seeds], float)
    a_only, b_only = int(((x == 1) & (y == 0)).sum()), int(((x == 0) & (y == 1)).sum())
    lo, hi = paired_bootstrap(x, y)
    return {"n": len(seeds), "difference": float(x.mean() - y.mean()), "ci95": [lo, hi], "a_only": a_only,
            "b_only": b_only, "mcnemar_p": mcnemar_exact(a_only, b_only)}
