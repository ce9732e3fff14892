"""The training loss along the straight line between two checkpoints of one policy: the diagnostic
behind a merge's success or failure (linear mode connectivity).

At each alpha the policy is the merge ``toyland merge`` would write (the same groups, alphas and
statistics), scored by its own training loss on fixed batches of each dataset with fixed noise, so
the curves of one call differ only in the weights. A loss that rises above both end points between
them is a barrier (the parents lie in different basins); a loss that falls monotonically from one
parent's level to the other's says the merge trades one task for the other smoothly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from toyland.policies.merge import Parent, check_options, load_parents, merge_tensors

ALPHAS = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)


def loss_along_path(base: str | Path, finetuned: str | Path, datasets: Mapping[str, str | Path],
                    alphas: Sequence[float] = ALPHAS, group_alphas: Mapping[str, float] | None = None,
                    weights: str = "ema", statistics: str = "finetuned", batches: int = 8, batch_size: int = 64,
                    seed: int = 0) -> dict[str, dict[float, float]]:
    """Dataset name -> alpha -> mean training loss of the merge at alpha over ``batches`` batches.

    ``group_alphas`` fixes some groups (e.g. ``{"head": 1.0}``) while the others follow the sweep.
    The batches and the loss's noise are drawn from ``seed``; torch's global generator is left as it was.
    """
    from toyland.data.mixture import build_sampler

    if not datasets:
        raise ValueError("no dataset given: name at least one as NAME=PATH")
    if batches < 1 or batch_size < 1:
        raise ValueError(f"batches={batches} and batch_size={batch_size} must both be at least 1")
    check_options(weights, statistics)
    pb, pf = Parent.resolve("base", base, weights), Parent.resolve("finetuned", finetuned, weights)
    with torch.random.fork_rng(devices=[]):  # building the policy draws its initial weights
        policy, tb, tf = load_parents(pb, pf)
    states = {float(a): merge_tensors(policy, tb, tf, float(a), dict(group_alphas or {}), statistics)[0] for a in alphas}
    deltas = policy.delta_timestamps()
    out: dict[str, dict[float, float]] = {}
    for name, path in datasets.items():
        sampler = build_sampler({"sources": [{"name": name, "path": str(path)}]}, deltas, batch_size, seed=seed)
        data = [sampler.sample(i) for i in range(batches)]
        out[name] = {}
        for alpha, state in states.items():
            policy.load_state_dict(state)
            policy.eval()
            total = 0.0
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                for i, batch in enumerate(data):
                    torch.manual_seed(seed * 1_000_003 + i)  # the same noise and timesteps at every alpha
                    loss, _ = policy(batch)
                    total += float(loss)
            out[name][alpha] = total / len(data)
    return out


def barrier(curve: Mapping[float, float]) -> float:
    """How far the loss rises above the straight line between its end points (0 when it never does)."""
    a = sorted(curve)
    lo, hi = curve[a[0]], curve[a[-1]]
    return max(0.0, max(curve[x] - (lo + (hi - lo) * (x - a[0]) / (a[-1] - a[0])) for x in a))
