"""The typed contract between data, env and policy: which cameras, which state, what action.

A policy is built for a ``PolicyFeatures``; training checks it against the datasets, evaluation
against the env, and both fail before any step with the mismatch named.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

STATE, ACTION = "observation.state", "action"
IMAGE_PREFIX = "observation.images."
MASK_PREFIX = "observation.masks."
DEPTH_PREFIX = "observation.depth."
DEPTH_RANGE = 1.5  # metres; a depth channel is the distance clipped to this, over it: [0, 1] like the RGB


def mask_key(camera_key: str) -> str:
    """``observation.images.<cam>`` -> ``observation.masks.<cam>`` (the target's mask in that view)."""
    return MASK_PREFIX + camera_key[len(IMAGE_PREFIX):]


def depth_key(camera_key: str) -> str:
    """``observation.images.<cam>`` -> ``observation.depth.<cam>`` (metric depth in that view)."""
    return DEPTH_PREFIX + camera_key[len(IMAGE_PREFIX):]


class FeatureMismatch(ValueError):
    pass


def check_masks(features: "PolicyFeatures", option: str) -> None:
    """Raises unless every camera of ``features`` comes with its target mask."""
    lacking = [mask_key(k) for k in features.cameras if mask_key(k) not in features.masks]
    if lacking:
        raise FeatureMismatch(f"{option} needs the target masks {lacking}; collect with the 'mask' modality on those "
                              f"cameras (env.cameras=[front:rgb+mask]), or set policy.{option}=false")


def check_depth(features: "PolicyFeatures") -> None:
    """Raises unless every camera of ``features`` comes with its depth map."""
    lacking = [depth_key(k) for k in features.cameras if depth_key(k) not in features.depths]
    if lacking:
        raise FeatureMismatch(f"depth needs the depth maps {lacking}; collect with the 'depth' modality on those "
                              "cameras (env.cameras=[wrist:rgb+depth]), or set policy.depth=false")


def batch_mask(batch: dict, camera_key: str, images: torch.Tensor) -> torch.Tensor:
    """The [B, T, 1, H, W] float target mask of a camera in a batch, checked against its images."""
    mask = batch[mask_key(camera_key)].float()
    if mask.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"'{mask_key(camera_key)}' is {tuple(mask.shape[-2:])}, its image {tuple(images.shape[-2:])}; "
                         "a detector's mask must have the camera image's size")
    return mask[:, :, None]


def batch_depth(batch: dict, camera_key: str, images: torch.Tensor) -> torch.Tensor:
    """The [B, T, 1, H, W] depth channel of a camera in a batch (metres / DEPTH_RANGE, clipped to [0, 1])."""
    depth = batch[depth_key(camera_key)].float()
    if depth.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"'{depth_key(camera_key)}' is {tuple(depth.shape[-2:])}, its image {tuple(images.shape[-2:])}; "
                         "a depth map must have the camera image's size")
    return (depth / DEPTH_RANGE).clamp(0.0, 1.0)[:, :, None]


@dataclass(frozen=True)
class PolicyFeatures:
    cameras: dict[str, tuple[int, int, int]]  # observation.images.<cam> -> (C, H, W)
    state_dim: int
    action_dim: int
    fps: int
    state_names: tuple[str, ...] = field(default=())
    action_names: tuple[str, ...] = field(default=())
    # observation.masks.<cam> -> (H, W): the instructed object's mask per camera, for object-centric
    # policies; in sim from segmentation, on a robot from any detector that fills the same key
    masks: dict[str, tuple[int, int]] = field(default_factory=dict)
    # observation.depth.<cam> -> (H, W): metric depth per camera, for policies that take it
    depths: dict[str, tuple[int, int]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cameras"] = {k: list(v) for k, v in self.cameras.items()}
        d["state_names"], d["action_names"] = list(self.state_names), list(self.action_names)
        d["masks"] = {k: list(v) for k, v in self.masks.items()}
        d["depths"] = {k: list(v) for k, v in self.depths.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PolicyFeatures":
        return cls(cameras={k: tuple(v) for k, v in d["cameras"].items()}, state_dim=int(d["state_dim"]),
                   action_dim=int(d["action_dim"]), fps=int(d["fps"]), state_names=tuple(d.get("state_names", ())),
                   action_names=tuple(d.get("action_names", ())),
                   masks={k: tuple(v) for k, v in d.get("masks", {}).items()},
                   depths={k: tuple(v) for k, v in d.get("depths", {}).items()})

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
        mask_shapes = {}
        if masks:
            lacking = [mask_key(k) for k in keys if mask_key(k) not in features]
            if lacking:
                raise FeatureMismatch(
                    f"the policy needs the target masks {lacking}, which the dataset lacks; collect with the 'mask' "
                    "modality, e.g. env.cameras='{front: {modalities: [rgb, mask]}}'")
            for k in keys:
                mask_shapes[mask_key(k)] = tuple(features[mask_key(k)]["shape"][:2])
                if mask_shapes[mask_key(k)] != cams[k][1:]:
                    raise FeatureMismatch(f"'{mask_key(k)}' is {mask_shapes[mask_key(k)]}, its image {cams[k][1:]}")
        depth_shapes = {}
        if depth:
            lacking = [depth_key(k) for k in keys if depth_key(k) not in features]
            if lacking:
                raise FeatureMismatch(
                    f"the policy needs the depth maps {lacking}, which the dataset lacks; collect with the 'depth' "
                    "modality, e.g. env.cameras=[front:rgb+depth,wrist:rgb+depth]")
            for k in keys:
                depth_shapes[depth_key(k)] = tuple(features[depth_key(k)]["shape"][:2])
                if depth_shapes[depth_key(k)] != cams[k][1:]:
                    raise FeatureMismatch(f"'{depth_key(k)}' is {depth_shapes[depth_key(k)]}, its image {cams[k][1:]}")
        return cls(cameras=cams, masks=mask_shapes, depths=depth_shapes, state_dim=int(features[STATE]["shape"][0]), action_dim=int(features[ACTION]["shape"][0]),
                   fps=int(info["fps"]), state_names=tuple(features[STATE].get("names") or ()),
                   action_names=tuple(features[ACTION].get("names") or ()))

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
        for key, hw in self.masks.items():
            if key not in spaces:
                problems.append(f"target mask '{key}' missing (add the 'mask' modality to that camera)")
            elif tuple(spaces[key].shape) != hw:
                problems.append(f"target mask '{key}' is {tuple(spaces[key].shape)} in the env, the policy takes {hw}")
        for key, hw in self.depths.items():
            if key not in spaces:
                problems.append(f"depth '{key}' missing (add the 'depth' modality to that camera)")
            elif tuple(spaces[key].shape[:2]) != hw:
                problems.append(f"depth '{key}' is {tuple(spaces[key].shape[:2])} in the env, the policy takes {hw}")
        if spaces[STATE].shape[0] != self.state_dim:
            problems.append(f"state has {spaces[STATE].shape[0]} dims in the env, the policy takes {self.state_dim}")
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
