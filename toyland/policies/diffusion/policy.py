"""Diffusion Policy (Chi et al. 2023), sized for a CPU by default: per-camera conv encoders with
spatial-softmax keypoints, observation history and proprioception (optionally the instruction's
MiniLM embedding) as a global condition, a FiLM 1-D U-Net denoising action chunks, DDPM training
and DDIM sampling with a configurable number of steps. Scale it up by config for a GPU
(``down_dims``, ``channels``, ``keypoints``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn
from torch.nn import functional as F

from toyland.policies.auxiliary import GraspAuxiliary
from toyland.policies.base import Policy, PolicyConfig, check_steps, fit_draws
from toyland.policies.features import ACTION, STATE, PolicyFeatures, batch_depth, batch_mask, check_depth, check_masks
from toyland.policies.registry import POLICIES
from toyland.policies.symmetric_yaw import SymmetricYaw
from toyland.policies.vision import ConvEncoder, use_channels_last, check_colour_jitter, colour_jitter, crop, cropped_size, with_pixel_coords
from toyland.policies.diffusion.unet import ConditionalUnet1d


@dataclass
class DiffusionConfig(PolicyConfig):
    crop: float = 0.9  # random crop of this fraction of each side in training, centre crop when acting
    # two channels holding each pixel's position in the uncropped image, cropped with it: a random
    # crop then still tells the encoder where in the camera's frame it looks, so the augmentation
    # regularizes the features without blurring a fixed camera's absolute positions by the shift
    crop_coords: bool = False
    # training-time photometric jitter per sample: [brightness, contrast, saturation, hue] (vision.colour_jitter)
    colour_jitter: tuple = (0.0, 0.0, 0.0, 0.0)
    # training-time Gaussian noise on the normalized state ([-1, 1] per dimension): the joint angles
    # and tool pose fingerprint a demonstration's trajectory, which a policy can memorize instead of looking
    state_noise: float = 0.0
    channels: tuple = (16, 32, 64)  # image encoder stages (the encoder is most of a CPU step)
    # the encoder's convolution layout: auto | contiguous | channels_last (auto: NHWC for wide encoders, vision.py)
    memory_format: str = "auto"
    pool: str = "flatten"  # flatten | spatial_softmax (see toyland/policies/vision.py)
    keypoints: int = 32  # spatial_softmax only
    image_feature_dim: int = 64
    down_dims: tuple = (32, 64, 128)  # U-Net widths; the horizon must divide by 2 ** (len - 1)
    kernel_size: int = 5
    n_groups: int = 8
    step_embed_dim: int = 64
    language_dim: int = 64  # projection of the 384-d MiniLM sentence embedding
    train_timesteps: int = 100
    inference_steps: int = 10  # DDIM steps when acting
    # start every chunk of an episode from the same noise (drawn at its first chunk): deterministic DDIM
    # is then one map from observation to chunk, so a replan sees nearly the same input and keeps to the
    # same mode (which grasp) instead of redrawing it every n_action_steps
    episode_noise: bool = False
    beta_schedule: str = "squaredcos_cap_v2"
    # "sample": the denoiser predicts the clean chunk; "epsilon": the noise (Chi et al.'s choice).
    # On 100 Lift demos a state-conditioned denoiser reached gripper-action error 0.17 with "sample"
    # and 0.59 with "epsilon" after the same 1500 steps, so the CPU default predicts the sample.
    prediction: str = "sample"
    # predict the chunk's tool position (action x, y, z) relative to the current tool position (state
    # tcp.x, tcp.y, tcp.z; both min-max normalized), rescaled to fill [-1, 1] by a fit on training
    # chunks: where to go from here, the same offset wherever the toy is (UMI's relative trajectories)
    relative_actions: bool = False
    # learn the jaw's yaw as (cos 2 psi, sin 2 psi) and act with the equivalent yaw nearest the tool's
    # (toyland/policies/symmetric_yaw.py): the two ends of rz's range are the same parallel-jaw grasp
    symmetric_yaw: bool = False
    mask_padding: bool = False  # drop chunk steps past the episode end from the loss (else learn to hold)
    # the instructed object's mask as a fourth input channel per camera (object-centric input: the
    # segmentation in sim, a detector on a robot); collect with the cameras' 'mask' modality
    target_mask: bool = False
    # each camera's metric depth as a further input channel (a wrist depth camera shows how far the
    # toy is below the jaw, which one RGB view leaves to the toy's unknown size); collect with 'depth'
    depth: bool = False
    # weight of an auxiliary loss: predict the grasp the expert is executing (annotation.grasp, recorded by
    # `toyland collect`) from the observation features, so the encoder is told where the toy is at every frame
    grasp_aux: float = 0.0

    @property
    def needs_masks(self) -> bool:
        return self.target_mask

    @property
    def needs_depth(self) -> bool:
        return self.depth

    def validate(self) -> None:
        super().validate()
        if self.horizon % 2 ** (len(self.down_dims) - 1):
            raise ValueError(f"horizon={self.horizon} must divide by 2 ** (len(down_dims) - 1) = {2 ** (len(self.down_dims) - 1)}")
        if self.prediction not in ("sample", "epsilon"):
            raise ValueError(f"prediction={self.prediction!r}; valid: sample, epsilon")
        check_steps(self.inference_steps, self.train_timesteps)
        check_colour_jitter(self.colour_jitter)
        use_channels_last(self.memory_format, self.channels)
        if self.state_noise < 0:
            raise ValueError(f"state_noise={self.state_noise} must be >= 0")
        if self.grasp_aux < 0:
            raise ValueError(f"grasp_aux={self.grasp_aux} must be >= 0 (0: off)")


TOOL_STATE, TOOL_ACTION = ("tcp.x", "tcp.y", "tcp.z"), ("x", "y", "z")


class RelativePosition(nn.Module):
    """Tool position in the action chunk <-> offset from the current tool position, in normalized
    units; the offsets are divided by a per-axis scale fitted so that training chunks fill [-1, 1]
    (the sampler clips the denoised chunk there)."""

    def __init__(self, features: PolicyFeatures):
        super().__init__()
        missing = [n for n in TOOL_STATE if n not in features.state_names] + \
                  [n for n in TOOL_ACTION if n not in features.action_names]
        if missing:
            raise ValueError(f"relative_actions needs the tool position in the state {TOOL_STATE} and the action "
                             f"{TOOL_ACTION}; the data lacks {missing} (collect with env.control_mode=ee_pose)")
        self.state_index = [features.state_names.index(n) for n in TOOL_STATE]
        self.action_index = [features.action_names.index(n) for n in TOOL_ACTION]
        self.register_buffer("scale", torch.ones(3))

    def fit(self, targets: list[torch.Tensor], states: list[torch.Tensor]) -> None:
        self.scale.fill_(1.0)
        offsets = torch.cat([self.encode(t, s)[..., self.action_index] for t, s in zip(targets, states)])
        # headroom for chunks the draw missed; a floor keeps an axis that hardly moves from blowing up
        self.scale.copy_((offsets.abs().flatten(0, 1).amax(0) * 1.25).clamp(min=0.05))

    def encode(self, target: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        out = target.clone()
        here = state[:, -1, self.state_index][:, None]  # [B, 1, 3]: the tool now
        out[..., self.action_index] = (target[..., self.action_index] - here) / self.scale
        return out

    def decode(self, target: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        out = target.clone()
        here = state[:, -1, self.state_index][:, None]
        # within the training actions' range, as an absolute chunk is by the sampler's clipping
        out[..., self.action_index] = (target[..., self.action_index] * self.scale + here).clamp(-1.0, 1.0)
        return out


@POLICIES.register("diffusion")
class DiffusionPolicy(Policy):
    name = "diffusion"
    config_class = DiffusionConfig

    def __init__(self, config: DiffusionConfig, features: PolicyFeatures, stats: dict | None):
        super().__init__(config, features, stats)
        c = config
        if c.target_mask:
            check_masks(features, "target_mask")
        if c.depth:
            check_depth(features)
        self.encoders = nn.ModuleDict({
            key.replace(".", "_"): ConvEncoder(tuple(c.channels), c.keypoints, c.image_feature_dim, c.pool,
                                               cropped_size(shape[1:], c.crop), in_channels=3 + int(c.target_mask) + int(c.depth) + 2 * int(c.crop_coords),
                                               channels_last=use_channels_last(c.memory_format, c.channels))
            for key, shape in features.cameras.items()
        })
        per_step = c.image_feature_dim * len(features.cameras) + features.state_dim
        cond_dim = per_step * c.n_obs_steps + (c.language_dim if c.use_language else 0)
        self.language = nn.Linear(384, c.language_dim) if c.use_language else None
        self.yaw = SymmetricYaw(features) if c.symmetric_yaw else None
        self.target_dim = features.action_dim + int(c.symmetric_yaw)  # symmetric_yaw adds sin 2 psi
        self.denoiser = ConditionalUnet1d(self.target_dim, cond_dim, tuple(c.down_dims), c.kernel_size, c.n_groups,
                                          c.step_embed_dim)
        kwargs = dict(num_train_timesteps=c.train_timesteps, beta_schedule=c.beta_schedule, clip_sample=True,
                      prediction_type=c.prediction)
        if c.relative_actions:
            self.relative = RelativePosition(features)
        self.grasp = GraspAuxiliary(cond_dim, stats) if c.grasp_aux > 0 else None
        self.train_scheduler = DDPMScheduler(**kwargs)
        self.sample_scheduler = DDIMScheduler(**kwargs)
        self._episode_noise: torch.Tensor | None = None

    def reset(self) -> None:
        super().reset()
        self._episode_noise = None

    def delta_timestamps(self) -> dict[str, list[float]]:
        deltas = super().delta_timestamps()
        if self.grasp is not None:
            deltas[self.grasp.key] = [0.0]
        return deltas

    def fit(self, sampler) -> None:
        draws = fit_draws(sampler) if self.config.relative_actions or self.yaw is not None else []
        if self.yaw is not None:
            self.yaw.fit([d[ACTION] for d in draws], [d[STATE] for d in draws])
        if self.config.relative_actions:
            self.relative.fit([self.normalizer.normalize(ACTION, d[ACTION]) for d in draws],
                              [self.normalizer.normalize(STATE, d[STATE]) for d in draws])

    def to_target(self, actions: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Action chunk [B, H, A] and state history [B, T, S] (raw) -> what the denoiser learns."""
        target = self.normalizer.normalize(ACTION, actions)
        if self.config.relative_actions:
            target = self.relative.encode(target, self.normalizer.normalize(STATE, state))
        return target if self.yaw is None else self.yaw.to_target(target, actions)

    def from_target(self, target: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        if self.yaw is not None:
            target = self.yaw.from_target(target, state, self.normalizer)
        if self.config.relative_actions:
            target = self.relative.decode(target, self.normalizer.normalize(STATE, state))
        return self.normalizer.unnormalize(ACTION, target)

    def condition(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """Observation history -> [B, cond_dim]; computed once per chunk, reused by every denoising step."""
        feats = []
        jitter = None
        if self.training and any(self.config.colour_jitter):
            jitter = colour_jitter(batch[next(iter(self.features.cameras))], self.config.colour_jitter, generator)
        for key in self.features.cameras:
            images = batch[key] if jitter is None else jitter(batch[key])
            if self.config.target_mask:  # cropped with its image, through the same window
                images = torch.cat([images, batch_mask(batch, key, images)], 2)
            if self.config.depth:
                images = torch.cat([images, batch_depth(batch, key, images)], 2)
            if self.config.crop_coords:
                images = with_pixel_coords(images)
            images = crop(images, self.config.crop, random=self.training, generator=generator)
            b, t = images.shape[:2]
            feats.append(self.encoders[key.replace(".", "_")](images.flatten(0, 1)).reshape(b, t, -1))
        state = self.normalizer.normalize(STATE, batch[STATE])
        if self.training and self.config.state_noise > 0:
            state = state + torch.randn(state.shape, generator=generator).to(state.device) * self.config.state_noise
        feats.append(state)
        cond = torch.cat(feats, -1).flatten(1)
        if self.language is not None:
            from toyland.policies.language import sentence_encoder

            cond = torch.cat([cond, self.language(sentence_encoder().sentences(batch["task"]).to(cond.device))], -1)
        return cond

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        cond = self.condition(batch)
        actions = self.to_target(batch[ACTION], batch[STATE])
        noise = torch.randn_like(actions)
        t = torch.randint(0, self.config.train_timesteps, (actions.shape[0],), device=actions.device)
        noisy = self.train_scheduler.add_noise(actions, noise, t)
        target = actions if self.config.prediction == "sample" else noise
        error = F.mse_loss(self.denoiser(noisy, t, cond), target, reduction="none")
        if self.config.mask_padding and f"{ACTION}_is_pad" in batch:
            keep = (~batch[f"{ACTION}_is_pad"]).unsqueeze(-1).float()
            loss = (error * keep).sum() / (keep.sum() * error.shape[-1]).clamp(min=1)
        else:
            loss = error.mean()
        metrics = {"mse": loss.item()}
        if self.grasp is not None:
            grasp = self.grasp.loss(cond, batch)
            loss = loss + self.config.grasp_aux * grasp
            metrics["grasp_mse"] = grasp.item()
        return loss, metrics

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        cond = self.condition(batch)
        b = cond.shape[0]
        shape = (b, self.config.horizon, self.target_dim)
        if self.config.episode_noise and self._episode_noise is not None and self._episode_noise.shape == shape:
            x = self._episode_noise.clone()
        else:
            x = torch.randn(shape, generator=generator, device=cond.device)
            if self.config.episode_noise:
                self._episode_noise = x.clone()
        scheduler = self.sample_scheduler
        scheduler.set_timesteps(self.config.inference_steps)
        for t in scheduler.timesteps:
            out = self.denoiser(x, torch.full((b,), int(t), device=cond.device), cond)
            x = scheduler.step(out, t, x, generator=generator).prev_sample
        return self.from_target(x, batch[STATE])
