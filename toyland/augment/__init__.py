"""Train-time augmentations: a registry of batched, seeded torch transforms applied to training
batches through the ``BatchSampler`` transform hook (docs/augment.md)."""

from toyland.augment.base import INPUTS, Augmentation, MissingInputError
from toyland.augment.registry import AUGMENTATIONS, Augmentations, build_augmentation, build_augmentations

__all__ = ["AUGMENTATIONS", "INPUTS", "Augmentation", "Augmentations", "MissingInputError", "build_augmentation",
           "build_augmentations"]
