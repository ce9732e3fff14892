"""Auxiliary training targets for co-training (arXiv 2602.01067's modalities), predicted from a
policy's observation features beside its action loss. Training only: acting never reads them.

- ``PhaseHead``: dense language annotation, the phase of the skill the expert is in at each frame
  (``annotation.phase``: approach, descend, close, lift, ...), as a classification target.
- ``ActionTokenHead``: discrete action tokens, the action chunk binned uniformly per dimension over
  its normalized range (RT-2's tokenization), each token a classification target.

A sample whose source lacks a label (a mixture of annotated and unannotated data) and a padded
action dimension (a shorter action vector) are left out of the loss; chunk steps past the episode's
end are left out as the action loss leaves them (``mask_padding``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from toyland.policies.features import ACTION, FeatureMismatch
from toyland.sim.annotations import PHASE_ANNOTATION, PHASES


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.Mish(), nn.Linear(hidden, out_dim))


def _masked_mean(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    keep = keep.to(values.dtype)
    return (values * keep).sum() / keep.sum().clamp(min=1.0)


class PhaseHead(nn.Module):
    """Observation features [B, F] -> logits over ``annotations.PHASES`` for the current frame."""

    key = PHASE_ANNOTATION

    def __init__(self, in_dim: int, stats: dict | None, hidden: int = 128):
        super().__init__()
        if stats is not None and self.key not in stats:
            raise FeatureMismatch(f"phase_aux needs '{self.key}' (the expert's phase per frame), which the data lacks; "
                                  "collect the demos again with `toyland collect` (it records it), or set phase_aux=0")
        self.head = _mlp(in_dim, hidden, len(PHASES))

    def loss(self, features: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy and accuracy over the samples that carry a label."""
        labels = batch[self.key][:, -1].float()  # the current frame's one-hot
        keep = labels.sum(-1) > 0
        if f"{self.key}_present" in batch:
            keep = keep & batch[f"{self.key}_present"]
        logits = self.head(features)
        target = labels.argmax(-1)
        ce = F.cross_entropy(logits, target, reduction="none")
        return _masked_mean(ce, keep), _masked_mean((logits.argmax(-1) == target).float(), keep)


class ActionTokenHead(nn.Module):
    """Observation features [B, F] -> logits [B, H, A, bins] of the chunk's tokens; an action in
    [-1, 1] (min-max normalized) falls in bin floor((a + 1) / 2 * bins)."""

    def __init__(self, in_dim: int, horizon: int, action_dim: int, bins: int, hidden: int = 256):
        super().__init__()
        self.shape, self.bins = (horizon, action_dim, bins), bins
        self.head = _mlp(in_dim, hidden, horizon * action_dim * bins)

    def tokens(self, actions: torch.Tensor) -> torch.Tensor:
        return ((actions + 1.0) / 2.0 * self.bins).floor().clamp(0, self.bins - 1).long()

    def loss(self, features: torch.Tensor, actions: torch.Tensor, batch: dict,
             mask_padding: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy per token and token accuracy, over real chunk steps and action dimensions."""
        b = features.shape[0]
        logits = self.head(features).view(b, *self.shape)
        target = self.tokens(actions)
        ce = F.cross_entropy(logits.flatten(0, 2), target.flatten(), reduction="none").view(target.shape)
        keep = torch.ones_like(target, dtype=torch.bool)
        if mask_padding and f"{ACTION}_is_pad" in batch:
            keep = keep & ~batch[f"{ACTION}_is_pad"][:, :, None]
        if f"{ACTION}_dim_mask" in batch:
            keep = keep & batch[f"{ACTION}_dim_mask"][:, None, :]
        return _masked_mean(ce, keep), _masked_mean((logits.argmax(-1) == target).float(), keep)
