"""Auxiliary training targets: privileged labels recorded beside the demos (the grasp the expert is
executing, ``annotation.grasp``) that a policy learns to predict from its observation features. The
actions tell the image encoder where the toy is only through the motion they imply; the label says
it at every frame. Training only: acting never reads a label, and a robot's data needs none."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from toyland.data.features import GRASP_ANNOTATION, GRASP_NAMES
from toyland.policies.features import FeatureMismatch


class GraspAuxiliary(nn.Module):
    """Observation features [B, F] -> the expert's planned grasp (position, cos and sin of twice the jaw
    yaw), standardized with the dataset's statistics; ``loss`` is the mean squared error."""

    key = GRASP_ANNOTATION

    def __init__(self, in_dim: int, stats: dict | None, hidden: int = 128):
        super().__init__()
        dim = len(GRASP_NAMES)
        self.head = nn.Sequential(nn.Linear(in_dim, hidden), nn.Mish(), nn.Linear(hidden, dim))
        shift, scale = torch.zeros(dim), torch.ones(dim)
        if stats is not None:
            if self.key not in stats:
                raise FeatureMismatch(f"grasp_aux needs '{self.key}' (the expert's planned grasp per frame), which the "
                                      "data lacks; collect the demos again with `toyland collect` (it records it), or set "
                                      "grasp_aux=0")
            shift = torch.as_tensor(stats[self.key]["mean"]).float().reshape(-1)
            scale = torch.as_tensor(stats[self.key]["std"]).float().reshape(-1).clamp(min=1e-3)
        self.register_buffer("shift", shift)
        self.register_buffer("scale", scale)

    def loss(self, features: torch.Tensor, batch: dict) -> torch.Tensor:
        target = (batch[self.key][:, -1].float() - self.shift) / self.scale  # the current frame's label
        return F.mse_loss(self.head(features), target)
