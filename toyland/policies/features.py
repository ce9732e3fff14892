"""The typed contract between data, env and policy: which cameras, which state, what action.

A policy is built for a ``PolicyFeatures``; training checks it against the datasets, evaluation
against the env, and both fail before any step with the mismatch named.

Besides its RGB image a camera can bring further per-pixel inputs (``CAMERA_INPUTS``: the target's
mask, metric depth), each under its own key per camera; one table row says how each is named,
where ``PolicyFeatures`` lists it and how a batch value becomes an image channel, and every check
below reads that table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from toyland.sim.instructions import INSTRUCTION_PICTURE

if TYPE_CHECKING:
    import torch

STATE, ACTION = "observation.state", "action"
IMAGE_PREFIX = "observation.images."
DEPTH_RANGE = 1.5  # metres; a depth channel is the distance clipped to this, over it: [0, 1] like the RGB


class FeatureMismatch(ValueError):
    pass


@dataclass(frozen=True)
class CameraInput:
    """A per-camera input beside the RGB image: ``<prefix><camera>`` holds an [H, W] map of the
    camera image's size, which a policy takes as one more image channel."""

    modality: str  # the env camera modality that renders it (env.cameras=[front:rgb+<modality>])
    field: str  # the PolicyFeatures field listing its keys and [H, W] sizes
    prefix: str
    what: str  # what one map is, for errors ("target mask")
    to_channel: Callable[["torch.Tensor"], "torch.Tensor"]  # batch value [B, T, H, W] -> float [B, T, H, W]

    def key(self, camera_key: str) -> str:
        """``observation.images.<cam>`` -> ``<prefix><cam>``."""
        return self.prefix + camera_key[len(IMAGE_PREFIX):]

    def shapes(self, features: "PolicyFeatures") -> dict[str, tuple[int, int]]:
        return getattr(features, self.field)

    def check(self, features: "PolicyFeatures", option: str) -> None:
        """Raises unless every camera of ``features`` comes with this input (``option``: the policy option needing it)."""
        lacking = [self.key(k) for k in features.cameras if self.key(k) not in self.shapes(features)]
        if lacking:
            raise FeatureMismatch(f"{option} needs the {self.what}s {lacking}; collect with the '{self.modality}' "
                                  f"modality on those cameras (env.cameras=[front:rgb+{self.modality}]), or set "
                                  f"policy.{option}=false")

    def channel(self, batch: dict, camera_key: str, images: "torch.Tensor") -> "torch.Tensor":
        """The [B, T, 1, H, W] channel of a camera in a batch, checked against its images [B, T, C, H, W]."""
        key = self.key(camera_key)
        value = batch[key]
        if value.shape[-2:] != images.shape[-2:]:
            raise ValueError(f"'{key}' is {tuple(value.shape[-2:])}, its image {tuple(images.shape[-2:])}; "
                             f"a {self.what} must have the camera image's size")
        return self.to_channel(value)[:, :, None]


# the instructed object's mask per camera, for object-centric policies: in sim from segmentation, on a
# robot from any detector that fills the same key
MASK = CameraInput("mask", "masks", "observation.masks.", "target mask", lambda m: m.float())
# metric depth per camera, in metres / DEPTH_RANGE, clipped to [0, 1]
DEPTH = CameraInput("depth", "depths", "observation.depth.", "depth map",
                    lambda d: (d.float() / DEPTH_RANGE).clamp(0.0, 1.0))
CAMERA_INPUTS = (MASK, DEPTH)


