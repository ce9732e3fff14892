"""A vision-language-action transformer sized for a CPU by default (``vla_large`` scales it up).

Observation tokens: the instruction's token-level outputs of the frozen pretrained MiniLM encoder
(projected; where the instruction shows the target as a picture, "pick up the <image>", that
picture's patch tokens stand in the sequence at its place), image tokens per camera and frame from a
patch encoder (all patches, or with ``det_pool`` one object token pooled over the instructed
target's mask), and a proprioception token
per frame; camera and frame embeddings tell them apart. A transformer mixes them once per action
chunk, and the action head (``flow``, ``discrete_diffusion`` or ``autoregressive``, see heads.py)
decodes the chunk from them, reusing them across its denoising or decoding steps.

Masks come from ``observation.masks.<camera>``: the segmentation of the instructed object in sim,
a detector's output on a robot; a mask that is not the image's size is an error.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from toyland.policies.base import Policy, PolicyConfig, check_steps
from toyland.policies.features import (ACTION, DEPTH, INSTRUCTION_PICTURE, MASK, STATE, FeatureMismatch, PolicyFeatures,
                                       viewpoint_offset_key)
from toyland.policies.registry import POLICIES
from toyland.policies.vision import crop, cropped_size, with_pixel_coords
from toyland.policies.vla.grounding import InstructionMatcher, grounding_loss
from toyland.policies.vla.heads import HEADS
from toyland.policies.vla.vision import STEMS, DetPool, PatchEncoder, transformer_layer
from toyland.sim.annotations import TARGET_ANNOTATION
from toyland.sim.instructions import IMAGE_TOKEN, split


DET_POOL_MASKS = ("target", "objects")
GROUNDING_VISION = ("shared", "own")


@dataclass
class VLAConfig(PolicyConfig):
    n_obs_steps: int = 1
    use_language: bool = True
    head: str = "flow"  # flow | discrete_diffusion | autoregressive
    # The defaults are the measured best recipe on language_lift (README): conv stem, four DetPool slots,
    # the mask's geometry and pixel coordinates, which need only the target masks DetPool reads anyway.
    # Depth, the recipe's last part, stays off: it needs the 'depth' modality in the data.
    det_pool: bool = True  # object tokens pooled over the target's mask instead of every patch
    det_pool_slots: int = 4  # object tokens per camera and frame: 1 the mean, more attention-pooled slots
    det_pool_geometry: bool = True  # add the mask's centroid, extent and moments to the object tokens
    # target: the mask is the instructed target's (in sim its segmentation), so the mask names the target;
    # objects: it holds every object under its own id (env masks=objects, a class-agnostic detector's
    # output), each object gets its own slots, and only the instruction says which one to lift
    det_pool_masks: str = "target"
    # with det_pool_masks=objects, the weight of an auxiliary loss that names the instructed object among
    # the object tokens after the policy layers (its id from the expert's annotation.target_id; training
    # only): the grounding a pretrained VLA brings, which 100 demonstrations alone did not teach (0: off)
    grounding_aux: float = 0.0
    # with det_pool_masks=objects: match the instruction to each object's tokens before the policy layers
    # and add a learned marker to each object in proportion to its match (grounding.py), so the policy
    # reads the named object as it reads the target's own mask; grounding_aux then weighs the match's
    # loss (among a frame's objects and against the batch's other instructions) instead of a score head
    grounding_marker: bool = False
    # with det_pool_masks=objects: the matcher chooses one object before the policy, and the policy reads only
    # that object, through the target-mask path (a vision pass over its pixels alone, DetPool over it): in
    # training the expert's annotation.target_id, when acting the matcher's best match over the cameras. The
    # policy then learns control on the input of the target-mask recipe, and choosing is left to the matcher
    grounding_select: bool = False
    # with grounding_select, the matcher's vision: shared (the policy's patch encoders and DetPool) or own
    # (encoders and DetPool of its own, so the loss that tells objects apart by colour does not shape the
    # features the policy acts on: a choosing detector beside a policy that acts on what it chose)
    grounding_vision: str = "shared"
    # each camera's metric depth as a fourth input channel of its patches (masked with the RGB under
    # DetPool): how far the target is below the jaw, which one RGB view leaves to the toy's unknown size
    depth: bool = False
    crop: float = 0.875  # random crop in training, centre crop when acting; 64 px -> 56 = 7 patches of 8
    # pixel-position channels cropped with the image (vision.with_pixel_coords), and the mask's geometry
    # measured on the uncropped mask: the random crop then no longer hides where in the camera's frame
    # a patch or the target is
    crop_coords: bool = True
    patch_size: int = 8
    stem: str = "conv"  # patch embedding: linear (ViT) | conv (stride-2 convolutions, same token grid)
    dim: int = 128
    heads: int = 4
    vision_layers: int = 2
    policy_layers: int = 2  # over the instruction, image and state tokens
    head_layers: int = 2  # the action decoder
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    flow_steps: int = 10  # Euler steps of the flow head when acting
    bins: int = 256  # quantile bins per action dimension (discrete heads); E0 uses 2048
    label_smoothing: float = 0.1  # E0's alpha
    train_timesteps: int = 100  # discrete diffusion
    inference_steps: int = 10  # discrete diffusion DDIM steps when acting
    # E0's offset embedding: a learned linear embedding of a camera's viewpoint_warp offset (yaw, pitch)
    # added to that camera's image tokens; zero offset (no warp, and always at evaluation) adds nothing
    viewpoint_embedding: bool = False

    @property
    def needs_masks(self) -> bool:
        return self.det_pool

    @property
    def needs_depth(self) -> bool:
        return self.depth

    @property
    def reads_object_masks(self) -> bool:
        return self.det_pool and self.det_pool_masks == "objects"

    @property
    def uses_matcher(self) -> bool:
        return self.grounding_marker or self.grounding_select

    @property
    def reads_instruction_pictures(self) -> bool:
        return self.use_language

    def validate(self) -> None:
        super().validate()
        if self.head not in HEADS.names():
            raise ValueError(f"head={self.head!r}; registered heads: {', '.join(HEADS.names())}")
        if self.stem not in STEMS:
            raise ValueError(f"stem={self.stem!r}; valid: {', '.join(STEMS)}")
        if self.det_pool_geometry and not self.det_pool:
            raise ValueError("det_pool_geometry=true needs det_pool=true (the geometry is the target mask's); "
                             "with det_pool=false set det_pool_geometry=false too")
        if self.det_pool_masks not in DET_POOL_MASKS:
            raise ValueError(f"det_pool_masks={self.det_pool_masks!r}; valid: {', '.join(DET_POOL_MASKS)}")
        if self.det_pool_masks == "objects" and not self.det_pool:
            raise ValueError("det_pool_masks=objects needs det_pool=true")
        if self.grounding_aux < 0:
            raise ValueError(f"grounding_aux={self.grounding_aux} must be at least 0")
        if self.grounding_aux > 0 and not self.reads_object_masks:
            raise ValueError("grounding_aux names the target among every object's tokens: it needs det_pool=true and "
                             "det_pool_masks=objects (or grounding_aux=0)")
        if self.grounding_aux > 0 and not self.use_language:
            raise ValueError("grounding_aux needs an instruction to ground: set use_language=true or grounding_aux=0")
        if self.grounding_marker and not (self.reads_object_masks and self.use_language):
            raise ValueError("grounding_marker matches the instruction to every object's tokens: it needs "
                             "det_pool=true, det_pool_masks=objects and use_language=true (or grounding_marker=false)")
        if self.grounding_select and not (self.reads_object_masks and self.use_language and self.grounding_aux > 0):
            raise ValueError("grounding_select chooses among every object by the instruction, with a matcher trained "
                             "by grounding_aux: it needs det_pool=true, det_pool_masks=objects, use_language=true and "
                             "grounding_aux > 0 (or grounding_select=false)")
        if self.grounding_vision not in GROUNDING_VISION:
            raise ValueError(f"grounding_vision={self.grounding_vision!r}; valid: {', '.join(GROUNDING_VISION)}")
        if self.grounding_vision == "own" and not self.grounding_select:
            raise ValueError("grounding_vision=own gives the matcher of grounding_select its own encoders: set "
                             "grounding_select=true, or grounding_vision=shared")
        if self.grounding_select and self.grounding_marker:
            raise ValueError("grounding_select and grounding_marker are two uses of the matcher: the policy reads "
                             "the chosen object alone, or every object marked; set one of them false")
        if self.det_pool_slots < 1:
            raise ValueError(f"det_pool_slots={self.det_pool_slots} must be at least 1")
        if self.dim % self.heads:
            raise ValueError(f"dim={self.dim} must divide by heads={self.heads}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={self.label_smoothing} must lie in [0, 1)")
        check_steps(self.inference_steps, self.train_timesteps)


@POLICIES.register("vla")
class VLAPolicy(Policy):
    name = "vla"
    config_class = VLAConfig

    def __init__(self, config: VLAConfig, features: PolicyFeatures, stats: dict | None):
        super().__init__(config, features, stats)
        c = config
        if c.det_pool:
            MASK.check(features, "det_pool")
        if c.depth:
            DEPTH.check(features, "depth")
        self.keys = list(features.cameras)
        self.vision = nn.ModuleDict({self._name(k): self._encoder(shape) for k, shape in features.cameras.items()})
        self.pool = DetPool(c.dim, c.det_pool_slots, c.det_pool_geometry) if c.det_pool else None
        self.match_vision, self.match_pool = None, None  # the matcher's own (grounding_vision=own)
        if c.grounding_select and c.grounding_vision == "own":
            self.match_vision = nn.ModuleDict({self._name(k): self._encoder(shape) for k, shape in features.cameras.items()})
            self.match_pool = DetPool(c.dim, c.det_pool_slots, c.det_pool_geometry)
        self.camera = nn.Parameter(torch.randn(len(self.keys), c.dim) * 0.02)
        # bias-free, so an unwarped image (offset 0) is encoded as without the embedding
        self.viewpoint_embed = nn.Linear(2, c.dim, bias=False) if c.viewpoint_embedding else None
        self.frame = nn.Parameter(torch.randn(c.n_obs_steps, c.dim) * 0.02)
        self.state_in = nn.Linear(features.state_dim, c.dim)
        self.state_type = nn.Parameter(torch.randn(c.dim) * 0.02)
        self.language_in = nn.Linear(384, c.dim) if c.use_language else None
        # an instruction's picture of the target (Interleave-VLA): its own patch encoder, its tokens in the
        # instruction's sequence where the picture stands among the words
        self.picture, self.picture_type = None, None
        if self.uses_instruction_picture:
            _, h, w = features.instruction_picture
            self.picture = PatchEncoder((h, w), c.patch_size, c.dim, c.heads, c.vision_layers, c.mlp_ratio, c.dropout,
                                        c.stem, in_channels=3)
            self.picture_type = nn.Parameter(torch.randn(c.dim) * 0.02)
        self.grounding = None
        if c.grounding_aux > 0:
            if stats is not None and TARGET_ANNOTATION not in stats:
                raise FeatureMismatch(f"grounding_aux needs '{TARGET_ANNOTATION}' (the target's id in every object's "
                                      "masks), which the data lacks; collect it again with env.masks=objects (the expert "
                                      "records it), or set grounding_aux=0")
            if not c.uses_matcher:
                self.grounding = nn.Linear(c.dim, 1)  # an object's score of being the one the instruction names
        self.matcher = InstructionMatcher(c.dim) if c.uses_matcher else None
        self.blocks = nn.ModuleList(transformer_layer(c.dim, c.heads, c.mlp_ratio, c.dropout) for _ in range(c.policy_layers))
        self.norm = nn.LayerNorm(c.dim)
        self.head = HEADS.get(c.head)(c, features.action_dim)

    def _encoder(self, shape: tuple) -> PatchEncoder:
        """A camera's patch encoder for its image ``shape`` (C, H, W)."""
        c = self.config
        return PatchEncoder(cropped_size(shape[1:], c.crop), c.patch_size, c.dim, c.heads, c.vision_layers, c.mlp_ratio,
                            c.dropout, c.stem, in_channels=3 + int(c.depth) + 2 * int(c.crop_coords))

    @staticmethod
    def _name(key: str) -> str:
        return key.replace(".", "_")

    def delta_timestamps(self) -> dict[str, list[float]]:
        deltas = super().delta_timestamps()
        if self.config.grounding_aux > 0:
            deltas[TARGET_ANNOTATION] = [0.0]
        return deltas

    def fit(self, sampler) -> None:
        if self.head.uses_bins:
            self.head.bins.fit(sampler.values(ACTION))

    # --- observation tokens, once per chunk ----------------------------------------------------
    def _camera_tokens(self, i: int, key: str, batch: dict, query: torch.Tensor | None = None,
                       chosen: torch.Tensor | None = None):
        """A camera's tokens [B, L, D], where some may be absent their padding [B, L] (else None), and
        with the matcher its scores and object keys (else None). With ``chosen`` ([B] object ids, 0: none)
        the object-id map is read as that object's own mask, through the target-mask path."""
        images = batch[key]  # [B, T, C, H, W]
        b, t = images.shape[:2]
        if self.config.depth:
            images = torch.cat([images, DEPTH.channel(batch, key, images)], 2)
        if self.config.crop_coords:
            images = with_pixel_coords(images)
        pad, match = None, None
        if self.pool is not None:  # crop image and mask with the same window
            full = MASK.channel(batch, key, images)
            both = crop(torch.cat([images, full], 2), self.config.crop, random=self.training)
            images, mask = both[:, :, :-1], both[:, :, -1]
            where = full[:, :, 0] if self.config.crop_coords else mask  # the geometry's frame
            if chosen is not None:
                pick = chosen.to(mask.dtype)[:, None, None, None]
                mask, where = [((m == pick) & (pick > 0)).to(m.dtype) for m in (mask, where)]
            if self.config.det_pool_masks == "objects" and chosen is None:
                tokens, pad = self._object_tokens(key, images.flatten(0, 1), mask.flatten(0, 1), where.flatten(0, 1))
                tokens, pad = tokens.reshape(b, t, -1, tokens.shape[-1]), pad.reshape(b, -1)
                if self.matcher is not None:
                    slots = self.config.det_pool_slots
                    objects = tokens.reshape(b, t, -1, slots, tokens.shape[-1])
                    absent = pad.reshape(b, t, -1, slots)[..., 0]
                    objects, scores, keys = self.matcher(objects, absent, query)
                    tokens, match = objects.flatten(2, 3), (scores, keys)
            else:
                if mask.amax() > 1:
                    raise ValueError(f"'{MASK.key(key)}' holds object ids up to {int(mask.amax())}, not one target's mask "
                                     "(data collected with env masks=objects): set policy.det_pool_masks=objects")
                tokens, touched = self.vision[self._name(key)](images.flatten(0, 1), mask.flatten(0, 1))
                tokens = self.pool(tokens, touched, where.flatten(0, 1)).reshape(b, t, self.config.det_pool_slots, -1)
        else:
            images = crop(images, self.config.crop, random=self.training)
            tokens, _ = self.vision[self._name(key)](images.flatten(0, 1))
            tokens = tokens.reshape(b, t, tokens.shape[1], -1)
        tokens = tokens + self.camera[i] + self.frame[:t, None]
        offset = batch.get(viewpoint_offset_key(key))
        if self.viewpoint_embed is not None and offset is not None:
            tokens = tokens + self.viewpoint_embed(offset.to(tokens.dtype))[:, None, None]
        return tokens.flatten(1, 2), pad, match

    def _object_tokens(self, key: str, images: torch.Tensor, ids: torch.Tensor, where: torch.Tensor):
        """Every object's slots from an id map (0 background, 1..n objects): [N, n * slots, D] and their
        padding [N, n * slots], true where the object is out of this (cropped) frame. One vision pass
        over all objects' pixels; each object pooled over its own patches. The same queries pool every
        object and no token says which id it came from, so the object tokens are a set: which one is the
        target can come only from the instruction. With grounding_vision=own, the matcher's encoder and pool."""
        apart = self.match_vision is not None  # then only the matcher reads every object
        encoder = (self.match_vision if apart else self.vision)[self._name(key)]
        pool = self.match_pool if apart else self.pool
        n = max(1, int(ids.amax()))
        tokens, _ = encoder(images, (ids > 0.5).float())
        objects, pads = [], []
        for k in range(1, n + 1):
            own = (ids == k).float()
            touched = F.max_pool2d(own[:, None], encoder.patch).flatten(1) > 0.5  # [N, P]
            objects.append(pool(tokens, touched, (where == k).float()))
            pads.append((~touched.any(1))[:, None].expand(-1, self.config.det_pool_slots))
        return torch.cat(objects, 1), torch.cat(pads, 1)

    def encode(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Observation history -> memory tokens [B, L, D] and their padding mask [B, L]."""
        memory, pad, _, _ = self._encode(batch)
        return memory, pad

    def _encode(self, batch: dict):
        """``encode``, where each camera's tokens sit in the sequence ((start, length) each), and with the
        matcher its outputs (``{"query": [B, D], "scores": per camera [B, T, n + 1], "keys": per camera
        [B, T, n, D]}``, with grounding_select also ``"chosen"``: [B] the object read, else None)."""
        parts, pads, spans = [], [], []
        state = self.normalizer.normalize(STATE, batch[STATE])
        b, t = state.shape[:2]
        match = None
        if self.language_in is not None:
            tokens, pad = self._instruction_tokens(list(batch["task"]), batch, state.device)
            parts.append(tokens)
            pads.append(pad)
            if self.matcher is not None:
                match = {"query": self.matcher.instruction_query(tokens, pad), "scores": [], "keys": []}
        chosen = None
        if self.config.grounding_select:  # every camera's objects matched first, then the chosen one's tokens
            for i, key in enumerate(self.keys):
                _, _, (scores, keys) = self._camera_tokens(i, key, batch, match["query"])
                match["scores"].append(scores)
                match["keys"].append(keys)
            teach = self.training and TARGET_ANNOTATION in batch  # the policy learns on the expert's target
            chosen = batch[TARGET_ANNOTATION][:, -1, 0].round().long() if teach else self.choose(match["scores"])
            match["chosen"] = chosen
        for i, key in enumerate(self.keys):
            tokens, pad, matched = self._camera_tokens(i, key, batch, None if match is None else match["query"], chosen)
            if matched is not None:
                match["scores"].append(matched[0])
                match["keys"].append(matched[1])
            spans.append((sum(p.shape[1] for p in parts), tokens.shape[1]))
            parts.append(tokens)
            pads.append(torch.zeros(tokens.shape[:2], dtype=torch.bool, device=state.device) if pad is None else pad)
        parts.append(self.state_in(state) + self.state_type + self.frame[:t])
        pads.append(torch.zeros(parts[-1].shape[:2], dtype=torch.bool, device=state.device))
        x, pad = torch.cat(parts, 1), torch.cat(pads, 1)
        for block in self.blocks:
            x = block(x, src_key_padding_mask=pad)
        return self.norm(x), pad, spans, match

    @staticmethod
    def choose(scores: list[torch.Tensor]) -> torch.Tensor:
        """The object (id 1..n) the matcher names: its current-frame probabilities summed over the cameras
        (``scores`` [B, T, n + 1] each, the last "none"; a camera that does not see an object gives it
        nothing). [B] ids."""
        n = max(s.shape[-1] - 1 for s in scores)
        total = sum(F.pad(s[:, -1].softmax(-1)[:, :-1], (0, n + 1 - s.shape[-1])) for s in scores)
        return total.argmax(1) + 1

    def _matcher_loss(self, match: dict, batch: dict) -> tuple[torch.Tensor, float]:
        """``grounding.grounding_loss`` on each camera's current frame; samples share an instruction when
        its words, and its picture where it shows one, are the same."""
        target = batch[TARGET_ANNOTATION][:, -1, 0].round().long()
        texts = list(batch["task"])
        same = torch.tensor([[a == b for b in texts] for a in texts], device=target.device)
        if INSTRUCTION_PICTURE in batch:
            pictures = batch[INSTRUCTION_PICTURE][:, -1].flatten(1)
            same = same & (pictures[:, None] == pictures[None]).all(-1)
        return grounding_loss([s[:, -1] for s in match["scores"]], [k[:, -1] for k in match["keys"]], match["query"],
                              target, same, self.matcher.scale)

    def _grounding_loss(self, memory: torch.Tensor, pad: torch.Tensor, spans: list, batch: dict):
        """Cross-entropy of naming the instructed object among each camera's current object tokens (mean
        of its slots after the policy layers), and its accuracy; cameras where the target is out of view
        are left out."""
        target = batch[TARGET_ANNOTATION][:, -1, 0].round().long()  # [B], ids 1..n
        slots, losses, hits, kept = self.config.det_pool_slots, [], [], []
        for start, length in spans:
            b, d = memory.shape[0], memory.shape[-1]
            n = length // slots // batch[STATE].shape[1]  # objects per frame (the span holds t frames)
            tokens = memory[:, start:start + length].reshape(b, -1, n, slots, d)[:, -1]  # [B, n, slots, D]
            present = ~pad[:, start:start + length].reshape(b, -1, n, slots)[:, -1].all(-1)  # [B, n]
            logits = self.grounding(tokens.mean(2))[..., 0].masked_fill(~present, float("-inf"))
            index = (target - 1).clamp(0, n - 1)
            keep = (target >= 1) & (target <= n) & present.gather(1, index[:, None])[:, 0]
            safe = torch.where(keep[:, None], logits, torch.zeros_like(logits))  # no -inf rows in the loss
            losses.append(F.cross_entropy(safe, index, reduction="none") * keep)
            hits.append((logits.argmax(1) == index) & keep)
            kept.append(keep)
        count = torch.stack(kept).sum().clamp(min=1)
        return torch.stack(losses).sum() / count, (torch.stack(hits).sum() / count).item()

    def _instruction_tokens(self, texts: list[str], batch: dict, device) -> tuple[torch.Tensor, torch.Tensor]:
        """The instruction as tokens [B, L, D] and their padding [B, L]: the words' token outputs of the
        frozen encoder, projected, with the picture's patch tokens where ``<image>`` stands."""
        from toyland.policies.language import sentence_encoder

        splits = [split(t) for t in texts]
        if all(s is None for s in splits):  # words only: the encoder pads the batch itself
            emb, real = sentence_encoder().tokens(texts)
            return self.language_in(emb.to(device)), ~real.to(device)
        if self.picture is None or INSTRUCTION_PICTURE not in batch:
            raise ValueError(f"an instruction shows a picture ({IMAGE_TOKEN}) and this policy "
                             + ("was trained on words only" if self.picture is None else "got no observation.instruction_picture")
                             + ": evaluate in the instruction mode of the training data (env.instruction)")
        pictures = self.picture(batch[INSTRUCTION_PICTURE][:, -1])[0] + self.picture_type  # [B, P, D], current frame
        words = sorted({w for s, t in zip(splits, texts) for w in ((t,) if s is None else s) if w})
        emb, real = sentence_encoder().tokens(words) if words else (None, None)
        projected = {} if emb is None else {w: self.language_in(emb[i, real[i]].to(device)) for i, w in enumerate(words)}
        rows = []
        for i, (s, t) in enumerate(zip(splits, texts)):
            if s is None:
                rows.append(projected[t])
            else:
                before, after = s
                rows.append(torch.cat([*([projected[before]] if before else []), pictures[i],
                                       *([projected[after]] if after else [])]))
        lengths = torch.tensor([len(r) for r in rows], device=device)
        tokens = nn.utils.rnn.pad_sequence(rows, batch_first=True)
        return tokens, torch.arange(tokens.shape[1], device=device)[None] >= lengths[:, None]

    # --- policy API ----------------------------------------------------------------------------
    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        memory, pad, spans, match = self._encode(batch)
        actions = batch[ACTION] if self.head.uses_bins else self.normalizer.normalize(ACTION, batch[ACTION])
        loss, info = self.head.loss(memory, pad, actions)
        if self.config.grounding_aux > 0:
            if match is not None:
                grounding, accuracy = self._matcher_loss(match, batch)
            else:
                grounding, accuracy = self._grounding_loss(memory, pad, spans, batch)
            loss = loss + self.config.grounding_aux * grounding
            info = {**info, "grounding_ce": grounding.item(), "grounding_accuracy": accuracy}
        return loss, info

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        memory, pad = self.encode(batch)
        chunk = self.head.sample(memory, pad, generator)
        return chunk if self.head.uses_bins else self.normalizer.unnormalize(ACTION, chunk)
