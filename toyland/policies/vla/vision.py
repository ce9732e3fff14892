"""Image tokens for the VLA: a ViT-style patch encoder per camera, and detection pooling (DetPool).

Patches are embedded by a linear map of their own pixels (``stem="linear"``, ViT's: a convolution
whose kernel equals its stride) or by a small stack of stride-2 convolutions (``stem="conv"``, an
early-convolution stem: each token also sees its neighbours' pixels, with the same token grid). With
DetPool (the object-centric representation of the random-toys paper), pixels outside the target's
mask are zeroed before either stem, the vision layers attend only among patches that the mask
touches, and those patches are mean-pooled into one object token per camera and frame: nothing
outside the mask can change the token. A frame whose
mask is empty (the target out of view) gets a learned "not visible" token instead.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def sincos_2d(rows: int, cols: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position codes [rows * cols, dim] (MAE's): a patch token, and a mean of
    patch tokens, carries where it is in the image from the first step on. Learned position
    embeddings alone left the object token's location unlearned after 1,500 steps here (x/y action
    error no better than predicting the mean)."""
    if dim % 4:
        raise ValueError(f"dim={dim} must divide by 4 for 2-D sine-cosine position codes")
    quarter = dim // 4
    freqs = 1.0 / 10_000 ** (torch.arange(quarter) / quarter)
    r, c = torch.meshgrid(torch.arange(rows).float(), torch.arange(cols).float(), indexing="ij")
    parts = [f(x.reshape(-1, 1) * freqs) for x in (r, c) for f in (torch.sin, torch.cos)]
    return torch.cat(parts, 1)


def transformer_layer(dim: int, heads: int, mlp_ratio: float, dropout: float) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(dim, heads, int(dim * mlp_ratio), dropout, activation="gelu", batch_first=True,
                                      norm_first=True)


STEMS = ("linear", "conv")


