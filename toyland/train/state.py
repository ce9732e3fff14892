"""Training checkpoints: the policy checkpoint (see toyland.policies.checkpoint) plus EMA weights,
optimizer tensors and a JSON of the step, scheduler and evaluation history. Folders are
``checkpoints/step_<k>``; ``checkpoints/last`` names the newest and is replaced atomically after
the folder is complete."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from toyland.policies.checkpoint import IncompatibleCheckpoint, load_weights, read_record, save_policy, policy_record

CHECKPOINTS = "checkpoints"
STATE_FILE = "train_state.json"
KEEP = 2  # step folders kept besides the newest


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """safetensors can hold only tensors: per-parameter state flattened to ``<index>.<name>``."""
    sd = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, state in sd["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def restore_optimizer(optimizer, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for key, value in meta["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def checkpoint_folder(out: Path, step: int) -> Path:
    return Path(out) / CHECKPOINTS / f"step_{step:07d}"


def save_training(out: Path, step: int, policy, optimizer, scheduler, ema, cfg: dict, history: list,
                  train_s: float | None) -> Path:
    """A resumable checkpoint; ``train_s``: optimization time up to ``step`` over every run that reached it
    (None: unknown, a run resumed from a checkpoint that did not store it)."""
    folder = checkpoint_folder(out, step)
    opt_tensors, opt_meta = optimizer_tensors(optimizer)
    extra = {"optimizer": opt_tensors}
    if ema is not None:
        extra["ema"] = {k: v for k, v in ema.module.state_dict().items()}
    info = {"train_state": {"step": step, "scheduler": scheduler.state_dict(), "optimizer": opt_meta,
                            "history": history, "train_config": cfg,
                            "train_s": None if train_s is None else round(train_s, 3)}}
    save_policy(policy, folder, extra=extra, info=info)
    pointer = folder.parent / "last"
    tmp = pointer.with_suffix(".tmp")
    tmp.write_text(folder.name)
    os.replace(tmp, pointer)
    steps = sorted(p for p in folder.parent.glob("step_*") if p.is_dir())
    for old in steps[: -KEEP - 1]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def latest_checkpoint(out: Path) -> Path | None:
    """The folder ``checkpoints/last`` names; when a kill fell between the two renames of replacing it,
    the newest complete ``step_*`` folder (or the previous copy of the named one), never None while a
    complete checkpoint exists."""
    root = Path(out) / CHECKPOINTS
    pointer = root / "last"
    if pointer.is_file():
        folder = root / pointer.read_text().strip()
        if (folder / "policy.json").is_file():
            return folder
        old = root / f".{folder.name}.old"  # replaced in place and killed before the new copy was renamed in
        if (old / "policy.json").is_file():
            os.replace(old, folder)
            return folder
    complete = sorted(p for p in root.glob("step_*") if (p / "policy.json").is_file())
    return complete[-1] if complete else None


def checkpoint_of(path: str | Path, role: str) -> Path:
    """A checkpoint folder as given, or a training run folder's newest complete checkpoint; the errors
    name ``role`` (what the path was given as, e.g. ``base`` or ``finetune.from``)."""
    folder = Path(path).expanduser()
    if (folder / CHECKPOINTS).is_dir():
        newest = latest_checkpoint(folder)
        if newest is None:
            raise FileNotFoundError(f"{role} {folder} is a training run with no complete checkpoint yet")
        return newest
    if not folder.is_dir():
        raise FileNotFoundError(f"{role} {folder} does not exist; give a checkpoint or training run folder")
    if not (folder / "policy.json").is_file():
        raise FileNotFoundError(f"{role} {folder} is neither a toyland checkpoint folder (no policy.json) nor a "
                                "training run folder (no checkpoints/)")
    return folder


def restore_training(folder: Path, policy, optimizer, scheduler, ema, cfg: dict) -> tuple[int, list, float]:
    """(step, evaluation history, optimization seconds so far) of a checkpoint, its state loaded."""
    record = read_record(folder)
    mine = policy_record(policy)
    differs = [k for k in ("name", "config", "features") if json.loads(json.dumps(record[k])) != json.loads(json.dumps(mine[k]))]
    if differs:
        raise IncompatibleCheckpoint(
            f"{folder} was trained with a different policy {differs}: checkpoint {[record[k] for k in differs]} vs now "
            f"{[mine[k] for k in differs]}; resume with the same policy config or use a new output_dir"
        )
    load_weights(policy, load_file(folder / "model.safetensors"), str(folder))
    state = record["train_state"]
    restore_optimizer(optimizer, load_file(folder / "optimizer.safetensors"), state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if ema is not None:
        ema_path = folder / "ema.safetensors"
        if not ema_path.is_file():
            raise IncompatibleCheckpoint(f"{folder} has no EMA weights; resume with ema.enabled=false")
        ema.module.load_state_dict(load_file(ema_path))
        ema.n_averaged.fill_(state["step"])
    return int(state["step"]), list(state["history"]), training_seconds(state)


def training_seconds(state: dict) -> float | None:
    """A checkpoint's optimization time so far, or None where unknown: checkpoints from before it was
    stored give it only through an evaluation at their own step."""
    if "train_s" in state:
        return None if state["train_s"] is None else float(state["train_s"])
    last = state["history"][-1] if state.get("history") else {}
    return float(last["train_s"]) if last.get("step") == state.get("step") and "train_s" in last else None
