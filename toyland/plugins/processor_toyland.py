"""The processors of toyland's lerobot policy types: batch and device only. A toyland policy takes
images in [0, 1] and normalizes state and action itself with the statistics it carries, so lerobot's
normalizer steps would apply them twice."""

from __future__ import annotations

from lerobot.processor.factory import make_default_policy_processor_steps, make_policy_processor_pipelines


def processors(config, dataset_stats=None):
    steps = make_default_policy_processor_steps(config, dataset_stats)
    return make_policy_processor_pipelines(input_steps=[steps.rename_observations, steps.add_batch_dim, steps.to_device],
                                           output_steps=[steps.to_cpu])


def make_toyland_diffusion_pre_post_processors(config, dataset_stats=None):
    return processors(config, dataset_stats)


def make_toyland_vla_pre_post_processors(config, dataset_stats=None):
    return processors(config, dataset_stats)
