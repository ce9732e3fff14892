"""Quantile binning of actions into discrete tokens (E0 uses 2,048 bins per dimension).

Bin edges are quantiles of each action dimension over the training data, so every bin holds about
the same number of training values and the resolution goes where the data is. A value maps to
the bin it falls in and back to that bin's midpoint, so the round trip is off by at most half the
bin's width. Values beyond the fitted range are clipped into the edge bins and counted.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

TIE_WIDTH = 1e-6  # repeated quantiles (a gripper that is only ever -1 or 1) become bins this narrow


def spread_ties(edges: np.ndarray, width: float = TIE_WIDTH) -> np.ndarray:
    """Strictly increasing edges from sorted quantiles: a run of equal quantiles at v becomes a run of
    ``width``-wide bins centred on v, so v itself comes back within ``width`` / 2."""
    out, n, i = edges.astype(np.float64).copy(), len(edges), 0
    while i < n:
        j = i
        while j + 1 < n and edges[j + 1] == edges[i]:
            j += 1
        if j > i:
            out[i : j + 1] = edges[i] + width * (np.arange(j - i + 1) - (j - i) / 2)
        i = j + 1
    for k in range(1, n):  # runs closer than their spread: keep the order
        out[k] = max(out[k], out[k - 1] + width * 1e-3)
    return out


class QuantileBins(nn.Module):
    def __init__(self, action_dim: int, bins: int):
        super().__init__()
        if bins < 2:
            raise ValueError(f"bins={bins}; at least 2 bins per action dimension")
        self.bins = bins
        self.register_buffer("edges", torch.linspace(-1, 1, bins + 1).repeat(action_dim, 1))  # [A, K+1]
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        # the training values' range: spread ties put the outer edges a hair beyond it, and a decoded
        # action must not leave it (the env refuses |a| > 1 even by 1e-5)
        self.register_buffer("low", -torch.ones(action_dim))
        self.register_buffer("high", torch.ones(action_dim))
        self.clipped_total = 0  # values clipped into an edge bin since construction

    def fit(self, actions: np.ndarray) -> None:
        """``actions``: [N, A] training values."""
        actions = np.asarray(actions, dtype=np.float64).reshape(-1, self.edges.shape[0])
        if len(actions) < 2 or not np.isfinite(actions).all():
            raise ValueError(f"fitting action bins needs at least 2 finite values per dimension, got {len(actions)}")
        quantiles = np.quantile(actions, np.linspace(0, 1, self.bins + 1), axis=0).T  # [A, K+1]
        edges = np.stack([spread_ties(row) for row in quantiles])
        self.edges.copy_(torch.from_numpy(edges).float())
        self.low.copy_(torch.from_numpy(quantiles[:, 0]).float())
        self.high.copy_(torch.from_numpy(quantiles[:, -1]).float())
        self.fitted.fill_(True)

    def check_fitted(self) -> None:
        if not bool(self.fitted):
            raise RuntimeError("the action bins are not fitted; the trainer fits them on the training actions "
                               "(policy.fit(sampler)) before the first step")

    @property
    def centres(self) -> torch.Tensor:
        """[A, K] bin midpoints, kept inside the training range."""
        mid = (self.edges[:, 1:] + self.edges[:, :-1]) / 2
        return torch.minimum(torch.maximum(mid, self.low[:, None]), self.high[:, None])

    def quantize(self, actions: torch.Tensor) -> tuple[torch.Tensor, int]:
        """[..., A] values -> ([..., A] bin indices, number of values clipped into an edge bin)."""
        self.check_fitted()
        lo, hi = self.edges[:, 0], self.edges[:, -1]
        outside = int(((actions < lo) | (actions > hi)).sum())
        self.clipped_total += outside
        flat = actions.reshape(-1, actions.shape[-1]).T.contiguous()  # [A, N]
        inner = self.edges[:, 1:-1].contiguous()
        index = torch.searchsorted(inner, flat, right=True).clamp(0, self.bins - 1)
        return index.T.reshape(actions.shape), outside

    def dequantize(self, index: torch.Tensor) -> torch.Tensor:
        """[..., A] bin indices -> [..., A] bin midpoints (within the training range)."""
        centres = self.centres  # [A, K]
        a = torch.arange(centres.shape[0], device=index.device).expand_as(index)
        return centres[a, index]

    def width(self, index: torch.Tensor) -> torch.Tensor:
        a = torch.arange(self.edges.shape[0], device=index.device).expand_as(index)
        return self.edges[a, index + 1] - self.edges[a, index]
