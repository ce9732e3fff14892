"""A 1-D temporal U-Net denoiser over action chunks, conditioned by FiLM on the diffusion step
and the observation (after Janner et al. 2022 and Chi et al. 2023)."""

from __future__ import annotations

import math

import torch
from torch import nn


class StepEmbedding(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.Mish(), nn.Linear(4 * dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / max(half - 1, 1))
        angles = t.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([angles.sin(), angles.cos()], -1))


def conv_block(c_in: int, c_out: int, kernel: int, groups: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2), nn.GroupNorm(groups, c_out), nn.Mish())


class FiLMBlock(nn.Module):
    """Two conv blocks; the condition scales and shifts the features between them."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, kernel: int, groups: int):
        super().__init__()
        self.first = conv_block(c_in, c_out, kernel, groups)
        self.second = conv_block(c_out, c_out, kernel, groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * c_out))
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, cond):
        scale, shift = self.film(cond)[..., None].chunk(2, dim=1)
        y = self.first(x) * (1 + scale) + shift
        return self.second(y) + self.skip(x)


class ConditionalUnet1d(nn.Module):
    """[B, horizon, A] noisy actions, [B] steps, [B, cond_dim] -> [B, horizon, A]."""

    def __init__(self, action_dim: int, cond_dim: int, down_dims=(64, 128, 256), kernel: int = 5,
                 groups: int = 8, step_dim: int = 64):
        super().__init__()
        self.step = StepEmbedding(step_dim)
        cond = step_dim + cond_dim
        dims = [action_dim, *down_dims]
        self.down = nn.ModuleList()
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            last = i == len(down_dims) - 1
            self.down.append(nn.ModuleList([FiLMBlock(a, b, cond, kernel, groups), FiLMBlock(b, b, cond, kernel, groups),
                                             nn.Conv1d(b, b, 3, 2, 1) if not last else nn.Identity()]))
        self.mid = nn.ModuleList([FiLMBlock(down_dims[-1], down_dims[-1], cond, kernel, groups) for _ in range(2)])
        self.up = nn.ModuleList()
        for i, (a, b) in enumerate(zip(reversed(down_dims[1:]), reversed(down_dims[:-1]))):
            self.up.append(nn.ModuleList([FiLMBlock(2 * a, b, cond, kernel, groups), FiLMBlock(b, b, cond, kernel, groups),
                                          nn.ConvTranspose1d(b, b, 4, 2, 1)]))
        self.final = nn.Sequential(conv_block(down_dims[0], down_dims[0], kernel, groups), nn.Conv1d(down_dims[0], action_dim, 1))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        c = torch.cat([self.step(t), cond], -1)
        h = x.transpose(1, 2)
        skips = []
        for first, second, down in self.down:
            h = second(first(h, c), c)
            skips.append(h)
            h = down(h)
        for block in self.mid:
            h = block(h, c)
        for first, second, up in self.up:
            h = second(first(torch.cat([h, skips.pop()], 1), c), c)
            h = up(h)
        return self.final(h).transpose(1, 2)
