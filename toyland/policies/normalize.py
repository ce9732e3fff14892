"""Normalization of state and action with dataset statistics, kept as buffers so that a checkpoint
carries them. Missing statistics are an error, never a silent identity."""

from __future__ import annotations

import torch
from torch import nn

from toyland.policies.features import ACTION, STATE, PolicyFeatures

EPS = 1e-6
MODES = ("min_max", "mean_std")


class Normalizer(nn.Module):
    """``min_max`` maps [min, max] to [-1, 1] (a dimension with min == max maps to 0); ``mean_std``
    standardizes. Keys: state and action."""

    def __init__(self, features: PolicyFeatures, stats: dict | None, modes: dict[str, str]):
        super().__init__()
        self.modes = dict(modes)
        dims = {STATE: features.state_dim, ACTION: features.action_dim}
        for key, mode in self.modes.items():
            if mode not in MODES:
                raise ValueError(f"normalization mode {mode!r} for '{key}'; valid: {', '.join(MODES)}")
            a, b = torch.zeros(dims[key]), torch.ones(dims[key])
            if stats is not None:
                if key not in stats:
                    raise ValueError(f"no normalization statistics for '{key}' (have {sorted(stats)}); "
                                     "the dataset's meta/stats.json must hold them")
                st = stats[key]
                if mode == "min_max":
                    lo, hi = torch.as_tensor(st["min"]).float().reshape(-1), torch.as_tensor(st["max"]).float().reshape(-1)
                    a, b = (hi + lo) / 2, torch.clamp((hi - lo) / 2, min=EPS)
                else:
                    a = torch.as_tensor(st["mean"]).float().reshape(-1)
                    b = torch.clamp(torch.as_tensor(st["std"]).float().reshape(-1), min=EPS)
                if a.numel() != dims[key]:
                    raise ValueError(f"statistics of '{key}' have {a.numel()} dims, the feature has {dims[key]}")
            # stored as (shift, scale): normalized = (x - shift) / scale
            self.register_buffer(self._name(key, "shift"), a)
            self.register_buffer(self._name(key, "scale"), b)

    @staticmethod
    def _name(key: str, what: str) -> str:
        return f"{key.replace('.', '_')}_{what}"

    def _params(self, key):
        return getattr(self, self._name(key, "shift")), getattr(self, self._name(key, "scale"))

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        shift, scale = self._params(key)
        out = (x - shift) / scale
        return out.masked_fill(scale <= EPS, 0.0) if self.modes[key] == "min_max" else out

    def unnormalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        shift, scale = self._params(key)
        return x * scale + shift