@dataclass(frozen=True)
class PolicyFeatures:
    cameras: dict[str, tuple[int, int, int]]  # observation.images.<cam> -> (C, H, W)
    state_dim: int
    action_dim: int
    fps: int
    state_names: tuple[str, ...] = field(default=())
    action_names: tuple[str, ...] = field(default=())
    # one field per CAMERA_INPUTS row, <prefix><cam> -> (H, W): the target masks, the depth maps
    masks: dict[str, tuple[int, int]] = field(default_factory=dict)
    depths: dict[str, tuple[int, int]] = field(default_factory=dict)
    # (C, H, W) of the picture of the target in the data's instructions ("pick up the <image>"); () when
    # the instructions are words only. Part of the data's contract whether or not a policy reads it.
    instruction_picture: tuple[int, ...] = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cameras"] = {k: list(v) for k, v in self.cameras.items()}
        if self.instruction_picture:  # absent for words: a text policy's record is as it was before pictures
            d["instruction_picture"] = list(self.instruction_picture)
        else:
            del d["instruction_picture"]
        d["state_names"], d["action_names"] = list(self.state_names), list(self.action_names)
        for extra in CAMERA_INPUTS:
            d[extra.field] = {k: list(v) for k, v in extra.shapes(self).items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PolicyFeatures":
        # a field a checkpoint lacks (written before that input existed) is an input it did not take
        extras = {e.field: {k: tuple(v) for k, v in d.get(e.field, {}).items()} for e in CAMERA_INPUTS}
        return cls(cameras={k: tuple(v) for k, v in d["cameras"].items()}, state_dim=int(d["state_dim"]),
                   action_dim=int(d["action_dim"]), fps=int(d["fps"]), state_names=tuple(d.get("state_names", ())),
                   action_names=tuple(d.get("action_names", ())),
                   instruction_picture=tuple(d.get("instruction_picture", ())), **extras)

    @classmethod
    def from_dataset_info(cls, info: dict, cameras: list[str] | None = None, masks: bool = False,
                          depth: bool = False) -> "PolicyFeatures":
        """From a LeRobotDataset's meta/info.json; ``cameras``: camera names to use (None: all);
        ``masks`` / ``depth``: the policy also takes the target mask / the depth of every camera it uses."""
        features = info["features"]
        available = [k for k, f in features.items() if k.startswith(IMAGE_PREFIX) and f["dtype"] in ("image", "video")]
        keys = available if cameras is None else [IMAGE_PREFIX + c for c in cameras]
        missing = [k for k in keys if k not in available] + [k for k in (STATE, ACTION) if k not in features]
        if missing:
            raise FeatureMismatch(f"the dataset lacks features {missing} that the policy needs; it has cameras {available}")
        if not keys:
            raise FeatureMismatch("the dataset has no camera images; a visuomotor policy needs at least one")
        cams = {}
        for k in keys:
            shape = tuple(features[k]["shape"])
            names = features[k].get("names") or []
            h, w, c = (shape[1], shape[2], shape[0]) if names[:1] == ["channels"] else shape
            cams[k] = (c, h, w)
        wanted = {MASK: masks, DEPTH: depth}
        extras = {e.field: dataset_shapes(features, e, cams) if wanted[e] else {} for e in CAMERA_INPUTS}
        picture = ()
        if INSTRUCTION_PICTURE in features:
            h, w, c = features[INSTRUCTION_PICTURE]["shape"]
            picture = (int(c), int(h), int(w))
        return cls(cameras=cams, state_dim=int(features[STATE]["shape"][0]), action_dim=int(features[ACTION]["shape"][0]),
                   fps=int(info["fps"]), state_names=tuple(features[STATE].get("names") or ()),
                   action_names=tuple(features[ACTION].get("names") or ()), instruction_picture=picture, **extras)

    def check_env(self, env) -> None:
        """Raises before any episode if ``env`` cannot feed this policy or take its actions."""
        base = env.unwrapped
        spaces = base.observation_space.spaces
        problems = []
        for key, (c, h, w) in self.cameras.items():
            if key not in spaces:
                problems.append(f"camera '{key}' missing (env has {[k for k in spaces if k.startswith(IMAGE_PREFIX)]})")
            elif tuple(spaces[key].shape) != (h, w, c):
                problems.append(f"camera '{key}' is {tuple(spaces[key].shape)} in the env, the policy takes {(h, w, c)}")
        for extra in CAMERA_INPUTS:
            for key, hw in extra.shapes(self).items():
                if key not in spaces:
                    problems.append(f"{extra.what} '{key}' missing (add the '{extra.modality}' modality to that camera)")
                elif tuple(spaces[key].shape[:2]) != hw:  # (the env's depth is H x W x 1)
                    problems.append(f"{extra.what} '{key}' is {tuple(spaces[key].shape[:2])} in the env, the policy takes {hw}")
        env_picture = spaces.get(INSTRUCTION_PICTURE)
        if self.instruction_picture and env_picture is None:
            problems.append("the data's instructions show the target as a picture and the env's name it in words: set "
                            "env.instruction to the data's mode (interleaved or image)")
        elif env_picture is not None and not self.instruction_picture:
            problems.append("the env's instructions show the target as a picture and the data's named it in words: set "
                            "env.instruction=text")
        elif env_picture is not None and tuple(env_picture.shape) != (*self.instruction_picture[1:], self.instruction_picture[0]):
            problems.append(f"the instruction's picture is {tuple(env_picture.shape[:2])} in the env and "
                            f"{self.instruction_picture[1:]} in the data: set env.instruction_picture_size to the data's")
        env_state = tuple(getattr(base, "state_names", ()))
        if spaces[STATE].shape[0] != self.state_dim:
            problems.append(f"state has {spaces[STATE].shape[0]} dims in the env, the policy takes {self.state_dim}"
                            + (f" ({list(self.state_names)}): set env.state and env.control_mode to the data's"
                               if self.state_names else ""))
        elif self.state_names and env_state and env_state != self.state_names:
            problems.append(f"the env's state is {list(env_state)}, the policy's {list(self.state_names)}; set "
                            "env.state and env.control_mode to those the data was collected with")
        if base.action_space.shape[0] != self.action_dim:
            problems.append(f"the env takes {base.action_space.shape[0]}-d actions, the policy gives {self.action_dim}")
        elif self.action_names and tuple(base.action_names) != tuple(self.action_names):
            # same size, other meaning: deltas sent to a pose controller (or back) move the arm anywhere
            problems.append(f"the env's actions are {list(base.action_names)} (control_mode={base.control_cfg.mode}), the "
                            f"policy's are {list(self.action_names)}; set env.control_mode to the one the data was collected in")
        if round(base.control_cfg.rate_hz) != self.fps:
            problems.append(f"the env runs at {base.control_cfg.rate_hz} Hz, the policy was trained at {self.fps}")
        if problems:
            raise FeatureMismatch("the policy cannot act in this env: " + "; ".join(problems))


def dataset_shapes(features: dict, extra: CameraInput, cameras: dict) -> dict[str, tuple[int, int]]:
    """``extra``'s [H, W] per camera of ``cameras`` from a dataset's features; raises if one lacks it
    or its size is not its image's."""
    lacking = [extra.key(k) for k in cameras if extra.key(k) not in features]
    if lacking:
        raise FeatureMismatch(f"the policy needs the {extra.what}s {lacking}, which the dataset lacks; collect with the "
                              f"'{extra.modality}' modality, e.g. env.cameras=[front:rgb+{extra.modality}]")
    shapes = {}
    for k, (_, h, w) in cameras.items():
        shapes[extra.key(k)] = tuple(features[extra.key(k)]["shape"][:2])
        if shapes[extra.key(k)] != (h, w):
            raise FeatureMismatch(f"'{extra.key(k)}' is {shapes[extra.key(k)]}, its image {(h, w)}")
    return shapes


def viewpoint_offset_key(image_key: str) -> str:
    """Where ``viewpoint_warp`` puts a camera's (yaw, pitch) offset in a training batch
    (``toyland.augment.viewpoint.OFFSET_KEY``); absent at evaluation, i.e. the nominal view."""
    return "augment.viewpoint_offset." + image_key.removeprefix("observation.images.")