def conv_stem(patch: int, dim: int, in_channels: int = 3) -> nn.Sequential:
    """Stride-2 3x3 convolutions for each factor 2 of ``patch``, then one convolution over the
    remaining factor (kernel = stride), to ``dim`` channels: one token per patch, as the linear stem."""
    halvings, rest = 0, patch
    while rest % 2 == 0 and rest > 1:
        halvings, rest = halvings + 1, rest // 2
    layers, c_in = [], in_channels
    for i in range(halvings):
        c_out = max(8, dim // 2 ** max(0, halvings - i - 1) // 2)
        layers += [nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False), nn.GroupNorm(min(8, c_out // 4) or 1, c_out), nn.ReLU()]
        c_in = c_out
    layers.append(nn.Conv2d(c_in, dim, rest, rest))
    return nn.Sequential(*layers)


class PatchEncoder(nn.Module):
    """[N, C, H, W] in [0, 1] (RGB, or RGB and depth; and an optional [N, H, W] target mask) -> patch
    tokens [N, P, D] and, with a mask, which patches the mask touches [N, P]."""

    def __init__(self, image_size: tuple[int, int], patch: int, dim: int, heads: int, layers: int, mlp_ratio: float,
                 dropout: float, stem: str = "linear", in_channels: int = 3):
        super().__init__()
        h, w = image_size
        if h % patch or w % patch:
            raise ValueError(f"the (cropped) image {h}x{w} does not divide into {patch}x{patch} patches; "
                             "change patch_size or crop")
        self.patch, self.grid = patch, (h // patch, w // patch)
        if stem not in STEMS:
            raise ValueError(f"stem={stem!r}; valid: {', '.join(STEMS)}")
        self.embed = nn.Conv2d(in_channels, dim, patch, patch) if stem == "linear" else conv_stem(patch, dim, in_channels)
        self.register_buffer("fixed_position", sincos_2d(*self.grid, dim)[None], persistent=False)
        self.position = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], dim))
        self.blocks = nn.ModuleList(transformer_layer(dim, heads, mlp_ratio, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None):
        if mask is not None:  # (its size is checked against the image where batches are read: MASK.channel)
            images = images * (mask[:, None] > 0.5)
        tokens = self.embed(images * 2.0 - 1.0).flatten(2).transpose(1, 2) + self.fixed_position + self.position
        touched = None
        if mask is not None:
            touched = F.max_pool2d(mask[:, None].float(), self.patch).flatten(1) > 0.5  # [N, P]
            # frames with no target patch attend normally; their pooled token is replaced anyway
            ignore = ~touched & touched.any(1, keepdim=True)
            for block in self.blocks:
                tokens = block(tokens, src_key_padding_mask=ignore)
        else:
            for block in self.blocks:
                tokens = block(tokens)
        return self.norm(tokens), touched


def mask_geometry(mask: torch.Tensor) -> torch.Tensor:
    """[N, H, W] target masks -> [N, GEOMETRY_DIM] of what a mask says exactly: whether the target is in
    view, the square root of its area fraction (about its size over its distance), its centroid and
    bounding box in [-1, 1] image coordinates, and its second central moments as (xx - yy, 2 xy, xx + yy),
    which carry the principal axis of an elongated toy without an angle's wrap-around. Zeros when empty."""
    w = (mask > 0.5).float()
    n, h, wd = w.shape
    ys = torch.linspace(-1.0, 1.0, h, device=w.device)[None, :, None]
    xs = torch.linspace(-1.0, 1.0, wd, device=w.device)[None, None, :]
    area = w.sum((1, 2))
    present = (area > 0).float()
    total = area.clamp(min=1.0)
    mx, my = (w * xs).sum((1, 2)) / total, (w * ys).sum((1, 2)) / total
    dx, dy = xs - mx[:, None, None], ys - my[:, None, None]
    cxx, cyy, cxy = ((w * dx * dx).sum((1, 2)) / total, (w * dy * dy).sum((1, 2)) / total,
                     (w * dx * dy).sum((1, 2)) / total)
    rows, cols = w.amax(2) > 0, w.amax(1) > 0  # [N, H], [N, W]: rows and columns the mask reaches
    big = 2.0  # outside [-1, 1]: masked out of the min/max
    y0 = torch.where(rows, ys[:, :, 0], big).amin(1)
    y1 = torch.where(rows, ys[:, :, 0], -big).amax(1)
    x0 = torch.where(cols, xs[:, 0, :], big).amin(1)
    x1 = torch.where(cols, xs[:, 0, :], -big).amax(1)
    moments = torch.stack([cxx - cyy, 2 * cxy, cxx + cyy], 1) * 4.0  # about unit scale for a toy filling the view
    geometry = torch.cat([present[:, None], (area / (h * wd)).sqrt()[:, None], mx[:, None], my[:, None],
                          torch.stack([x0, x1, y0, y1], 1), moments], 1)
    return geometry * present[:, None]


GEOMETRY_DIM = 11


class DetPool(nn.Module):
    """The target's patch tokens -> ``slots`` object tokens per frame; learned tokens when the target
    is not in view. One slot: their mean (the random-toys paper's). More: each slot is a learned query
    attending over the target's patches only, so a slot can keep where an edge or a part is, which a
    mean blurs; nothing outside the mask reaches any slot either way."""

    def __init__(self, dim: int, slots: int = 1, geometry: bool = False):
        super().__init__()
        if slots < 1:
            raise ValueError(f"det_pool_slots={slots} must be at least 1")
        self.slots = slots
        # (one slot keeps the [D] shape, so checkpoints from before slots existed still load)
        self.absent = nn.Parameter(torch.zeros(dim) if slots == 1 else torch.zeros(slots, dim))
        if slots > 1:
            self.queries = nn.Parameter(torch.randn(slots, dim) * dim ** -0.5)
            self.keys = nn.Linear(dim, dim)
        # the mask's own geometry (mask_geometry) added to every slot: a mean of patch tokens knows the
        # target's place and extent only to about a patch, the mask's moments to a pixel
        self.geometry = nn.Sequential(nn.Linear(GEOMETRY_DIM, dim), nn.GELU(), nn.Linear(dim, dim)) if geometry else None

    def forward(self, tokens: torch.Tensor, touched: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """[N, P, D] tokens and [N, P] target patches (and the [N, H, W] mask, with geometry) -> [N, slots, D]."""
        count = touched.float().sum(1)[:, None, None]  # [N, 1, 1]
        if self.slots == 1:
            weight = touched.float()[:, None, :]  # [N, 1, P]
            pooled = weight @ tokens / count.clamp(min=1.0)
        else:
            scores = torch.einsum("kd,npd->nkp", self.queries, self.keys(tokens)) * tokens.shape[-1] ** -0.5
            scores = scores.masked_fill(~touched[:, None, :], float("-inf"))
            weight = torch.nan_to_num(scores.softmax(-1), nan=0.0)  # a frame with no target patch: all -inf
            pooled = weight @ tokens
        pooled = torch.where(count > 0, pooled, self.absent.reshape(self.slots, -1).expand_as(pooled))
        if self.geometry is not None:
            if mask is None:
                raise ValueError("DetPool with geometry needs the target mask")
            pooled = pooled + self.geometry(mask_geometry(mask))[:, None]
        return pooled
