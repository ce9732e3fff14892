"""toyland's policies behind lerobot's ``PreTrainedPolicy``: the same modules, weights and sampling as
``toyland train`` builds, trained by ``lerobot-train`` and run by ``lerobot-eval`` and ``lerobot-rollout``.

lerobot hands a training batch in the layout toyland's trainer makes ([B, T, ...] observation windows,
images in [0, 1], [B, H, A] action chunks, ``task`` strings), so ``forward`` passes it through. When
acting, lerobot gives one frame ([B, ...]); the toyland policy keeps each env's history and action
queue as it does in toyland's runner.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from lerobot.policies.pretrained import PreTrainedPolicy

from toyland.plugins.configuration_toyland import ToylandDiffusionConfig, ToylandPolicyConfig, ToylandVlaConfig
from toyland.policies.base import TEXT_KEYS
from toyland.policies.features import (ACTION, CAMERA_INPUTS, DEPTH, IMAGE_PREFIX, MASK, STATE, FeatureMismatch,
                                       PolicyFeatures)


def toyland_features(config: ToylandPolicyConfig) -> PolicyFeatures:
    """The toyland feature contract of a lerobot config's input and output features."""
    toyland = config.toyland_config()
    inputs = config.input_features or {}
    keys = ([IMAGE_PREFIX + c for c in toyland.cameras] if toyland.cameras
            else sorted(k for k in inputs if k.startswith(IMAGE_PREFIX)))
    cameras = {k: tuple(inputs[k].shape) for k in keys}
    wanted = {MASK: toyland.needs_masks, DEPTH: toyland.needs_depth}
    extras = {e.field: {e.key(k): tuple(inputs[e.key(k)].shape[:2]) for k in keys} if wanted[e] else {}
              for e in CAMERA_INPUTS}
    return PolicyFeatures(cameras=cameras, state_dim=int(inputs[STATE].shape[0]),
                          action_dim=int(config.output_features[ACTION].shape[0]), fps=int(config.fps), **extras)


def dataset_actions(meta) -> np.ndarray:
    """Every frame's action of a LeRobotDataset (its metadata object), [N, A], read from its parquet files."""
    import pyarrow.parquet as pq

    files = sorted(Path(meta.root, "data").rglob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no parquet files under {meta.root}/data to fit the action bins on")
    return np.concatenate([np.stack(pq.read_table(f, columns=[ACTION]).column(ACTION).to_pylist()) for f in files])


class _Actions:
    """What a toyland policy's ``fit`` reads from its sampler, from a lerobot dataset."""

    def __init__(self, meta):
        self.meta = meta

    def values(self, key: str) -> np.ndarray:
        if key != ACTION:
            raise KeyError(f"a lerobot-trained toyland policy can only fit on '{ACTION}', not '{key}'")
        return dataset_actions(self.meta)


class ToylandPolicyBase(PreTrainedPolicy):
    """A toyland policy (``self.inner``) under lerobot's policy API."""

    config_class = ToylandPolicyConfig  # (lerobot requires both on every subclass; the types set their own)
    name = "toyland"

    def __init__(self, config: ToylandPolicyConfig, dataset_stats: dict | None = None, dataset_meta=None, **_):
        super().__init__(config)
        if dataset_meta is not None:
            config.fps = int(dataset_meta.fps)
            config.robot_type = config.robot_type or dataset_meta.robot_type
        config.validate_features()
        from toyland.policies.registry import POLICIES

        toyland = config.toyland_config()
        features = toyland_features(config)
        self.inner = POLICIES.get(config.toyland_name)(toyland, features, _numpy_stats(dataset_stats))
        if dataset_meta is not None:  # e.g. the VLA's action bins; a no-op for most policies
            self.inner.fit(_Actions(dataset_meta))

    def get_optim_params(self) -> list:
        return [p for p in self.parameters() if p.requires_grad]

    def reset(self) -> None:
        self.inner.reset()

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        loss, info = self.inner(self._with_robot(batch, len(batch[ACTION])))
        return loss, dict(info)

    def _with_robot(self, batch: dict, size: int) -> dict:
        """The embodiment acting, for a policy told it: lerobot's batches do not name it."""
        if not getattr(self.inner.config, "embodiments", ()) or "robot_type" in batch:
            return batch
        if self.config.robot_type is None:
            raise FeatureMismatch(f"this policy is told the embodiment acting ({list(self.inner.config.embodiments)}): "
                                  "set --policy.robot_type to the robot it runs as")
        return {**batch, "robot_type": [self.config.robot_type] * size}

    def _frame(self, batch: dict) -> dict:
        """A lerobot inference batch ([B, ...] per key) -> the frame toyland's ``act`` takes."""
        features = self.inner.features
        keys = [*features.cameras, *features.masks, *features.depths, STATE]
        missing = [k for k in keys if k not in batch]
        if missing:
            raise FeatureMismatch(f"the observation lacks {missing}, which this policy takes (it has "
                                  f"{sorted(k for k in batch if k != 'task')}); map names with lerobot's --rename_map")
        frame, problems = {}, []
        for key in keys:
            x = batch[key]
            if key in features.depths or key in features.masks:
                if x.ndim == 4 and x.shape[-1] == 1:  # an env's [B, H, W, 1] depth
                    x = x[..., 0]
                elif x.ndim == 4 and x.shape[1] == 1:  # a one-channel camera image [B, 1, H, W] (a detector's mask)
                    x = x[:, 0]
                if key in features.masks and self.inner.config.reads_object_masks and x.is_floating_point() \
                        and bool((x != x.round()).any()):
                    x = (x * 255).round()  # object ids that lerobot scaled as image values (id / 255)
            frame[key] = x.to(self.inner.device).float()
            wanted = (features.cameras.get(key) or features.depths.get(key) or features.masks.get(key)
                      or (features.state_dim,))
            if tuple(x.shape[1:]) != tuple(wanted):
                problems.append(f"'{key}' is {tuple(x.shape[1:])}, the policy takes {tuple(wanted)}")
        if problems:
            raise FeatureMismatch("the observation does not fit this policy: " + "; ".join(problems))
        size = frame[STATE].shape[0]
        task = batch.get("task", "")
        frame["task"] = [task] * size if isinstance(task, str) else list(task)
        return self._with_robot(frame, size)

    @torch.no_grad()
    def select_action(self, batch: dict, **_) -> torch.Tensor:
        return torch.from_numpy(self.inner.act(self._frame(batch))).float()

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict, **_) -> torch.Tensor:
        """The whole chunk [B, H, A] from this frame alone (its history is the frame repeated, as at an
        episode start): for lerobot's chunk-wise inference (RTC), which keeps no history of its own."""
        frame = self._frame(batch)
        n = self.inner.config.n_obs_steps
        history = {k: v[:, None].expand(-1, n, *v.shape[1:]) for k, v in frame.items() if k not in TEXT_KEYS}
        history.update({k: frame[k] for k in TEXT_KEYS if k in frame})
        return self.inner.predict_action_chunk(history)


def _numpy_stats(stats: dict | None) -> dict | None:
    if stats is None:
        return None
    return {k: {s: np.asarray(v.cpu() if hasattr(v, "cpu") else v) for s, v in d.items()} for k, d in stats.items()}


class ToylandDiffusionPolicy(ToylandPolicyBase):
    config_class = ToylandDiffusionConfig
    name = "toyland_diffusion"


class ToylandVlaPolicy(ToylandPolicyBase):
    config_class = ToylandVlaConfig
    name = "toyland_vla"


__all__ = ["ToylandDiffusionPolicy", "ToylandVlaPolicy", "toyland_features"]
