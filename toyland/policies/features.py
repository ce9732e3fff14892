"""The typed contract between data, env and policy: which cameras, which state, what action.

A policy is built for a ``PolicyFeatures``; training checks it against the datasets, evaluation
against the env, and both fail before any step with the mismatch named.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

STATE, ACTION = "observation.state", "action"
IMAGE_PREFIX = "observation.images."


class FeatureMismatch(ValueError):
    pass


@dataclass(frozen=True)
class PolicyFeatures:
    cameras: dict[str, tuple[int, int, int]]  # observation.images.<cam> -> (C, H, W)
    state_dim: int
    action_dim: int
    fps: int
    state_names: tuple[str, ...] = field(default=())
    action_names: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cameras"] = {k: list(v) for k, v in self.cameras.items()}
        d["state_names"], d["action_names"] = list(self.state_names), list(self.action_names)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PolicyFeatures":
        return cls(cameras={k: tuple(v) for k, v in d["cameras"].items()}, state_dim=int(d["state_dim"]),
                   action_dim=int(d["action_dim"]), fps=int(d["fps"]), state_names=tuple(d.get("state_names", ())),
                   action_names=tuple(d.get("action_names", ())))

    @classmethod
    def from_dataset_info(cls, info: dict, cameras: list[str] | None = None) -> "PolicyFeatures":
        """From a LeRobotDataset's meta/info.json; ``cameras``: camera names to use (None: all)."""
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
        return cls(cameras=cams, state_dim=int(features[STATE]["shape"][0]), action_dim=int(features[ACTION]["shape"][0]),
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
        if spaces[STATE].shape[0] != self.state_dim:
            problems.append(f"state has {spaces[STATE].shape[0]} dims in the env, the policy takes {self.state_dim}")
        if base.action_space.shape[0] != self.action_dim:
            problems.append(f"the env takes {base.action_space.shape[0]}-d actions, the policy gives {self.action_dim}")
        if round(base.control_cfg.rate_hz) != self.fps:
            problems.append(f"the env runs at {base.control_cfg.rate_hz} Hz, the policy was trained at {self.fps}")
        if problems:
            raise FeatureMismatch("the policy cannot act in this env: " + "; ".join(problems))
