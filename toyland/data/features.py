"""The LeRobotDataset feature schema of a toyland env, and the per-frame conversion into it.

Camera RGB becomes an ``image`` (PNG) or ``video`` feature; depth (metres), segmentation
labels and target masks become plain arrays, because lerobot's image writer only takes three-channel pictures.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


MAX_LABEL = 255  # segmentation labels are stored as uint8: 0 background, 1 arena, 2 robot, 3+ objects


def env_features(env: gym.Env, video: bool = False) -> dict[str, dict]:
    """lerobot features for every observation of ``env`` plus ``action`` (``task`` is implicit)."""
    base = env.unwrapped
    features: dict[str, dict] = {}
    for key, space in base.observation_space.spaces.items():
        if key == "task":
            continue
        if key.startswith("observation.images."):
            features[key] = {"dtype": "video" if video else "image", "shape": tuple(space.shape),
                             "names": ["height", "width", "channels"]}
        elif key.startswith("observation.depth."):
            features[key] = {"dtype": "float32", "shape": tuple(space.shape[:2]), "names": ["height", "width"]}
        elif key.startswith(("observation.segmentation.", "observation.masks.")):
            features[key] = {"dtype": "uint8", "shape": tuple(space.shape), "names": ["height", "width"]}
        elif key == "observation.state":
            features[key] = {"dtype": "float32", "shape": tuple(space.shape), "names": list(base.state_names)}
        else:
            raise ValueError(f"no dataset feature for observation '{key}'")
    features["action"] = {"dtype": "float32", "shape": tuple(base.action_space.shape), "names": list(base.action_names)}
    return features


def to_frame(obs: dict, action: np.ndarray) -> dict:
    """One dataset frame from an observation and the action taken in it."""
    frame = {}
    for key, value in obs.items():
        if key.startswith("observation.depth."):
            value = value[..., 0]
        elif key.startswith("observation.segmentation."):
            if value.max(initial=0) > MAX_LABEL:
                raise ValueError(f"segmentation label {value.max()} does not fit the uint8 dataset feature '{key}'")
            value = np.maximum(value, 0).astype(np.uint8)  # -1 (no geom) is background
        frame[key] = value
    frame["action"] = np.asarray(action, dtype=np.float32)
    return frame
