"""Grounding the instruction in the object tokens before the policy reads them (``grounding_marker``).

With every object's mask (``det_pool_masks=objects``) the object tokens are a set and only the
instruction says which one to lift. Left to the action loss, or to a score head after the policy
layers, 100 demonstrations taught the VLA to remember its scenes rather than to read the words
(docs/results/toys_transfer.md). The matcher makes the choice explicit and small: the instruction's
tokens are pooled into one query, each object's slots into one key, and their scaled dot product
scores each object against the instruction, beside a learned "none of these" score (a camera may not
see the target). Every object's tokens then gain a learned marker scaled by its softmax weight, so
the policy layers read "this is the one named" as they read the target's own mask in the
language_lift recipe.

Its training signal (``grounding_loss``) has two parts:
- among the objects of a frame, the one the expert's ``annotation.target_id`` names (or "none" when
  this camera does not see it);
- across the batch, the named object against every other sample's instruction (CLIP's in-batch
  contrast; samples with the same instruction are left out). A score that ignores the instruction
  and remembers which toys were targets cancels in this part, so only matching the words (or the
  picture) to the object lowers it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class InstructionMatcher(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.scale = dim ** -0.5
        self.pool_query = nn.Parameter(torch.randn(dim) * dim ** -0.5)
        self.pool_keys = nn.Linear(dim, dim)
        self.query = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim))
        self.key = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.none = nn.Parameter(torch.zeros(()))  # the score of "the named object is not in this view"
        self.marker = nn.Parameter(torch.randn(dim) * 0.5)

    def instruction_query(self, tokens: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """[B, L, D] instruction tokens and their padding [B, L] -> one query [B, D]."""
        scores = (self.pool_keys(tokens) @ self.pool_query) * self.scale
        weight = scores.masked_fill(pad, float("-inf")).softmax(-1)
        return self.query((weight[..., None] * tokens).sum(1))

    def forward(self, objects: torch.Tensor, absent: torch.Tensor, query: torch.Tensor):
        """``objects`` [B, T, n, S, D] (each object's slots), ``absent`` [B, T, n], ``query`` [B, D] ->
        the marked objects (same shape), the scores [B, T, n + 1] (the last: none) and the object keys
        [B, T, n, D]."""
        keys = self.key(objects.mean(3))
        scores = torch.einsum("btnd,bd->btn", keys, query) * self.scale
        scores = scores.masked_fill(absent, float("-inf"))
        scores = torch.cat([scores, self.none.expand(scores.shape[:2])[..., None]], -1)
        weight = scores.softmax(-1)[..., :-1]
        return objects + weight[..., None, None] * self.marker, scores, keys


def grounding_loss(scores: list[torch.Tensor], keys: list[torch.Tensor], query: torch.Tensor, target: torch.Tensor,
                   same: torch.Tensor, scale: float) -> tuple[torch.Tensor, float]:
    """The matcher's loss over each camera's current frame, and how often it names the target where the
    camera sees it. ``scores`` [B, n + 1] and ``keys`` [B, n, D] per camera, ``query`` [B, D],
    ``target`` [B] the target's id (1..n; 0: in no mask), ``same`` [B, B] true where two samples share an
    instruction."""
    losses, hits, counts = [], [], []
    b = query.shape[0]
    negatives = same & ~torch.eye(b, dtype=torch.bool, device=same.device)
    for s, k in zip(scores, keys):
        n = s.shape[1] - 1
        index = (target - 1).clamp(0, n - 1)
        visible = (target >= 1) & (target <= n) & torch.isfinite(s.gather(1, index[:, None])[:, 0])
        label = torch.where(visible, index, torch.full_like(index, n))
        seen = torch.isfinite(s[:, :-1]).any(1)  # at least one object in view: a choice to make
        safe = torch.where(torch.isfinite(s), s, torch.full_like(s, -1e4))
        losses.append((F.cross_entropy(safe, label, reduction="none") * seen).sum() / seen.sum().clamp(min=1))
        named = k[torch.arange(b, device=k.device), index]  # [B, D], the target's key
        across = (named @ query.T * scale).masked_fill(negatives, float("-inf"))
        if visible.any():
            losses.append(F.cross_entropy(across[visible], torch.arange(b, device=k.device)[visible]))
        hits.append(((s.argmax(1) == index) & visible).sum())
        counts.append(visible.sum())
    total = torch.stack(counts).sum().clamp(min=1)
    return torch.stack(losses).sum() / len(scores), (torch.stack(hits).sum() / total).item()
