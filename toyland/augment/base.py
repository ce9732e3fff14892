"""What every augmentation shares: the inputs it may need, how it finds them in a batch, and its
typed config read from a config entry with unknown keys named.

A batch is the ``BatchSampler``'s (toyland/data/batches.py): ``observation.images.<cam>`` float
``[B, T, 3, H, W]`` in [0, 1] (``[B, 3, H, W]`` is accepted too), ``observation.depth.<cam>`` float
metres ``[B, T, H, W]``, ``observation.segmentation.<cam>`` and ``observation.masks.<cam>`` uint8
``[B, T, H, W]``; optional camera geometry ``camera.intrinsics.<cam>`` and ``camera.pose.<cam>``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch

from toyland.config_keys import reject_unknown_keys

IMAGES = "observation.images."


@dataclass(frozen=True)
class Input:
    key: str  # batch key, ``{cam}`` the camera's name
    how: str  # how to get it into a batch, ``{cam}`` the camera's name


# What an augmentation can declare in ``needs``, and the fix when a batch lacks it.
INPUTS = {
    "rgb": Input("observation.images.{cam}", "collect with env.cameras=[{cam}:rgb]"),
    "depth": Input("observation.depth.{cam}", "collect with env.cameras=[{cam}:rgb+depth]"),
    "segmentation": Input("observation.segmentation.{cam}", "collect with env.cameras=[{cam}:rgb+segmentation]"),
    "masks": Input("observation.masks.{cam}", "collect with env.cameras=[{cam}:rgb+mask]"),
    "intrinsics": Input("camera.intrinsics.{cam}", "recollect the dataset with a toyland that records camera "
                        "geometry (every collection since issue 25 does), or give the augmentation's fovy_deg"),
    "pose": Input("camera.pose.{cam}", "recollect the dataset with a toyland that records camera geometry (every "
                  "collection since issue 25 does)"),
}


class MissingInputError(ValueError):
    """A batch lacks what an augmentation needs; raised before the augmentation changes anything."""


SAMPLER_SUFFIXES = ("_is_pad", "_present", "_dim_mask")  # the sampler's per-key flags, not images


def image_cameras(batch: dict, prefix: str = IMAGES) -> list[str]:
    """The cameras a batch has ``prefix`` tensors of (images by default; e.g. masks)."""
    return sorted(k[len(prefix):] for k in batch
                  if k.startswith(prefix) and not k.endswith(SAMPLER_SUFFIXES) and torch.is_tensor(batch[k]))


def require(batch: dict, augmentation: str, need: str, cam: str) -> str:
    """The batch key of ``need`` for ``cam``; raises saying how to collect it when the batch lacks it
    (or some of its samples come from a source without it)."""
    spec = INPUTS[need]
    key = spec.key.format(cam=cam)
    fix = spec.how.format(cam=cam)
    if key not in batch:
        raise MissingInputError(
            f"augmentation '{augmentation}' needs {need} of camera '{cam}' but the batch has no '{key}': {fix}, "
            f"and ask the sampler for '{key}' (Augmentations.batch_keys lists what to load)")
    present = batch.get(f"{key}_present")
    if present is not None and not bool(torch.as_tensor(present).all()):
        raise MissingInputError(
            f"augmentation '{augmentation}' needs {need} of camera '{cam}' but some samples come from a source "
            f"without '{key}': {fix} for every source, or leave this augmentation out of the mixture")
    return key


def target_mask(batch: dict, augmentation: str, cam: str) -> torch.Tensor:
    """``cam``'s target masks from the batch; raises when they are object-id maps (env masks=objects),
    which say nothing of which object is the target."""
    mask = batch[require(batch, augmentation, "masks", cam)]
    if mask.numel() and int(mask.amax()) > 1:
        raise ValueError(f"augmentation '{augmentation}' reads the target's mask, and camera '{cam}' has object-id "
                         f"maps (ids up to {int(mask.amax())}: data collected with env masks=objects); collect with "
                         "masks=target or leave this augmentation out")
    return mask


def parse_config(config_cls: type, entry: dict, where: str):
    """A frozen config dataclass from a config dict: unknown keys named, lists made tuples."""
    fields = {f.name for f in dataclasses.fields(config_cls)}
    reject_unknown_keys(entry, fields, where)
    values = {k: tuple(v) if isinstance(v, list) or type(v).__name__ == "ListConfig" else v for k, v in entry.items()}
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from err


def check_number(where: str, name: str, value, low: float = 0.0, high: float = float("inf")) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"{where}.{name}={value!r}: give a number in [{low}, {high}]")


class Augmentation(ABC):
    """One train-time augmentation: ``__call__(batch, generator) -> batch`` on the batch's device.

    Subclasses set ``name`` and ``Config`` (a frozen dataclass with a ``strength`` field: 0 makes the
    augmentation the identity), say what they ``need`` and which ``cameras`` of a batch they act on,
    and implement ``apply``. The input batch is never modified; a new dict is returned."""

    name: ClassVar[str] = ""
    Config: ClassVar[type]

    def __init__(self, config=None):
        self.config = config if config is not None else self.Config()

    @property
    @abstractmethod
    def needs(self) -> frozenset[str]:
        """Inputs (keys of ``INPUTS``) required for every camera the augmentation acts on."""

    @abstractmethod
    def cameras(self, batch: dict) -> list[str]:
        """The cameras of ``batch`` it acts on."""

    def batch_keys(self, cameras: list[str]) -> list[str]:
        """The batch keys to load for ``cameras`` (the trainer adds them to the sampler's keys)."""
        return [INPUTS[n].key.format(cam=c) for c in cameras for n in sorted(self.needs)]

    def check(self, batch: dict) -> None:
        """Raises MissingInputError (or ValueError) when the batch cannot be augmented; changes nothing."""
        for cam in self.cameras(batch):
            for need in sorted(self.needs):
                require(batch, self.name, need, cam)

    def __call__(self, batch: dict, generator: torch.Generator) -> dict:
        self.check(batch)
        return self.apply(dict(batch), generator)

    @abstractmethod
    def apply(self, batch: dict, generator: torch.Generator) -> dict:
        """The augmentation on a copy of a batch that passed ``check``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"
