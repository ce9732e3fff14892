"""A detector's errors on the target mask: what DetPool is fed on a real robot, where the mask comes
from a detector instead of the simulator's segmentation (issue 27).

Per frame, independently, each with its configured probability (all scaled by ``strength``):

1. ``wrong_object``: the mask is another object's (a detection of the wrong toy). It needs the
   segmentation to know where the other objects are; when none is in view the mask is kept.
2. ``morph``: dilated or eroded (half each) by 1 to ``max_radius`` pixels (a loose or tight outline).
   An erosion never empties the mask: it stops at the largest radius that leaves some of it (a toy
   of a few pixels at 64 px would otherwise vanish under most erosions, and missing is ``miss``'s;
   only ``miss`` and a shift out of the image empty a mask).
3. ``fragment``: ``fragments`` square blocks of ``fragment_size`` x ``fragment_size`` pixels cut out
   around pixels of the mask (a detector that sees the toy in parts), each unless it would take all
   that is left.
4. ``shift``: moved by up to ``max_shift`` pixels on each axis, never by (0, 0) (a late or
   misaligned detection).
5. ``miss``: emptied (a missed detection).

The same model serves training (the ``mask_noise`` augmentation, on a batch's
``observation.masks.<cam>``) and evaluation (the env's ``mask_noise`` option, seeded by the
episode), so a policy can be trained and tested under different noise separately. Every draw comes
from the generator given, a fixed number per frame, so the noise is a function of the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from toyland.augment.base import (Augmentation, MissingInputError, check_number, image_cameras, require,
                                  target_mask)
from toyland.augment.registry import AUGMENTATIONS

MASKS = "observation.masks."
FIRST_OBJECT_LABEL = 3  # toyland/sim/scene.py: 0 background, 1 arena, 2 robot, 3+ objects
NUM_LABELS = 256
DRAWS = 10  # uniform draws per frame: the noise of a frame never depends on the other frames


@dataclass(frozen=True)
class MaskNoiseConfig:
    wrong_object: float = 0.0  # probability the mask is another object's (needs segmentation)
    morph: float = 0.3  # probability of a dilation or an erosion
    max_radius: int = 2  # pixels
    fragment: float = 0.2  # probability of cut-out blocks
    fragments: int = 2
    fragment_size: int = 4  # pixels
    shift: float = 0.3  # probability of a shift
    max_shift: int = 3  # pixels on each axis
    miss: float = 0.05  # probability of an empty mask
    strength: float = 1.0  # scales every probability; 0 is the identity

    def __post_init__(self):
        where = "mask_noise"
        for name in ("wrong_object", "morph", "fragment", "shift", "miss", "strength"):
            check_number(where, name, getattr(self, name), 0.0, 1.0)
        for name in ("max_radius", "fragments", "fragment_size", "max_shift"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 32:
                raise ValueError(f"{where}.{name}={value!r}: give a whole number of pixels in [0, 32]")

    def rate(self, name: str) -> float:
        return getattr(self, name) * self.strength


def noisy_masks(masks: torch.Tensor, labels: torch.Tensor | None, config: MaskNoiseConfig,
                generator: torch.Generator) -> torch.Tensor:
    """``masks`` [N, H, W] (0/1, any dtype) -> the detector's masks, same shape and dtype. ``labels``:
    the frames' segmentation [N, H, W] (needed when ``wrong_object`` > 0)."""
    n, h, w = masks.shape
    device = masks.device
    u = torch.rand(n, DRAWS, generator=generator).to(device)  # on the generator's device, used on the masks'
    # picks among labels (row 0) and the fragments' centres among pixels (one row each)
    pixel_noise = torch.rand(n, 1 + config.fragments, max(h * w, NUM_LABELS), generator=generator).to(device)
    m = masks.to(torch.float32)
    if config.rate("wrong_object") > 0:
        if labels is None:
            raise ValueError("mask_noise.wrong_object needs the segmentation of the frames")
        m = _wrong_object(m, labels.to(device).long(), u[:, 0] < config.rate("wrong_object"), pixel_noise[:, 0])
    if config.max_radius > 0:
        morph = u[:, 1] < config.rate("morph")
        radius = 1 + (u[:, 3] * config.max_radius).long().clamp(max=config.max_radius - 1)
        dilate = morph & (u[:, 2] < 0.5)
        erode = morph & ~dilate
        out = m.clone()  # dilated by the frame's radius; eroded by it or less, never to nothing
        for r in range(1, config.max_radius + 1):
            grow = (dilate & (radius == r)).nonzero()[:, 0]  # only the frames drawn: pooling is most of the cost
            if len(grow):
                out[grow] = _grow(m[grow], r)
            shrink = (erode & (radius >= r)).nonzero()[:, 0]
            if len(shrink):
                eroded = -_grow(-m[shrink], r)
                left = eroded.amax((1, 2)) > 0
                out[shrink[left]] = eroded[left]
        m = out
    if config.fragments > 0 and config.fragment_size > 0:
        cut = u[:, 4] < config.rate("fragment")
        for k in range(config.fragments):
            # a block centred on a pixel of the mask, drawn from the frame's own pixel noise
            score = m.reshape(n, -1) * pixel_noise[:, 1 + k, : h * w]
            centre = score.argmax(1)
            cy, cx = centre // w, centre % w
            ys, xs = torch.arange(h, device=device), torch.arange(w, device=device)
            # rows cy - size // 2 .. cy - size // 2 + size - 1, and the same for columns
            dy = ys[None, :, None] - cy[:, None, None] + config.fragment_size // 2
            dx = xs[None, None, :] - cx[:, None, None] + config.fragment_size // 2
            block = (dy >= 0) & (dy < config.fragment_size) & (dx >= 0) & (dx < config.fragment_size)
            kept = torch.where(block, torch.zeros_like(m), m)
            cut_here = cut & (kept.amax((1, 2)) > 0)  # a block that would take the whole mask is not cut
            m = torch.where(cut_here[:, None, None], kept, m)
    if config.max_shift > 0:
        move = u[:, 5] < config.rate("shift")
        span = 2 * config.max_shift + 1
        still = config.max_shift * span + config.max_shift  # the offset (0, 0) among the span x span offsets
        pick = (u[:, 6] * (span * span - 1)).long().clamp(max=span * span - 2)
        pick = pick + (pick >= still).long()
        dy = (pick // span - config.max_shift) * move
        dx = (pick % span - config.max_shift) * move
        m = _shift(m, dy, dx)
    m = torch.where((u[:, 8] < config.rate("miss"))[:, None, None], torch.zeros_like(m), m)
    return (m > 0.5).to(masks.dtype)


def _grow(m, r):
    """Each frame dilated by a (2r+1) x (2r+1) square, as two 1-D max pools (a fraction of the 2-D one's time)."""
    rows = F.max_pool2d(m[:, None], (2 * r + 1, 1), 1, (r, 0))
    return F.max_pool2d(rows, (1, 2 * r + 1), 1, (0, r))[:, 0]


def _wrong_object(m, labels, wrong, pixel_noise):
    """Frames where ``wrong``: the mask of another object in view (the one with the largest draw)."""
    n = m.shape[0]
    flat = labels.reshape(n, -1).clamp(0, NUM_LABELS - 1)
    present = torch.zeros(n, NUM_LABELS, device=m.device).scatter_add_(1, flat, torch.ones_like(flat, dtype=torch.float32))
    target = torch.zeros(n, NUM_LABELS, device=m.device).scatter_add_(1, flat, m.reshape(n, -1))
    others = present > 0
    others[:, :FIRST_OBJECT_LABEL] = False
    others &= target == 0  # not the labels under the current mask
    draw = pixel_noise[:, :NUM_LABELS] * others
    pick = draw.argmax(1)
    ok = wrong & others.any(1)
    replaced = (labels == pick[:, None, None]).to(m.dtype)
    return torch.where(ok[:, None, None], replaced, m)


def _shift(m, dy, dx):
    """Each frame moved by whole pixels (dy, dx); what moves in from outside is empty."""
    n, h, w = m.shape
    ys = torch.arange(h, device=m.device)[None, :, None] - dy[:, None, None]
    xs = torch.arange(w, device=m.device)[None, None, :] - dx[:, None, None]
    inside = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    index = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).reshape(n, -1)
    moved = torch.gather(m.reshape(n, -1), 1, index).reshape(n, h, w)
    return moved * inside


@AUGMENTATIONS.register("mask_noise")
class MaskNoise(Augmentation):
    """Train-time detector noise on every camera's target mask (see the module docstring)."""

    name = "mask_noise"
    Config = MaskNoiseConfig

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({"masks", "segmentation"} if self.config.rate("wrong_object") > 0 else {"masks"})

    def cameras(self, batch: dict) -> list[str]:
        cams = image_cameras(batch, MASKS)
        if not cams:
            raise MissingInputError("augmentation 'mask_noise' needs masks but the batch has no "
                                    f"'{MASKS}<camera>': collect with env.cameras=[front:rgb+mask]")
        return cams

    def apply(self, batch: dict, generator: torch.Generator) -> dict:
        for cam in self.cameras(batch):
            key = require(batch, self.name, "masks", cam)
            masks = target_mask(batch, self.name, cam)
            labels = batch[require(batch, self.name, "segmentation", cam)] if "segmentation" in self.needs else None
            shape = masks.shape
            frames = masks.reshape(-1, *shape[-2:])
            batch[key] = noisy_masks(frames, None if labels is None else labels.reshape(-1, *shape[-2:]), self.config,
                                     generator).reshape(shape)
        return batch
