"""The LeRobotDataset feature schema of a toyland env, and the per-frame conversion into it.

Camera RGB becomes an ``image`` (PNG) or ``video`` feature; depth (metres), segmentation
labels, target masks and the instruction's picture of the target become plain arrays, because lerobot's image writer only takes three-channel pictures.
Every camera's geometry is recorded per frame (factors move the world cameras, the wrist camera moves
with the hand): ``camera.intrinsics.<cam>`` [3, 3] (OpenCV frame, pixel centres at integer
coordinates) and ``camera.pose.<cam>`` [4, 4] camera-to-world in MuJoCo's camera convention.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from toyland.sim.instructions import INSTRUCTION_PICTURE


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
        elif key == INSTRUCTION_PICTURE:  # a plain array like the masks: the same small picture every frame
            features[key] = {"dtype": "uint8", "shape": tuple(space.shape), "names": ["height", "width", "channels"]}
        else:
            raise ValueError(f"no dataset feature for observation '{key}'")
    features["action"] = {"dtype": "float32", "shape": tuple(base.action_space.shape), "names": list(base.action_names)}
    return features


CAMERA_GEOMETRY = ("camera.intrinsics.", "camera.pose.")  # feature prefixes, optional in a dataset


def camera_features(env: gym.Env) -> dict[str, dict]:
    """The per-frame geometry features of ``env``'s cameras (none for an env without cameras)."""
    features = {}
    for cam in env.unwrapped.cameras:
        features[f"camera.intrinsics.{cam.name}"] = {"dtype": "float32", "shape": (3, 3), "names": ["row", "column"]}
        features[f"camera.pose.{cam.name}"] = {"dtype": "float32", "shape": (4, 4), "names": ["row", "column"]}
    return features


def camera_frame(env: gym.Env) -> dict[str, np.ndarray]:
    """Every camera's intrinsics and pose as the env last rendered them (call at observation time)."""
    from toyland.sim.cameras import camera_geometry

    base = env.unwrapped
    scene = base.scene
    frame = {}
    for cam in base.cameras:
        K, pose = camera_geometry(scene.model, scene.data, scene.camera_name(cam.name), cam.height, cam.width)
        frame[f"camera.intrinsics.{cam.name}"] = K.astype(np.float32)
        frame[f"camera.pose.{cam.name}"] = pose.astype(np.float32)
    return frame


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
