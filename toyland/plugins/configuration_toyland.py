"""toyland's policies as lerobot policy types: ``--policy.type=toyland_diffusion`` and ``toyland_vla``.

Each lerobot config class is made from the toyland policy's own config dataclass, so every toyland
option is a lerobot flag of the same name (``--policy.depth=true --policy.horizon=16``) and a new
toyland option needs no change here. lerobot finds the policy and its processors by the module names
(``configuration_toyland`` -> ``modeling_toyland``, ``processor_toyland``), so the three live side by side.

The optimizer and schedule are toyland's trainer's (AdamW, linear warmup, cosine decay), under
lerobot's own classes. lerobot's trainer keeps no EMA of the weights, which toyland's does: a policy
trained with ``lerobot-train`` acts with its raw weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from lerobot.configs import FeatureType, NormalizationMode
from lerobot.configs.policies import PreTrainedConfig
from lerobot.optim.optimizers import AdamWConfig
from lerobot.optim.schedulers import DiffuserSchedulerConfig

from toyland.policies.features import DEPTH, IMAGE_PREFIX, INSTRUCTION_PICTURE, MASK, STATE

# PreTrainedConfig's own fields, which a toyland option of the same name must not shadow (n_obs_steps
# is shared on purpose: lerobot's dataset windows read it)
SHARED = {"n_obs_steps"}


@dataclass
class ToylandPolicyConfig(PreTrainedConfig):
    """Fields every toyland policy type adds to lerobot's: the optimizer toyland trains with."""

    fps: int = 20  # the data's frame rate (set from the dataset when trained by lerobot-train)
    optimizer_lr: float = 3.0e-4
    optimizer_betas: tuple[float, float] = (0.95, 0.999)
    optimizer_weight_decay: float = 1.0e-6
    optimizer_grad_clip_norm: float = 10.0
    scheduler_warmup_steps: int = 200
    # the embodiment acting, for a policy told it (`embodiments`): lerobot's batches do not carry it
    robot_type: str | None = None
    # images reach a toyland policy in [0, 1] and state and action are normalized inside it (its
    # statistics are buffers of the checkpoint), so lerobot's processors leave every feature alone
    normalization_mapping: dict[str, NormalizationMode] = field(default_factory=lambda: {
        "VISUAL": NormalizationMode.IDENTITY, "STATE": NormalizationMode.IDENTITY,
        "ACTION": NormalizationMode.IDENTITY})

    toyland_name = ""  # the toyland policy (a class attribute, not a field)

    def toyland_options(self) -> dict:
        """The toyland policy config's fields, as set on this lerobot config."""
        from toyland.policies.registry import POLICIES

        names = [f.name for f in dataclasses.fields(POLICIES.get(self.toyland_name).config_class)]
        return {name: getattr(self, name) for name in names}

    def toyland_config(self):
        from toyland.policies.registry import policy_config

        options = {k: list(v) if isinstance(v, tuple) else v for k, v in self.toyland_options().items()}
        return policy_config({"name": self.toyland_name, **options})[1]

    @property
    def observation_delta_indices(self) -> list[int]:
        return list(range(1 - self.n_obs_steps, 1))

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range(self.toyland_config().horizon))

    @property
    def reward_delta_indices(self) -> None:
        return None

    def get_optimizer_preset(self) -> AdamWConfig:
        return AdamWConfig(lr=self.optimizer_lr, betas=tuple(self.optimizer_betas),
                           weight_decay=self.optimizer_weight_decay, grad_clip_norm=self.optimizer_grad_clip_norm)

    def get_scheduler_preset(self) -> DiffuserSchedulerConfig:
        return DiffuserSchedulerConfig(name="cosine", num_warmup_steps=self.scheduler_warmup_steps)

    def validate_features(self) -> None:
        """The inputs a toyland policy of these options needs: camera images, state, and the depth or
        target mask of every camera it uses where its options take them."""
        config = self.toyland_config()
        inputs = self.input_features or {}
        cameras = [k for k, f in inputs.items() if f.type is FeatureType.VISUAL and k.startswith(IMAGE_PREFIX)]
        if config.cameras:
            cameras = [IMAGE_PREFIX + c for c in config.cameras]
        problems = []
        if not cameras:
            problems.append("no camera image (observation.images.<camera>)")
        if STATE not in inputs:
            problems.append("no observation.state")
        for extra, wanted in ((MASK, config.needs_masks), (DEPTH, config.needs_depth)):
            if wanted:
                problems += [f"no {extra.what} '{extra.key(k)}' (collect with the '{extra.modality}' modality)"
                             for k in cameras if extra.key(k) not in inputs]
        if not self.output_features or "action" not in self.output_features:
            problems.append("no action")
        if INSTRUCTION_PICTURE in inputs or INSTRUCTION_PICTURE in (self.input_features or {}):
            problems.append(f"instructions with a picture of the target ({INSTRUCTION_PICTURE}) are read by toyland's "
                            "own trainer only: train with `toyland train`, or collect with env.instruction=text")
        if problems:
            raise ValueError(f"policy type '{self.type}' cannot be built on these features: " + "; ".join(problems))


def _config_class(lerobot_type: str, toyland_name: str) -> type:
    """A lerobot config class with one field per option of the toyland policy's config dataclass."""
    from toyland.policies.registry import POLICIES

    toyland_cls = POLICIES.get(toyland_name).config_class
    hints = _resolved_hints(toyland_cls)
    own = {f.name for f in dataclasses.fields(PreTrainedConfig)} | {f.name for f in dataclasses.fields(ToylandPolicyConfig)}
    fields = []
    for f in dataclasses.fields(toyland_cls):
        if f.name in own and f.name not in SHARED:
            raise TypeError(f"toyland policy option '{f.name}' clashes with a lerobot config field; rename it")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        fields.append((f.name, hints[f.name], field(default=default)))
    name = "Toyland" + "".join(part.title() for part in toyland_name.split("_")) + "Config"
    cls = dataclasses.make_dataclass(name, fields, bases=(ToylandPolicyConfig,), namespace={"toyland_name": toyland_name})
    cls.__module__ = __name__
    return PreTrainedConfig.register_subclass(lerobot_type)(cls)


def _resolved_hints(cls) -> dict:
    """The field types of a toyland config dataclass, with bare ``tuple`` made ``tuple[<item>, ...]``
    from its default (draccus needs the item type to parse a flag)."""
    import typing

    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        default = f.default
        if hint is tuple and isinstance(default, tuple) and default:
            hint = tuple[type(default[0]), ...]
        elif hint == (tuple | None):
            hint = tuple[str, ...] | None  # camera names
        out[f.name] = hint
    return out


# toyland policy -> its lerobot policy type (each also needs its class in modeling_toyland and its
# processor factory in processor_toyland, which lerobot looks up by these names)
LEROBOT_TYPES = {"diffusion": "toyland_diffusion", "vla": "toyland_vla"}
ToylandDiffusionConfig = _config_class(LEROBOT_TYPES["diffusion"], "diffusion")
ToylandVlaConfig = _config_class(LEROBOT_TYPES["vla"], "vla")
__all__ = ["LEROBOT_TYPES", "ToylandPolicyConfig", "ToylandDiffusionConfig", "ToylandVlaConfig"]
