"""Colour jitter: per-sample brightness, contrast, saturation and hue, one draw per sample shared by
all its cameras and history frames (one scene under one light).

The same transform as ``toyland.policies.vision.colour_jitter`` (the same draws from the same
generator give the same pixels; tests/test_augment.py holds them together until the policies' copy
is removed): brightness scales, contrast scales about the image's mean, and saturation and hue act on
the chroma plane of YIQ (saturation scales it, hue rotates it), one 3x3 matrix per sample, which is
cheaper than an HSV round trip and batched over samples where torchvision's ops take one factor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from toyland.augment.base import IMAGES, Augmentation, MissingInputError, check_number, image_cameras
from toyland.augment.registry import AUGMENTATIONS

_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


@dataclass(frozen=True)
class ColourJitterConfig:
    brightness: float = 0.2  # factor drawn in [1 - b, 1 + b]
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.05  # rotation drawn in [-h, h] turns (0.5: any hue)
    strength: float = 1.0  # scales every range above; 0 is the identity

    def __post_init__(self):
        where = "colour_jitter"
        for name in ("brightness", "contrast", "saturation", "strength"):
            check_number(where, name, getattr(self, name), 0.0, 1.0)
        check_number(where, "hue", self.hue, 0.0, 0.5)

    def ranges(self) -> tuple[float, float, float, float]:
        s = self.strength
        return self.brightness * s, self.contrast * s, self.saturation * s, self.hue * s


def colour_matrices(u: torch.Tensor, ranges, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Brightness [B], contrast [B] and the saturation-and-hue matrix [B, 3, 3] from draws ``u`` in [-1, 1]."""
    b = u.shape[0]
    s = torch.tensor([float(x) for x in ranges], device=device)
    brightness, contrast, saturation = (1 + u[:, :3] * s[:3]).unbind(-1)
    angle = u[:, 3] * s[3] * 2 * torch.pi
    cos, sin = angle.cos(), angle.sin()
    rotate = torch.zeros(b, 3, 3, device=device)
    rotate[:, 0, 0] = 1
    rotate[:, 1, 1], rotate[:, 1, 2], rotate[:, 2, 1], rotate[:, 2, 2] = cos, -sin, sin, cos
    yiq = torch.tensor(_RGB_TO_YIQ, device=device)
    chroma = torch.diag_embed(torch.stack([torch.ones_like(saturation), saturation, saturation], -1))
    return brightness, contrast, torch.linalg.inv(yiq) @ rotate @ chroma @ yiq


@AUGMENTATIONS.register("colour_jitter")
class ColourJitter(Augmentation):
    name = "colour_jitter"
    Config = ColourJitterConfig

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({"rgb"})

    def cameras(self, batch: dict) -> list[str]:
        cams = image_cameras(batch)
        if not cams:
            raise MissingInputError("augmentation 'colour_jitter' needs rgb but the batch has no "
                                    f"'{IMAGES}<camera>': collect with env.cameras=[front:rgb] and ask the sampler for it")
        return cams

    def apply(self, batch: dict, generator: torch.Generator) -> dict:
        cams = self.cameras(batch)
        first = batch[IMAGES + cams[0]]
        b = first.shape[0]
        # drawn on the generator's device (the sampler's is on the CPU), used on the batch's
        u = (torch.rand(b, 4, generator=generator) * 2 - 1).to(first.device)
        brightness, contrast, matrix = colour_matrices(u, self.config.ranges(), first.device)
        for cam in cams:
            images = batch[IMAGES + cam]
            x = images if images.dim() == 5 else images.unsqueeze(1)  # [B, T, 3, H, W]
            x = x * brightness.view(b, 1, 1, 1, 1).to(x.dtype)
            mean = x.mean(dim=(2, 3, 4), keepdim=True)
            x = (x - mean) * contrast.view(b, 1, 1, 1, 1).to(x.dtype) + mean
            x = torch.einsum("bij,btjhw->btihw", matrix.to(x.dtype), x).clamp(0.0, 1.0)
            batch[IMAGES + cam] = x if images.dim() == 5 else x.squeeze(1)
        return batch
