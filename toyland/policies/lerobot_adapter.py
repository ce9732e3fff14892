"""lerobot's own policies behind toyland's policy API, with no change to lerobot.

Registered as ``lerobot_<type>`` (``lerobot_diffusion``, ``lerobot_act``; other lerobot types,
VLAs included, through ``lerobot`` with ``lerobot_type`` and a local ``pretrained_path``). lerobot
policies expect normalized inputs (its processors do that); here the adapter normalizes state,
action and images with the dataset statistics, kept as buffers so they travel with the checkpoint.
Observation and action windows come from lerobot's own config (its delta indices).

A lerobot diffusion chunk spans lerobot's action window, which starts ``n_obs_steps - 1`` steps in
the past; ``predict_action_chunk`` returns its part from the current observation on,
``horizon - n_obs_steps + 1`` actions (lerobot's own ``generate_actions`` would cut it further to
lerobot's ``n_action_steps``; toyland's ``select_action`` decides how many to execute).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from toyland.policies.base import Policy, PolicyConfig
from toyland.policies.features import ACTION, STATE, PolicyFeatures
from toyland.policies.registry import POLICIES

# lerobot defaults that would download weights or not fit a CPU, and the backbone layout of lerobot 0.4
# (group norm, one encoder for all cameras), whose defaults 0.5 changed: checkpoints made before load
# into the same modules; a user's overrides win
CPU_DEFAULTS = {
    "diffusion": {"pretrained_backbone_weights": None, "down_dims": (64, 128, 256), "num_inference_steps": 10,
                  "use_group_norm": True, "use_separate_rgb_encoder_per_camera": False},
    "act": {"pretrained_backbone_weights": None, "dim_model": 256, "dim_feedforward": 1024, "n_encoder_layers": 2},
}


@dataclass
class LeRobotConfig(PolicyConfig):
    lerobot_type: str = ""  # lerobot's policy type (``--policy.type``)
    overrides: dict = field(default_factory=dict)  # fields of lerobot's config class
    pretrained_path: str | None = None  # a local folder saved by lerobot's save_pretrained


class LeRobotPolicy(Policy):
    name = "lerobot"
    config_class = LeRobotConfig
    lerobot_type: ClassVar[str] = ""

    def __init__(self, config: LeRobotConfig, features: PolicyFeatures, stats: dict | None):
        super().__init__(config, features, stats)
        from lerobot.configs.types import FeatureType, PolicyFeature
        from lerobot.policies.factory import get_policy_class, make_policy_config

        kind = self.lerobot_type or config.lerobot_type
        if not kind:
            raise ValueError("policy 'lerobot' needs `lerobot_type` (e.g. diffusion, act, smolvla, pi0)")
        self.kind = kind
        inputs = {k: PolicyFeature(FeatureType.VISUAL, tuple(shape)) for k, shape in features.cameras.items()}
        inputs[STATE] = PolicyFeature(FeatureType.STATE, (features.state_dim,))
        outputs = {ACTION: PolicyFeature(FeatureType.ACTION, (features.action_dim,))}
        if config.pretrained_path:
            self.inner = get_policy_class(kind).from_pretrained(config.pretrained_path)
        else:
            options = {**CPU_DEFAULTS.get(kind, {}), **self._window_options(kind, config, features), **config.overrides}
            lr_config = make_policy_config(kind, device="cpu", input_features=inputs, output_features=outputs, **options)
            self.inner = get_policy_class(kind)(lr_config)
        if config.n_action_steps > self.chunk_length:
            raise ValueError(
                f"policy '{self.name}': n_action_steps={config.n_action_steps} exceeds the {self.chunk_length} actions "
                f"a lerobot {kind} chunk holds from the current step; lower n_action_steps or raise horizon"
                + (" (a diffusion chunk holds horizon - n_obs_steps + 1)" if kind == "diffusion" else "")
            )
        for key, (c, _, _) in features.cameras.items():
            mean, std = torch.zeros(c, 1, 1), torch.ones(c, 1, 1)
            if stats is not None:
                if key not in stats:
                    raise ValueError(f"no normalization statistics for '{key}' in the dataset's meta/stats.json")
                mean = torch.as_tensor(stats[key]["mean"]).float().reshape(c, 1, 1)
                std = torch.as_tensor(stats[key]["std"]).float().reshape(c, 1, 1).clamp(min=1e-6)
            self.register_buffer(self._buf(key, "mean"), mean)
            self.register_buffer(self._buf(key, "std"), std)

    @staticmethod
    def _buf(key: str, what: str) -> str:
        return f"{key.replace('.', '_')}_{what}"

    @staticmethod
    def _window_options(kind: str, config: LeRobotConfig, features: PolicyFeatures) -> dict:
        """Map toyland's window fields onto lerobot's names for the types that have them."""
        if kind == "diffusion":
            h = min(shape[1] for shape in features.cameras.values())
            w = min(shape[2] for shape in features.cameras.values())
            crop = (int(h * 0.9), int(w * 0.9))
            return {"n_obs_steps": config.n_obs_steps, "horizon": config.horizon,
                    "n_action_steps": config.n_action_steps, "crop_shape": crop}
        if kind == "act":
            return {"n_obs_steps": 1, "chunk_size": config.horizon, "n_action_steps": config.n_action_steps}
        return {}

    def delta_timestamps(self) -> dict[str, list[float]]:
        fps, cfg = self.features.fps, self.inner.config
        obs = [i / fps for i in (cfg.observation_delta_indices or [0])]
        deltas = {key: obs for key in self.features.cameras}
        deltas[STATE] = obs
        deltas[ACTION] = [i / fps for i in (cfg.action_delta_indices or [0])]
        return deltas

    @property
    def chunk_length(self) -> int:
        """Actions ``predict_action_chunk`` returns, from the current step on."""
        actions = self.inner.config.action_delta_indices or [0]
        return sum(1 for i in actions if i >= 0)

    @property
    def _history(self) -> int:
        return len(self.inner.config.observation_delta_indices or [0])

    def _inputs(self, batch: dict) -> dict:
        """toyland batch ([B, T, ...], images in [0, 1]) -> lerobot's normalized inputs."""
        out = {}
        squeeze = self.inner.config.observation_delta_indices is None  # lerobot takes [B, ...] then
        for key in self.features.cameras:
            x = (batch[key] - getattr(self, self._buf(key, "mean"))) / getattr(self, self._buf(key, "std"))
            out[key] = x[:, -1] if squeeze else x[:, -self._history :]
        state = self.normalizer.normalize(STATE, batch[STATE])
        out[STATE] = state[:, -1] if squeeze else state[:, -self._history :]
        return out

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        inputs = self._inputs(batch)
        inputs[ACTION] = self.normalizer.normalize(ACTION, batch[ACTION])
        inputs[f"{ACTION}_is_pad"] = batch[f"{ACTION}_is_pad"]
        loss, info = self.inner.forward(inputs)
        return loss, {k: float(v) for k, v in (info or {}).items() if isinstance(v, (int, float))}

    @property
    def batchable(self) -> bool:
        # lerobot's diffusion is sampled row by row from each episode's stream, and ACT acts without
        # sampling; other lerobot policies draw from the global generator, shared by a batch
        return self.kind in ("diffusion", "act")

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """[B, chunk_length, A] from the current step on."""
        inputs = self._inputs(batch)
        if self.kind == "diffusion":
            chunk = self._sample_diffusion(inputs, generator)
        else:
            chunk = self.inner.predict_action_chunk(inputs)
        return self.normalizer.unnormalize(ACTION, chunk)

    def _sample_diffusion(self, inputs: dict, generator: torch.Generator | None) -> torch.Tensor:
        # lerobot's select_action reads its own observation queues and its generate_actions keeps only
        # lerobot's n_action_steps; sample the whole window (lerobot 0.4's DiffusionModel) and drop its past
        from lerobot.utils.constants import OBS_IMAGES

        inputs[OBS_IMAGES] = torch.stack([inputs[k] for k in self.features.cameras], dim=-4)
        model = self.inner.diffusion
        cond = model._prepare_global_conditioning(inputs)
        if isinstance(generator, (list, tuple)):  # lerobot draws a batch's noise at once: one row at a time
            window = torch.cat([model.conditional_sample(1, global_cond=cond[i : i + 1], generator=g)
                                for i, g in enumerate(generator)])
        else:
            window = model.conditional_sample(cond.shape[0], global_cond=cond, generator=generator)
        past = sum(1 for i in self.inner.config.action_delta_indices if i < 0)
        return window[:, past:]


def _adapter(kind: str):
    cls = type(f"LeRobot{kind.title()}Policy", (LeRobotPolicy,), {"name": f"lerobot_{kind}", "lerobot_type": kind})
    POLICIES.register(f"lerobot_{kind}")(cls)
    return cls


POLICIES.register("lerobot")(LeRobotPolicy)
LeRobotDiffusionPolicy = _adapter("diffusion")
LeRobotActPolicy = _adapter("act")
__all__ = ["LeRobotPolicy", "LeRobotDiffusionPolicy", "LeRobotActPolicy"]
