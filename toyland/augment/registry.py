"""The registry of train-time augmentations and the composed list a training config asks for.

``build_augmentations(["colour_jitter", {"name": "viewpoint_warp", "max_yaw_deg": 10}])`` gives an
``Augmentations`` callable with the ``BatchSampler`` transform signature ``(batch, generator) ->
batch``; the sampler seeds the generator from ``(seed, step)``, so augmented batches are a function of
the run's seed and step like the batches themselves.
"""

from __future__ import annotations

import torch

from toyland.augment.base import Augmentation, parse_config
from toyland.registry import Registry

AUGMENTATIONS: Registry[type[Augmentation]] = Registry("augmentation")
AUGMENTATIONS.register_lazy("colour_jitter", "toyland.augment.colour")
AUGMENTATIONS.register_lazy("segment_recolour", "toyland.augment.segmentation")
AUGMENTATIONS.register_lazy("viewpoint_warp", "toyland.augment.viewpoint")
AUGMENTATIONS.register_lazy("mask_noise", "toyland.augment.mask_noise")


class Augmentations:
    """Augmentations applied in order. Every one checks the batch before any of them changes it, so a
    missing input fails before the first step does any work."""

    def __init__(self, augmentations: list[Augmentation]):
        self.augmentations = list(augmentations)

    def check(self, batch: dict) -> None:
        for augmentation in self.augmentations:
            augmentation.check(batch)

    def batch_keys(self, cameras: list[str]) -> list[str]:
        """Batch keys the augmentations need for ``cameras``, to add to the sampler's keys."""
        return sorted({k for a in self.augmentations for k in a.batch_keys(cameras)})

    def __call__(self, batch: dict, generator: torch.Generator) -> dict:
        self.check(batch)
        for augmentation in self.augmentations:
            batch = augmentation.apply(dict(batch), generator)
        return batch

    def __len__(self) -> int:
        return len(self.augmentations)

    def __repr__(self) -> str:
        return f"Augmentations({self.augmentations})"


def build_augmentation(entry) -> Augmentation:
    """One augmentation from ``"name"`` or ``{"name": ..., <config fields>}``."""
    if isinstance(entry, str):
        name, fields = entry, {}
    elif isinstance(entry, dict) or hasattr(entry, "items"):
        fields = dict(entry)
        if "name" not in fields:
            raise ValueError(f"augmentation entry {fields} has no 'name'; valid names: {', '.join(AUGMENTATIONS.names())}")
        name = fields.pop("name")
    else:
        raise ValueError(f"augmentation entry {entry!r} must be a name or a dict with a 'name'")
    try:
        cls = AUGMENTATIONS.get(str(name))
    except KeyError as err:
        raise ValueError(err.args[0]) from None
    return cls(parse_config(cls.Config, fields, f"augmentation '{name}'"))


def build_augmentations(cfg_list) -> Augmentations:
    if cfg_list is None:
        return Augmentations([])
    if isinstance(cfg_list, (str, dict)) or hasattr(cfg_list, "items"):
        cfg_list = [cfg_list]
    augmentations = [build_augmentation(entry) for entry in cfg_list]
    names = [a.name for a in augmentations]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"augmentations {twice} listed twice in {names}; list each once")
    return Augmentations(augmentations)
