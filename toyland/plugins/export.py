"""``toyland export CHECKPOINT DST``: a toyland checkpoint as a lerobot pretrained policy folder.

The folder is what ``lerobot-train`` saves for ``--policy.type=toyland_diffusion`` (or ``toyland_vla``):
``config.json``, ``model.safetensors`` and the two processor pipelines, so that
``lerobot-eval --policy.path=DST`` and ``lerobot-rollout --policy.path=DST`` run a policy trained by
``toyland train`` (EMA weights by default, the recipe toyland measures) with no further step. The
weights are the same tensors, under the ``inner.`` prefix of the lerobot wrapper.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from toyland.policies.features import ACTION, STATE, PolicyFeatures


def lerobot_features(features: PolicyFeatures) -> tuple[dict, dict]:
    """(input_features, output_features) of lerobot for a toyland feature contract."""
    from lerobot.configs import FeatureType, PolicyFeature

    inputs = {k: PolicyFeature(FeatureType.VISUAL, tuple(shape)) for k, shape in features.cameras.items()}
    for key, hw in {**features.depths, **features.masks}.items():  # lerobot types every other observation as state
        inputs[key] = PolicyFeature(FeatureType.STATE, tuple(hw))
    inputs[STATE] = PolicyFeature(FeatureType.STATE, (features.state_dim,))
    return inputs, {ACTION: PolicyFeature(FeatureType.ACTION, (features.action_dim,))}


def export_checkpoint(src: str | Path, dst: str | Path, weights: str = "ema", robot_type: str | None = None) -> Path:
    """Writes the lerobot folder of the checkpoint (or training run) ``src`` to ``dst``; returns ``dst``.
    ``robot_type``: the embodiment the exported policy acts as, for a policy told it (``embodiments``)."""
    from lerobot.configs.policies import PreTrainedConfig

    from toyland.eval.actors import resolve_checkpoint
    from toyland.plugins.configuration_toyland import LEROBOT_TYPES
    from lerobot.policies.factory import get_policy_class

    from toyland.plugins.processor_toyland import processors
    from toyland.policies.checkpoint import load_policy

    folder, weights = resolve_checkpoint(src, weights)
    policy = load_policy(folder, weights=weights)
    if policy.name not in LEROBOT_TYPES:
        raise ValueError(f"policy '{policy.name}' has no lerobot policy type; exportable: {sorted(LEROBOT_TYPES)}")
    if policy.uses_instruction_picture:
        raise ValueError("this policy reads a picture of the target in its instructions, which lerobot's plugin does not "
                         "carry: evaluate it with `toyland eval`, or train on data collected with env.instruction=text")
    embodiments = tuple(getattr(policy.config, "embodiments", ()) or ())
    if robot_type is not None and robot_type not in embodiments:
        raise ValueError(f"robot_type={robot_type!r}: this policy acts as {list(embodiments) or 'no named embodiment'}")
    inputs, outputs = lerobot_features(policy.features)
    options = {f.name: getattr(policy.config, f.name) for f in dataclasses.fields(policy.config)}
    config = PreTrainedConfig.get_choice_class(LEROBOT_TYPES[policy.name])(
        device="cpu", input_features=inputs, output_features=outputs, fps=policy.features.fps, robot_type=robot_type,
        **options)
    wrapper = get_policy_class(config.type)(config)
    wrapper.inner.load_state_dict(policy.state_dict())
    dst = Path(dst)
    wrapper.save_pretrained(dst)
    pre, post = processors(config)
    pre.save_pretrained(dst)
    post.save_pretrained(dst)
    return dst

