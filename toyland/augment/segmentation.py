"""Segmentation-aware recolouring: the arena (table and floor), the background, the robot, the
distractors and the target recoloured or re-textured per sample from the recorded segmentation
labels (toyland/sim/scene.py: 0 background, 1 arena, 2 robot, 3+ objects).

Which object is the target comes from the target's mask (``observation.masks.<cam>``, the env's
``labels == target`` at collection), so ``target`` and ``distractors`` need masks; the others need
segmentation only. When the target changes colour in a sample whose instruction names it by one of the
tasks' palette colours ("pick up the red ball"), the new colour is another palette colour and the
instruction's colour word is rewritten to it; distractors of such a sample are drawn from the palette
without the target's colour, so the instruction still singles out the target (docs/augment.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from toyland.augment.base import (IMAGES, INPUTS, Augmentation, MissingInputError, check_number, image_cameras, require,
                                  target_mask)
from toyland.augment.registry import AUGMENTATIONS
from toyland.sim.scene import FIRST_OBJECT_LABEL, LABEL_ARENA, LABEL_BACKGROUND, LABEL_ROBOT
from toyland.sim.tasks.base import COLOURS

NAME = "segment_recolour"
SEGMENTATION = "observation.segmentation."
MASKS = "observation.masks."
TARGET_KEY = f"augment.{NAME}.target"  # [B] bool: the sample's target was recoloured
REGIONS = ("background", "arena", "robot", "distractors", "target")
TEXTURES = ("plain", "checker", "noise")
NUM_LABELS = 256  # labels are uint8
TARGET_SLOT = NUM_LABELS  # the key of the target's pixels (its mask) in the per-sample tables
NUM_KEYS = NUM_LABELS + 1
_LUMA = (0.299, 0.587, 0.114)
_PALETTE = tuple(COLOURS)
_COLOUR_WORD = re.compile(r"\b(" + "|".join(_PALETTE) + r")\b")
# toyland's scenes render the table and the floor with one label (see docs/augment.md on why they are
# not split); a config naming either gets this instead of a silent merge.
_SHARED_ARENA = ("table", "floor")


@dataclass(frozen=True)
class SegmentRecolourConfig:
    regions: tuple[str, ...] = ("background", "arena")  # what is recoloured; the rest is kept exactly
    keep_shading: bool = True  # new albedo times the pixel's luminance over its region's mean
    textures: tuple[str, ...] = TEXTURES  # patterns drawn for the arena and the background
    strength: float = 1.0  # probability that each region of a sample is recoloured; 0 is the identity
    cameras: tuple[str, ...] | None = None  # None: every camera with images in the batch

    def __post_init__(self):
        where = NAME
        check_number(where, "strength", self.strength, 0.0, 1.0)
        if not isinstance(self.keep_shading, bool):
            raise ValueError(f"{where}.keep_shading={self.keep_shading!r}: give true or false")
        shared = [r for r in self.regions if r in _SHARED_ARENA]
        if shared:
            raise ValueError(f"{where}.regions {shared}: the table and the floor share the segmentation label "
                             f"'arena' ({LABEL_ARENA}) in toyland's scenes; list 'arena' to recolour both")
        unknown = [r for r in self.regions if r not in REGIONS]
        if unknown or len(set(self.regions)) != len(self.regions):
            raise ValueError(f"{where}.regions={list(self.regions)}: give distinct names out of {', '.join(REGIONS)}")
        if "target" in self.regions and "distractors" not in self.regions:
            raise ValueError(f"{where}.regions={list(self.regions)}: 'target' needs 'distractors' too: a target given "
                             "a new named colour must not share it with a distractor")
        if not self.textures or any(t not in TEXTURES for t in self.textures):
            raise ValueError(f"{where}.textures={list(self.textures)}: give one or more of {', '.join(TEXTURES)}")


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """[..., 3] HSV in [0, 1] to RGB, batched."""
    h, s, v = hsv.unbind(-1)
    n = torch.tensor([5.0, 3.0, 1.0], dtype=hsv.dtype, device=hsv.device)
    k = (n + h[..., None] * 6) % 6
    return v[..., None] * (1 - s[..., None] * torch.minimum(k, 4 - k).clamp(0, 1))


def random_hsv(u: torch.Tensor) -> torch.Tensor:
    """HSV colours [..., 3] from uniform draws [..., 3]: any hue, any saturation, value in [0.15, 0.95]."""
    return torch.stack([u[..., 0], u[..., 1], 0.15 + 0.8 * u[..., 2]], -1)


def colour_word(instruction) -> str | None:
    """The palette colour an instruction names its target by, or None; two different ones are an error."""
    if not isinstance(instruction, str):
        return None
    words = set(_COLOUR_WORD.findall(instruction))
    if len(words) > 1:
        raise ValueError(f"augmentation '{NAME}': instruction {instruction!r} names several colours {sorted(words)}; "
                         "cannot tell which is the target's, leave 'target' out of regions for this data")
    return words.pop() if words else None


def patterns(draws: torch.Tensor, kinds: torch.Tensor, noise: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Procedural patterns [B, 1, h, w] in [0, 1] in image coordinates (normalised by the height, so the
    same draws give the same pattern at any size): 0 plain, 1 checker (period, angle, phase from
    ``draws`` [B, 4]), 2 smooth value noise (``noise`` [B, 1, g, g] read bilinearly)."""
    dev, b = draws.device, draws.shape[0]
    y, x = torch.meshgrid(torch.arange(h, device=dev, dtype=torch.float32) / h,
                          torch.arange(w, device=dev, dtype=torch.float32) / h, indexing="ij")
    period = (0.06 + 0.3 * draws[:, 0]).view(b, 1, 1)
    angle = (draws[:, 1] * torch.pi / 2).view(b, 1, 1)
    cos, sin = angle.cos(), angle.sin()
    across, along = x * cos + y * sin, y * cos - x * sin
    checker = ((torch.floor(across / period + draws[:, 2].view(b, 1, 1)) + torch.floor(along / period
               + draws[:, 3].view(b, 1, 1))) % 2).unsqueeze(1)
    smooth = torch.nn.functional.interpolate(noise, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1)
    kinds = kinds.view(b, 1, 1, 1)
    return torch.where(kinds == 1, checker, torch.where(kinds == 2, smooth, torch.zeros_like(smooth)))


