"""Policy checkpoints: a folder with ``model.safetensors`` (weights and normalization buffers),
``policy.json`` (policy name, resolved config, features) and ``stats.json`` (readable copy of the
normalization statistics). Written to a temporary folder and renamed into place, so a reader
never sees half a checkpoint. No pickles."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from toyland.policies.features import PolicyFeatures

POLICY_FILE, WEIGHTS_FILE = "policy.json", "model.safetensors"


class IncompatibleCheckpoint(ValueError):
    pass


def policy_record(policy) -> dict:
    return {"name": policy.name, "config": dataclasses.asdict(policy.config), "features": policy.features.to_dict()}


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
    folder = Path(folder)
    if not (folder / POLICY_FILE).is_file():
        raise FileNotFoundError(f"{folder} is not a toyland policy checkpoint (no {POLICY_FILE})")
    return json.loads((folder / POLICY_FILE).read_text())


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
