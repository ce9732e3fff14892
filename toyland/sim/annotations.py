"""Per-frame annotations a scripted expert records beside its demo frames: privileged labels of what
it is doing (dense annotations for co-training and auxiliary targets, and for diagnosing demos).
Defined in ``sim`` because the experts produce them."""

import numpy as np

# The grasp a scripted expert is executing: the tcp target position and the jaw yaw as
# (cos 2 yaw, sin 2 yaw), the jaw being symmetric under a half turn.
GRASP_ANNOTATION = "annotation.grasp"
GRASP_NAMES = ("x", "y", "z", "cos2yaw", "sin2yaw")

# The phase of the skill the expert is in at each frame (dense language annotation: "approach",
# "grasp", "lift", ...), one-hot over one vocabulary shared by every expert, so demos of different
# tasks mix under one label set.
PHASE_ANNOTATION = "annotation.phase"
PHASES = ("approach", "descend", "close", "lift", "retreat", "carry", "lower", "release", "clear", "push", "back_off")


def phase_feature() -> dict:
    return {"dtype": "float32", "shape": (len(PHASES),), "names": list(PHASES)}


def phase_one_hot(phase: str) -> np.ndarray:
    if phase not in PHASES:
        raise ValueError(f"expert phase {phase!r} is not in the annotation vocabulary {PHASES}; add it there")
    out = np.zeros(len(PHASES), dtype=np.float32)
    out[PHASES.index(phase)] = 1.0
    return out


# With every object's mask (env masks=objects): the id the instructed target has in this episode's
# masks (0 were it in none). A label for training a policy to ground the instruction in the object
# tokens (the VLA's grounding_aux), never an input.
TARGET_ANNOTATION = "annotation.target_id"


def target_feature() -> dict:
    return {"dtype": "float32", "shape": (1,), "names": ["id"]}
