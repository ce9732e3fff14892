"""Policy checkpoints: a folder with ``model.safetensors`` (weights and normalization buffers),
``policy.json`` (format version, policy name, resolved config, features) and ``stats.json`` (readable
copy of the normalization statistics). Written to a temporary folder and renamed into place, so a
reader never sees half a checkpoint. No pickles.

``policy.json`` stores every config field and unknown fields are refused, so a change to the config's
fields bumps ``FORMAT_VERSION`` and adds one entry to ``MIGRATIONS``, which brings an older record up
to date as it is read (``read_record``): an option removed while off is dropped, one that was on is
refused with the commit that still has it; a changed default is pinned to its old value where an old
record lacks the field.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import torch
from safetensors.torch import load_file, save_file

from toyland.policies.features import PolicyFeatures

POLICY_FILE, WEIGHTS_FILE = "policy.json", "model.safetensors"
FORMAT_VERSION = 3  # policy.json's layout and config fields; a record without "format_version" is format 1


class IncompatibleCheckpoint(ValueError):
    pass


def policy_record(policy) -> dict:
    # asdict: every field, defaults included, so a later change of a default does not change an old checkpoint
    return {"format_version": FORMAT_VERSION, "name": policy.name, "config": dataclasses.asdict(policy.config),
            "features": policy.features.to_dict()}


# --- migrations: what changed in the config fields between formats ------------------------------
@dataclass(frozen=True)
class Removed:
    """A removed option: a record with its ``off`` value (the old default) loses the field, any other is refused."""

    policy: str
    key: str
    off: object

    def apply(self, config: dict, refuse: Callable[[str], None]) -> None:
        if self.key in config:
            if config[self.key] != self.off:
                refuse(f"{self.key}={config[self.key]!r}")
            del config[self.key]


@dataclass(frozen=True)
class RemovedChoice:
    """A removed value of an option that stays: a record with it is refused, others are kept."""

    policy: str
    key: str
    value: object

    def apply(self, config: dict, refuse: Callable[[str], None]) -> None:
        if config.get(self.key) == self.value:
            refuse(f"{self.key}={self.value!r}")


@dataclass(frozen=True)
class MovedToTraining:
    """A training-only option that left the policy (e.g. for the trainer's ``augment`` list): dropped
    whatever its value, since it never acted on the weights' actions."""

    policy: str
    key: str
    to: str  # where it lives now, for the record

    def apply(self, config: dict, refuse: Callable[[str], None]) -> None:
        config.pop(self.key, None)


@dataclass(frozen=True)
class OldDefault:
    """A changed default: a record that lacks the field (written before the field existed) meant the old one."""

    policy: str
    key: str
    value: object

    def apply(self, config: dict, refuse: Callable[[str], None]) -> None:
        config.setdefault(self.key, self.value)


@dataclass(frozen=True)
class Migration:
    """Brings a record of format ``to_version - 1`` to ``to_version``; ``last_commit``: the last toyland
    commit that reads the older format's options, named when a record is refused."""

    to_version: int
    last_commit: str
    why: str  # why the removed options went, for the refusal
    changes: tuple

    def __call__(self, record: dict, source: str) -> dict:
        name = record["name"]
        record = {**record, "config": dict(record["config"]), "format_version": self.to_version}

        def refuse(option: str) -> None:
            raise IncompatibleCheckpoint(
                f"{source}: policy '{name}' option {option} was removed in checkpoint format {self.to_version} "
                f"({self.why}); toyland commit {self.last_commit} is the last that has it: load the checkpoint "
                f"there (git checkout {self.last_commit})")

        for change in self.changes:
            if change.policy == name:
                change.apply(record["config"], refuse)
        return record


# format N -> the migration to N + 1
MIGRATIONS: Mapping[int, Migration] = MappingProxyType({
    1: Migration(2, "ff9bdd5", "measured as no gain, README", (
        Removed("diffusion", "state_noise", 0.0),
        Removed("diffusion", "relative_actions", False),
        Removed("diffusion", "symmetric_yaw", False),
        Removed("diffusion", "episode_noise", False),
        Removed("diffusion", "grasp_aux", 0.0),
        RemovedChoice("diffusion", "pool", "flatten_keypoints"),
        Removed("vla", "symmetric_yaw", False),
        # the VLA's defaults became the measured recipe
        OldDefault("vla", "stem", "linear"),
        OldDefault("vla", "det_pool_slots", 1),
        OldDefault("vla", "det_pool_geometry", False),
        OldDefault("vla", "crop_coords", False),
    )),
    2: Migration(3, "41a25ec", "train-time augmentations moved to the trainer's `augment` list, docs/augment.md", (
        MovedToTraining("diffusion", "colour_jitter", "augment=[{name: colour_jitter, brightness: b, contrast: c, "
                                                      "saturation: s, hue: h}]"),
        OldDefault("diffusion", "viewpoint_embedding", False),
        OldDefault("vla", "viewpoint_embedding", False),
    )),
})


def migrate(record: dict, source: str = "checkpoint") -> dict:
    """A ``policy.json`` record of any format up to ``FORMAT_VERSION``, brought to the current format."""
    version = int(record.get("format_version", 1))
    if version > FORMAT_VERSION:
        raise IncompatibleCheckpoint(f"{source} has checkpoint format {version}; this toyland reads formats up to "
                                     f"{FORMAT_VERSION}: update toyland")
    while version < FORMAT_VERSION:
        record = MIGRATIONS[version](record, source)
        version = record["format_version"]
    return record


def write_atomically(folder: Path, write) -> Path:
    """``write(tmp_folder)`` fills a fresh folder that then replaces ``folder`` in one rename."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    old = folder.with_name(f".{folder.name}.old")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return folder


def state_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses shared storage; contiguous copies on the CPU
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


def save_policy(policy, folder: str | Path, extra: dict[str, dict[str, torch.Tensor]] | None = None,
                info: dict | None = None) -> Path:
    """``extra``: more tensor files (e.g. ``{"ema": ..., "optimizer": ...}``) saved as <name>.safetensors."""

    def write(tmp: Path):
        save_file(state_tensors(policy), tmp / WEIGHTS_FILE)
        (tmp / POLICY_FILE).write_text(json.dumps({**policy_record(policy), **(info or {})}, indent=2))
        stats = {n: b.tolist() for n, b in policy.normalizer.named_buffers()}
        (tmp / "stats.json").write_text(json.dumps(stats))
        for name, tensors in (extra or {}).items():
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp / f"{name}.safetensors")

    return write_atomically(Path(folder), write)


def read_record(folder: str | Path) -> dict:
    """A checkpoint's ``policy.json``, migrated to the current format (see ``MIGRATIONS``)."""
    folder = Path(folder)
    if not (folder / POLICY_FILE).is_file():
        raise FileNotFoundError(f"{folder} is not a toyland policy checkpoint (no {POLICY_FILE})")
    return migrate(json.loads((folder / POLICY_FILE).read_text()), str(folder))


def load_policy(folder: str | Path, weights: str = "model", device: str | torch.device = "cpu"):
    """Rebuilds the policy of a checkpoint; ``weights="ema"`` loads the EMA weights when saved."""
    from toyland.policies.registry import make_policy

    folder = Path(folder)
    record = read_record(folder)
    features = PolicyFeatures.from_dict(record["features"])
    policy = make_policy({"name": record["name"], **record["config"]}, features, stats=None)
    path = folder / (WEIGHTS_FILE if weights == "model" else f"{weights}.safetensors")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; saved weights: {sorted(p.stem for p in folder.glob('*.safetensors'))}")
    load_weights(policy, load_file(path), str(path))
    return policy.to(device).eval()


def load_weights(policy, tensors: dict, source: str) -> None:
    own = policy.state_dict()
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    wrong = sorted(k for k in set(own) & set(tensors) if own[k].shape != tensors[k].shape)
    if missing or unexpected or wrong:
        raise IncompatibleCheckpoint(
            f"{source} does not fit policy '{policy.name}' with this config: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, shape mismatch {[(k, tuple(tensors[k].shape), tuple(own[k].shape)) for k in wrong[:5]]}"
        )
    policy.load_state_dict(tensors)
