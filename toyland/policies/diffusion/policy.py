"""Diffusion Policy (Chi et al. 2023), sized for a CPU by default: per-camera conv encoders (their
feature maps flattened, or the paper's spatial-softmax keypoints), observation history and
proprioception (optionally the instruction's MiniLM embedding, the target's mask and metric depth) as
a global condition, a FiLM 1-D U-Net denoising action chunks, DDPM training and DDIM sampling with a
configurable number of steps. Scale it up by config for a GPU (``down_dims``, ``channels``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn
from torch.nn import functional as F

from toyland.policies.auxiliary import ActionTokenHead, PhaseHead
from toyland.policies.base import Policy, PolicyConfig, check_steps, randn_rows
from toyland.policies.features import ACTION, DEPTH, MASK, STATE, PolicyFeatures, viewpoint_offset_key
from toyland.policies.registry import POLICIES
from toyland.policies.vision import (ConvEncoder, crop, cropped_size, use_channels_last,
                                     with_pixel_coords)
from toyland.policies.diffusion.unet import ConditionalUnet1d


@dataclass
class DiffusionConfig(PolicyConfig):
    crop: float = 0.9  # random crop of this fraction of each side in training, centre crop when acting
    # two channels holding each pixel's position in the uncropped image, cropped with it: a random
    # crop then still tells the encoder where in the camera's frame it looks, so the augmentation
    # regularizes the features without blurring a fixed camera's absolute positions by the shift
    crop_coords: bool = False
    channels: tuple = (16, 32, 64)  # image encoder stages (the encoder is most of a CPU step)
    # the encoder's convolution layout: auto | contiguous | channels_last (auto: NHWC for wide encoders, vision.py)
    memory_format: str = "auto"
    # flatten | spatial_softmax (Chi et al.'s keypoints; on the CPU budget they did not start to learn, vision.py)
    pool: str = "flatten"
    keypoints: int = 32  # spatial_softmax only
    image_feature_dim: int = 64
    down_dims: tuple = (32, 64, 128)  # U-Net widths; the horizon must divide by 2 ** (len - 1)
    kernel_size: int = 5
    n_groups: int = 8
    step_embed_dim: int = 64
    language_dim: int = 64  # projection of the 384-d MiniLM sentence embedding
    train_timesteps: int = 100
    inference_steps: int = 10  # DDIM steps when acting
    beta_schedule: str = "squaredcos_cap_v2"
    # "sample": the denoiser predicts the clean chunk; "epsilon": the noise (Chi et al.'s choice).
    # On 100 Lift demos a state-conditioned denoiser reached gripper-action error 0.17 with "sample"
    # and 0.59 with "epsilon" after the same 1500 steps, so the CPU default predicts the sample.
    prediction: str = "sample"
    mask_padding: bool = False  # drop chunk steps past the episode end from the loss (else learn to hold)
    # the instructed object's mask as a fourth input channel per camera (object-centric input: the
    # segmentation in sim, a detector on a robot); collect with the cameras' 'mask' modality
    target_mask: bool = False
    # each camera's metric depth as a further input channel (a wrist depth camera shows how far the
    # toy is below the jaw, which one RGB view leaves to the toy's unknown size); collect with 'depth'
    depth: bool = False
    # E0's offset embedding: a learned linear embedding of a camera's viewpoint_warp offset (yaw, pitch)
    # added to that camera's features; zero offset (no warp, and always at evaluation) adds nothing
    viewpoint_embedding: bool = False
    # co-training (arXiv 2602.01067): the embodiments this policy may act as, each a learned embedding in
    # the condition (() : the embodiment is not given); a batch's robot_type comes from its dataset
    embodiments: tuple = ()
    embodiment_dim: int = 16
    # weights of auxiliary losses on the observation features (0: off): the expert's phase per frame
    # (dense annotation, annotation.phase) and the action chunk as discrete tokens (auxiliary.py)
    phase_aux: float = 0.0
    action_token_aux: float = 0.0
    action_token_bins: int = 32

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
        use_channels_last(self.memory_format, self.channels)
        if len(set(self.embodiments)) != len(self.embodiments) or not all(isinstance(e, str) for e in self.embodiments):
            raise ValueError(f"embodiments={list(self.embodiments)} must be distinct embodiment names")
        for name in ("phase_aux", "action_token_aux"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0 (0: off)")
        if self.action_token_bins < 2:
            raise ValueError(f"action_token_bins={self.action_token_bins} must be at least 2")


# the per-camera inputs the encoders take as further image channels, and the option for each, in
# channel order (the encoders' first weights depend on it)
CHANNEL_INPUTS = ((MASK, "target_mask"), (DEPTH, "depth"))


@POLICIES.register("diffusion")
class DiffusionPolicy(Policy):
    name = "diffusion"
    config_class = DiffusionConfig

    def __init__(self, config: DiffusionConfig, features: PolicyFeatures, stats: dict | None):
        super().__init__(config, features, stats)
        c = config
        self.extra_channels = [extra for extra, option in CHANNEL_INPUTS if getattr(c, option)]
        for extra, option in CHANNEL_INPUTS:
            if getattr(c, option):
                extra.check(features, option)
        in_channels = 3 + len(self.extra_channels) + 2 * int(c.crop_coords)
        self.encoders = nn.ModuleDict({
            key.replace(".", "_"): ConvEncoder(tuple(c.channels), c.keypoints, c.image_feature_dim, c.pool,
                                               cropped_size(shape[1:], c.crop), in_channels=in_channels,
                                               channels_last=use_channels_last(c.memory_format, c.channels))
            for key, shape in features.cameras.items()
        })
        # bias-free, so an unwarped image (offset 0) is encoded as without the embedding
        self.viewpoint_embed = nn.ModuleDict({
            key.replace(".", "_"): nn.Linear(2, c.image_feature_dim, bias=False) for key in features.cameras
        }) if c.viewpoint_embedding else None
        per_step = c.image_feature_dim * len(features.cameras) + features.state_dim
        cond_dim = (per_step * c.n_obs_steps + (c.language_dim if c.use_language else 0)
                    + (c.embodiment_dim if c.embodiments else 0))
        self.language = nn.Linear(384, c.language_dim) if c.use_language else None
        self.embodiment = nn.Embedding(len(c.embodiments), c.embodiment_dim) if c.embodiments else None
        self.phase_head = PhaseHead(cond_dim, stats) if c.phase_aux > 0 else None
        self.action_token_head = ActionTokenHead(cond_dim, c.horizon, features.action_dim, c.action_token_bins) \
            if c.action_token_aux > 0 else None
        self.denoiser = ConditionalUnet1d(features.action_dim, cond_dim, tuple(c.down_dims), c.kernel_size, c.n_groups,
                                          c.step_embed_dim)
        kwargs = dict(num_train_timesteps=c.train_timesteps, beta_schedule=c.beta_schedule, clip_sample=True,
                      prediction_type=c.prediction)
        self.train_scheduler = DDPMScheduler(**kwargs)
        self.sample_scheduler = DDIMScheduler(**kwargs)

    def delta_timestamps(self) -> dict[str, list[float]]:
        deltas = super().delta_timestamps()
        if self.phase_head is not None:
            deltas[self.phase_head.key] = [0.0]
        return deltas

    def _embodiment(self, batch: dict, device) -> torch.Tensor:
        names = self.config.embodiments
        robots = batch.get("robot_type")
        if robots is None:
            raise ValueError(f"this policy is told the embodiment acting ({list(names)}), and the batch names none: "
                             "give each observation 'robot_type' (toyland's actors do)")
        unknown = sorted({str(r) for r in robots if r not in names})
        if unknown:
            raise ValueError(f"embodiments {unknown} are not among this policy's {list(names)} (policy.embodiments); "
                             "a dataset without robot_type in meta/info.json cannot be told apart")
        return self.embodiment(torch.tensor([names.index(r) for r in robots], device=device))

    def condition(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """Observation history -> [B, cond_dim]; computed once per chunk, reused by every denoising step."""
        feats = []
        for key in self.features.cameras:
            images = batch[key]
            # cropped with the image, through the same window
            images = torch.cat([images, *(extra.channel(batch, key, images) for extra in self.extra_channels)], 2)
            if self.config.crop_coords:
                images = with_pixel_coords(images)
            images = crop(images, self.config.crop, random=self.training, generator=generator)
            b, t = images.shape[:2]
            feat = self.encoders[key.replace(".", "_")](images.flatten(0, 1)).reshape(b, t, -1)
            offset = batch.get(viewpoint_offset_key(key))
            if self.viewpoint_embed is not None and offset is not None:
                feat = feat + self.viewpoint_embed[key.replace(".", "_")](offset.to(feat.dtype))[:, None]
            feats.append(feat)
        feats.append(self.normalizer.normalize(STATE, batch[STATE]))
        cond = torch.cat(feats, -1).flatten(1)
        if self.language is not None:
            from toyland.policies.language import sentence_encoder

            cond = torch.cat([cond, self.language(sentence_encoder().sentences(batch["task"]).to(cond.device))], -1)
        if self.embodiment is not None:
            cond = torch.cat([cond, self._embodiment(batch, cond.device)], -1)
        return cond

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        cond = self.condition(batch)
        actions = self.normalizer.normalize(ACTION, batch[ACTION])
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
        if self.phase_head is not None:
            phase, accuracy = self.phase_head.loss(cond, batch)
            loss = loss + self.config.phase_aux * phase
            metrics.update(phase_ce=phase.item(), phase_accuracy=accuracy.item())
        if self.action_token_head is not None:
            tokens, accuracy = self.action_token_head.loss(cond, actions, batch, self.config.mask_padding)
            loss = loss + self.config.action_token_aux * tokens
            metrics.update(token_ce=tokens.item(), token_accuracy=accuracy.item())
        return loss, metrics

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        cond = self.condition(batch)
        b = cond.shape[0]
        x = randn_rows((b, self.config.horizon, self.features.action_dim), generator, cond.device)
        scheduler = self.sample_scheduler
        scheduler.set_timesteps(self.config.inference_steps)
        for t in scheduler.timesteps:
            out = self.denoiser(x, torch.full((b,), int(t), device=cond.device), cond)
            x = scheduler.step(out, t, x).prev_sample  # DDIM, eta = 0: deterministic given the start noise
        return self.normalizer.unnormalize(ACTION, x)
