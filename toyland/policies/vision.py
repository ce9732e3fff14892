"""Image encoders shared by toyland's policies: a small residual conv net with GroupNorm (batch
statistics would couple the samples of a batch and drift between training and acting), spatial
softmax keypoints, and random-crop augmentation that becomes a centre crop at inference."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels // 4) or 1, channels)


class ResidualBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.norm1 = group_norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.norm2 = group_norm(c_out)
        self.skip = nn.Identity() if (c_in == c_out and stride == 1) else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), group_norm(c_out))

    def forward(self, x):
        # in place: neither GroupNorm's backward nor the sum's needs the tensor ReLU overwrites
        y = F.relu(self.norm1(self.conv1(x)), inplace=True)
        return F.relu(self.norm2(self.conv2(y)) + self.skip(x), inplace=True)


class SpatialSoftmax(nn.Module):
    """Per keypoint channel, the softmax-weighted mean pixel position: [B, C, H, W] -> [B, 2K]."""

    def __init__(self, channels: int, keypoints: int):
        super().__init__()
        self.to_keypoints = nn.Conv2d(channels, keypoints, 1)

    def forward(self, x):
        heat = self.to_keypoints(x)
        b, k, h, w = heat.shape
        attn = heat.flatten(2).softmax(-1)  # [B, K, HW]
        ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
        xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
        grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), -1).reshape(h * w, 2)
        return (attn @ grid).reshape(b, 2 * k)


class FlattenPool(nn.Module):
    """The feature map flattened through a linear layer: every position keeps its own weights, so
    where things are survives (and it learns faster than keypoints on a small CPU budget)."""

    def __init__(self, channels: int, size: tuple[int, int], out_dim: int):
        super().__init__()
        self.project = nn.Linear(channels * size[0] * size[1], out_dim)

    def forward(self, x):
        return self.project(x.flatten(1))


POOLS = ("flatten", "spatial_softmax")


MEMORY_FORMATS = ("auto", "contiguous", "channels_last")
# oneDNN's channels-last (NHWC) convolutions, forward and backward, measured on an AVX-512 CPU
# (benchmarks/train_throughput.py): 1.13x faster for an encoder of 64-512 channels, 1.3x slower
# for the 16-64 channel CPU default, whose narrow layers don't fill NHWC's vector lanes
CHANNELS_LAST_FROM = 64


def use_channels_last(memory_format: str, channels) -> bool:
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f"memory_format={memory_format!r}; valid: {', '.join(MEMORY_FORMATS)}")
    if memory_format == "auto":
        return min(channels) >= CHANNELS_LAST_FROM
    return memory_format == "channels_last"


class ConvEncoder(nn.Module):
    """[N, C, H, W] in [0, 1] -> [N, out_dim] (C: RGB, or RGB and the target mask). ``pool``: ``flatten`` (a linear map of the whole
    feature map, needs ``image_size``) or ``spatial_softmax`` (one expected position per keypoint). ``channels_last``:
    the convolutions run in NHWC memory layout (the same numbers, a different speed; see ``use_channels_last``)."""

    def __init__(self, channels=(32, 64, 128), keypoints: int = 32, out_dim: int = 64, pool: str = "flatten",
                 image_size: tuple[int, int] | None = None, in_channels: int = 3, channels_last: bool = False):
        super().__init__()
        self.in_channels = in_channels
        self.channels_last = channels_last
        layers = [nn.Conv2d(in_channels, channels[0], 5, 2, 2, bias=False), group_norm(channels[0]), nn.ReLU()]
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            layers.append(ResidualBlock(c_in, c_out, stride=2))
        self.trunk = nn.Sequential(*layers)
        if pool == "spatial_softmax":
            self.pool = SpatialSoftmax(channels[-1], keypoints)
            width = 2 * keypoints
        elif pool == "flatten":
            if image_size is None:
                raise ValueError(f"pool='{pool}' needs the image size")
            with torch.no_grad():
                size = tuple(self.trunk(torch.zeros(1, in_channels, *image_size)).shape[2:])
            self.pool, width = FlattenPool(channels[-1], size, out_dim), out_dim
        else:
            raise ValueError(f"pool={pool!r}; valid: {', '.join(POOLS)}")
        self.out = nn.Sequential(nn.Linear(width, out_dim), nn.LayerNorm(out_dim))
        if channels_last:
            self.trunk.to(memory_format=torch.channels_last)
            self.pool.to(memory_format=torch.channels_last)

    def forward(self, images):
        x = images * 2.0 - 1.0
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.out(self.pool(self.trunk(x)))


def cropped_size(size: tuple[int, int], fraction: float) -> tuple[int, int]:
    if fraction >= 1.0:
        return tuple(size)
    return (max(1, round(size[0] * fraction)), max(1, round(size[1] * fraction)))


def with_pixel_coords(images: torch.Tensor) -> torch.Tensor:
    """[B, T, C, H, W] -> [B, T, C + 2, H, W]: each pixel's row and column in [0, 1] appended, like the other channels."""
    b, t, _, h, w = images.shape
    rows = torch.linspace(0.0, 1.0, h, device=images.device, dtype=images.dtype)[:, None].expand(h, w)
    cols = torch.linspace(0.0, 1.0, w, device=images.device, dtype=images.dtype)[None, :].expand(h, w)
    grid = torch.stack([rows, cols])[None, None].expand(b, t, 2, h, w)
    return torch.cat([images, grid], 2)


def crop(images: torch.Tensor, fraction: float, random: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """[B, T, C, H, W] -> [B, T, C, h, w]: one random window per sample (the same for its history)
    when ``random``, else the centre window."""
    if fraction >= 1.0:
        return images
    b, t, c, h, w = images.shape
    ch, cw = cropped_size((h, w), fraction)
    if not random:
        top, left = (h - ch) // 2, (w - cw) // 2
        return images[..., top : top + ch, left : left + cw]
    top = torch.randint(0, h - ch + 1, (b,), generator=generator).to(images.device)
    left = torch.randint(0, w - cw + 1, (b,), generator=generator).to(images.device)
    rows = (top[:, None] + torch.arange(ch, device=images.device))[:, None, None, :, None]  # [B,1,1,ch,1]
    cols = (left[:, None] + torch.arange(cw, device=images.device))[:, None, None, None, :]  # [B,1,1,1,cw]
    bi = torch.arange(b, device=images.device)[:, None, None, None, None]
    ti = torch.arange(t, device=images.device)[None, :, None, None, None]
    ci = torch.arange(c, device=images.device)[None, None, :, None, None]
    return images[bi, ti, ci, rows, cols]