@AUGMENTATIONS.register(NAME)
class SegmentRecolour(Augmentation):
    name = NAME
    Config = SegmentRecolourConfig

    @property
    def needs(self) -> frozenset[str]:
        return frozenset({"rgb", "segmentation", *(["masks"] if self._objects() else [])})

    def cameras(self, batch: dict) -> list[str]:
        if self.config.cameras is not None:
            return list(self.config.cameras)
        cams = image_cameras(batch)
        if not cams:
            raise MissingInputError(f"augmentation '{NAME}' needs rgb but the batch has no '{IMAGES}<camera>': "
                                    f"{INPUTS['rgb'].how.format(cam='front')} and ask the sampler for it")
        return cams

    def check(self, batch: dict) -> None:
        super().check(batch)
        if self._objects():
            for instruction in batch.get("task") or ():
                colour_word(instruction)

    def _objects(self) -> bool:
        return bool({"target", "distractors"} & set(self.config.regions))

    def apply(self, batch: dict, generator: torch.Generator) -> dict:
        cams = self.cameras(batch)
        first = batch[IMAGES + cams[0]]
        b, dev, regions = first.shape[0], first.device, set(self.config.regions)
        draw = lambda *shape: torch.rand(*shape, generator=generator).to(dev)  # noqa: E731 (CPU generator)
        # One coin per (sample, region): strength is the probability a region of a sample is recoloured.
        coins = {r: (draw(b) < self.config.strength) & torch.tensor(r in regions, device=dev) for r in REGIONS}
        if not any(bool(c.any()) for c in coins.values()):
            return batch
        # Arena and background: two colours (the second a shade of the first) and a pattern each, shared
        # by the sample's cameras and history frames.
        kinds = torch.tensor([TEXTURES.index(t) for t in self.config.textures], device=dev)
        surfaces = {}
        for region in ("arena", "background"):
            pick = (draw(b) * len(kinds)).long().clamp(max=len(kinds) - 1)
            hsv, shade = random_hsv(draw(b, 3)), draw(b, 2)
            second = torch.stack([(hsv[:, 0] + 0.1 * (shade[:, 0] - 0.5)) % 1.0, hsv[:, 1],
                                  hsv[:, 2] * (0.35 + 0.5 * shade[:, 1])], -1)
            surfaces[region] = (hsv_to_rgb(hsv), hsv_to_rgb(second), kinds[pick], draw(b, 4), draw(b, 1, 5, 5))
        # Objects: a colour per (sample, label), the target one per sample (saturated: it is a toy).
        label_colours = hsv_to_rgb(random_hsv(draw(b, NUM_LABELS, 3)))
        u = draw(b, 3)
        target_colour = hsv_to_rgb(torch.stack([u[:, 0], 0.5 + 0.5 * u[:, 1], 0.5 + 0.5 * u[:, 2]], -1))
        # Samples whose instruction names the target's colour: the palette, and the word rewritten.
        tasks = batch.get("task")
        words = [colour_word(task) for task in tasks] if tasks is not None and self._objects() else [None] * b
        named = torch.tensor([w is not None for w in words], device=dev)
        word = torch.tensor([_PALETTE.index(w) if w else 0 for w in words], device=dev)
        k = len(_PALETTE) - 1
        other = (draw(b) * k).long().clamp(max=k - 1)
        other = other + (other >= word).long()  # any palette colour but the named one
        recoloured = named & coins["target"]
        name = torch.where(recoloured, other, word)  # the target's colour name after the augmentation
        shade = 0.75 + 0.25 * draw(b, NUM_LABELS + 1)  # palette albedo to rendered brightness
        palette = torch.tensor([COLOURS[c][:3] for c in _PALETTE], device=dev)
        target_colour = torch.where(recoloured[:, None], palette[name] * shade[:, -1:], target_colour)
        pick = (draw(b, NUM_LABELS) * k).long().clamp(max=k - 1)
        pick = pick + (pick >= name[:, None]).long()  # distractors avoid the target's colour
        label_colours = torch.where(named[:, None, None], palette[pick] * shade[:, :-1, None], label_colours)
        # a named target recoloured: its distractors are recoloured too, or one may carry the new name
        coins["distractors"] = coins["distractors"] | recoloured
        if tasks is not None and bool(recoloured.any()):
            batch["task"] = [_COLOUR_WORD.sub(_PALETTE[int(n)], task) if bool(r) else task
                             for task, n, r in zip(tasks, name, recoloured)]
        for cam in cams:
            batch[IMAGES + cam] = self._recolour(batch, cam, coins, surfaces, label_colours, target_colour)
        batch[TARGET_KEY] = coins["target"].clone()
        return batch

    def _recolour(self, batch, cam, coins, surfaces, label_colours, target_colour) -> torch.Tensor:
        """One camera: every pixel's key (its label, or TARGET_SLOT under the target's mask) looks up its
        sample's new albedo, texture contrast and whether its region changes, in one gather."""
        images = batch[IMAGES + cam]
        x = images if images.dim() == 5 else images.unsqueeze(1)  # [B, T, 3, H, W]
        labels = batch[require(batch, NAME, "segmentation", cam)]
        labels = (labels if labels.dim() == 4 else labels.unsqueeze(1)).to(x.device).long()  # [B, T, H, W]
        b, t, _, h, w = x.shape
        if labels.shape != (b, t, h, w):
            raise ValueError(f"augmentation '{NAME}': '{SEGMENTATION}{cam}' has shape {tuple(labels.shape)}, the images "
                             f"{tuple(x.shape)}; ask the sampler for both at the same time offsets")
        keys = labels
        if self._objects():
            mask = target_mask(batch, NAME, cam)
            target = (mask if mask.dim() == 4 else mask.unsqueeze(1)).to(x.device).bool() & (labels >= FIRST_OBJECT_LABEL)
            keys = torch.where(target, TARGET_SLOT, labels)
        # per sample and key: albedo (first colour), second colour minus first (textures), change or not
        table = torch.zeros(b, NUM_KEYS, 7, dtype=x.dtype, device=x.device)
        table[:, :NUM_LABELS, :3] = label_colours.to(x.dtype)
        table[:, TARGET_SLOT, :3] = target_colour.to(x.dtype)
        for region, label in (("background", LABEL_BACKGROUND), ("arena", LABEL_ARENA)):
            first, second = surfaces[region][:2]
            table[:, label, :3], table[:, label, 3:6] = first.to(x.dtype), (second - first).to(x.dtype)
        table[:, LABEL_BACKGROUND, 6] = coins["background"].to(x.dtype)
        table[:, LABEL_ARENA, 6] = coins["arena"].to(x.dtype)
        table[:, LABEL_ROBOT, 6] = coins["robot"].to(x.dtype)
        table[:, FIRST_OBJECT_LABEL:NUM_LABELS, 6] = coins["distractors"].to(x.dtype)[:, None]
        table[:, TARGET_SLOT, 6] = coins["target"].to(x.dtype)
        # gathered channel-first, [B, T, 7, H, W] contiguous like the images (mixed layouts cost 2x)
        looked = torch.gather(table.transpose(1, 2).unsqueeze(1).expand(b, t, 7, NUM_KEYS), 3,
                              keys.view(b, t, 1, h * w).expand(b, t, 7, h * w)).view(b, t, 7, h, w)
        # the surfaces' patterns, each where its label is (and multiplied by a zero contrast elsewhere)
        pattern = torch.zeros(b, t, 1, h, w, dtype=x.dtype, device=x.device)
        for region, label in (("background", LABEL_BACKGROUND), ("arena", LABEL_ARENA)):
            kind, draws, noise = surfaces[region][2:]
            on = (labels == label).unsqueeze(2)
            pattern += patterns(draws, kind, noise, h, w).to(x.dtype).unsqueeze(1) * on
        new = looked[:, :, :3] + looked[:, :, 3:6] * pattern
        if self.config.keep_shading:
            luma = (x * torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 1, 3, 1, 1)).sum(2)  # [B, T, H, W]
            new = new * (luma / self._key_means(luma, keys)).unsqueeze(2)
        out = torch.where(looked[:, :, 6:7] > 0, new.clamp_(0, 1), x)
        return out if images.dim() == 5 else out.squeeze(1)

    @staticmethod
    def _key_means(luma: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Each pixel's region mean luminance over its frame: per label, the target's pixels apart."""
        b, t, h, w = keys.shape
        flat = keys.reshape(b * t, h * w)
        sums = torch.zeros(b * t, NUM_KEYS, dtype=luma.dtype, device=luma.device)
        counts = torch.zeros_like(sums)
        sums.scatter_add_(1, flat, luma.reshape(b * t, h * w))
        counts.scatter_add_(1, flat, torch.ones_like(luma).view(b * t, h * w))
        means = (sums / counts.clamp(min=1)).clamp(min=1e-3)
        return means.gather(1, flat).view(b, t, h, w)
