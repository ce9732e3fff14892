"""Interchangeable action heads of the VLA. Each reads the observation tokens (``memory``, computed
once per action chunk) through a transformer decoder's cross-attention, and each decodes a chunk of
``horizon`` actions its own way:

- ``flow``: flow matching as in pi0. A chunk of min-max normalized actions is mixed with Gaussian
  noise, ``x_t = (1 - t) a + t e``, and the decoder regresses the velocity ``e - a``; acting
  integrates from pure noise (t = 1) to t = 0 in ``flow_steps`` Euler steps.
- ``discrete_diffusion``: E0-style continuized discrete diffusion. Actions become quantile-bin
  tokens; their one-hot vectors, smoothed by ``label_smoothing`` and scaled to [-1, 1], are noised
  with Gaussian noise on a cosine schedule, and the decoder predicts each token's bin distribution
  under cross-entropy against the smoothed one-hot target. Acting runs DDIM from noise, feeding the
  predicted distribution back as the clean estimate, and takes the most likely bin at the end.
- ``autoregressive``: the discrete-token baseline: the chunk's bin tokens predicted step by step
  under a causal mask with teacher forcing; acting decodes greedily.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from diffusers import DDIMScheduler
from torch import nn
from torch.nn import functional as F

from toyland.policies.base import randn_rows
from toyland.policies.vla.bins import QuantileBins
from toyland.registry import Registry

HEADS: Registry[type] = Registry("action head")


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of a scalar per sample ([B] -> [B, dim]); ``t`` in [0, 1000]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], -1)


class Decoder(nn.Module):
    """Action tokens [B, L, D] attend to themselves (causally if asked) and to the memory."""

    def __init__(self, dim: int, heads: int, layers: int, mlp_ratio: float, dropout: float, length: int):
        super().__init__()
        layer = nn.TransformerDecoderLayer(dim, heads, int(dim * mlp_ratio), dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(dim))
        self.position = nn.Parameter(torch.randn(1, length, dim) * 0.02)

    def forward(self, tokens, memory, memory_pad, causal: bool = False):
        n = tokens.shape[1]
        mask = nn.Transformer.generate_square_subsequent_mask(n, device=tokens.device) if causal else None
        return self.layers(tokens + self.position[:, :n], memory, tgt_mask=mask, tgt_is_causal=causal,
                           memory_key_padding_mask=memory_pad)


class ActionHead(nn.Module, ABC):
    """``loss(memory, memory_pad, actions, normalized) -> (loss, metrics)`` and ``sample(memory,
    memory_pad, generator) -> [B, H, A]`` in the units it was trained in (see ``uses_bins``)."""

    uses_bins = False  # discrete heads work on raw actions through quantile bins, flow on normalized ones

    def __init__(self, config, action_dim: int):
        super().__init__()
        self.config, self.action_dim, self.horizon = config, action_dim, config.horizon

    @abstractmethod
    def loss(self, memory, memory_pad, actions: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Training loss for an action chunk [B, H, A]."""

    @abstractmethod
    def sample(self, memory, memory_pad, generator: torch.Generator | None = None) -> torch.Tensor:
        """An action chunk [B, H, A]."""


def _time_mlp(dim: int) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))


@HEADS.register("flow")
class FlowHead(ActionHead):
    def __init__(self, config, action_dim):
        super().__init__(config, action_dim)
        d = config.dim
        self.decoder = Decoder(d, config.heads, config.head_layers, config.mlp_ratio, config.dropout, config.horizon)
        self.inp, self.time, self.out = nn.Linear(action_dim, d), _time_mlp(d), nn.Linear(d, action_dim)

    def velocity(self, x, t, memory, memory_pad):
        tokens = self.inp(x) + self.time(timestep_embedding(t * 1000, self.config.dim))[:, None]
        return self.out(self.decoder(tokens, memory, memory_pad))

    def loss(self, memory, memory_pad, actions):
        b = actions.shape[0]
        # pi0 favours the noisier times: t ~ Beta(1.5, 1) on (0.001, 1]
        t = torch.distributions.Beta(1.5, 1.0).sample((b,)).to(actions.device) * 0.999 + 0.001
        noise = torch.randn_like(actions)
        x = (1 - t)[:, None, None] * actions + t[:, None, None] * noise
        loss = F.mse_loss(self.velocity(x, t, memory, memory_pad), noise - actions)
        return loss, {"flow_mse": loss.item()}

    def sample(self, memory, memory_pad, generator=None):
        b, steps = memory.shape[0], self.config.flow_steps
        x = randn_rows((b, self.horizon, self.action_dim), generator, memory.device)
        for i in range(steps):
            t = torch.full((b,), 1.0 - i / steps, device=memory.device)
            x = x - self.velocity(x, t, memory, memory_pad) / steps
        return x.clamp(-1.0, 1.0)  # the training actions' range (min-max normalized), as DDIM's clip_sample


class TokenHead(ActionHead):
    uses_bins = True

    def __init__(self, config, action_dim):
        super().__init__(config, action_dim)
        self.bins = QuantileBins(action_dim, config.bins)

    def smoothed(self, index: torch.Tensor) -> torch.Tensor:
        """Bin indices [...] -> smoothed one-hot targets [..., K]: 1 - alpha on the bin, alpha spread evenly."""
        k, alpha = self.config.bins, self.config.label_smoothing
        return F.one_hot(index, k).float() * (1 - alpha) + alpha / k

    def tokens(self, actions):
        index, clipped = self.bins.quantize(actions)
        return index, {"clipped_actions": float(clipped)}


@HEADS.register("discrete_diffusion")
class DiscreteDiffusionHead(TokenHead):
    def __init__(self, config, action_dim):
        super().__init__(config, action_dim)
        d, k = config.dim, config.bins
        self.decoder = Decoder(d, config.heads, config.head_layers, config.mlp_ratio, config.dropout, config.horizon)
        # one token per step: the noisy one-hot vectors of its action dimensions side by side
        self.inp, self.time, self.out = nn.Linear(action_dim * k, d), _time_mlp(d), nn.Linear(d, action_dim * k)
        self.scheduler = DDIMScheduler(num_train_timesteps=config.train_timesteps, beta_schedule="squaredcos_cap_v2",
                                       prediction_type="sample", clip_sample=False)

    def logits(self, x, t, memory, memory_pad):
        b, h = x.shape[:2]
        tokens = self.inp(x.flatten(2)) + self.time(timestep_embedding(t, self.config.dim))[:, None]
        return self.out(self.decoder(tokens, memory, memory_pad)).reshape(b, h, self.action_dim, self.config.bins)

    def loss(self, memory, memory_pad, actions):
        index, metrics = self.tokens(actions)
        target = self.smoothed(index)  # [B, H, A, K]
        clean = target * 2 - 1
        t = torch.randint(0, self.config.train_timesteps, (actions.shape[0],), device=actions.device)
        noisy = self.scheduler.add_noise(clean, torch.randn_like(clean), t)
        logits = self.logits(noisy, t, memory, memory_pad)
        loss = -(target * F.log_softmax(logits, -1)).sum(-1).mean()
        metrics["token_accuracy"] = (logits.argmax(-1) == index).float().mean().item()
        return loss, {"cross_entropy": loss.item(), **metrics}

    def sample(self, memory, memory_pad, generator=None):
        b, k = memory.shape[0], self.config.bins
        x = randn_rows((b, self.horizon, self.action_dim, k), generator, memory.device)
        self.scheduler.set_timesteps(self.config.inference_steps)
        logits = None
        for t in self.scheduler.timesteps:
            logits = self.logits(x, torch.full((b,), int(t), device=memory.device), memory, memory_pad)
            probs = F.softmax(logits, -1)
            clean = ((1 - self.config.label_smoothing) * probs + self.config.label_smoothing / k) * 2 - 1
            x = self.scheduler.step(clean, t, x).prev_sample  # eta = 0: deterministic given the start noise
        return self.bins.dequantize(logits.argmax(-1))


@HEADS.register("autoregressive")
class AutoregressiveHead(TokenHead):
    """Steps left to right, each step's action dimensions predicted together (factorized) given the
    observation and the earlier steps' tokens. (One token per dimension, RT-2's order, took 112
    sequential decoder passes per chunk here: 1.8 s on this CPU, too slow to evaluate.)"""

    def __init__(self, config, action_dim):
        super().__init__(config, action_dim)
        d, k = config.dim, config.bins
        self.decoder = Decoder(d, config.heads, config.head_layers, config.mlp_ratio, config.dropout, config.horizon)
        # a step's input is the previous step's tokens, one embedding per dimension summed; the first
        # step's is a start token (index k)
        self.embed = nn.ModuleList(nn.Embedding(k + 1, d) for _ in range(action_dim))
        self.out = nn.Linear(d, action_dim * k)

    def logits(self, previous, memory, memory_pad):
        """``previous``: [B, n, A] tokens (start tokens first) -> logits [B, n, A, K] of the next steps."""
        b, n = previous.shape[:2]
        tokens = sum(embed(previous[..., a]) for a, embed in enumerate(self.embed))
        out = self.out(self.decoder(tokens, memory, memory_pad, causal=True))
        return out.reshape(b, n, self.action_dim, self.config.bins)

    def loss(self, memory, memory_pad, actions):
        index, metrics = self.tokens(actions)  # [B, H, A]
        start = torch.full_like(index[:, :1], self.config.bins)
        logits = self.logits(torch.cat([start, index[:, :-1]], 1), memory, memory_pad)
        loss = -(self.smoothed(index) * F.log_softmax(logits, -1)).sum(-1).mean()
        metrics["token_accuracy"] = (logits.argmax(-1) == index).float().mean().item()
        return loss, {"cross_entropy": loss.item(), **metrics}

    def sample(self, memory, memory_pad, generator=None):
        b = memory.shape[0]
        sequence = torch.full((b, 1, self.action_dim), self.config.bins, dtype=torch.long, device=memory.device)
        for _ in range(self.horizon):
            nxt = self.logits(sequence, memory, memory_pad)[:, -1:].argmax(-1)  # greedy: deterministic
            sequence = torch.cat([sequence, nxt], 1)
        return self.bins.dequantize(sequence[:, 1:])
