"""Fine-tuning: a training run that starts from another run's weights (``finetune.from=RUN``).

The policy is still built from the train config, and it must be the checkpoint's policy: the same
type, the same feature contract (cameras, state and action sizes of the new data) and the same
options up to the acting ones (``n_action_steps``, sampling steps). Anything else is refused with
the fields named, because silently taking the checkpoint's options would train something other
than what the config says.

``statistics`` says whose units the policy works in:

- ``checkpoint`` (default): the checkpoint's normalization statistics and the discrete heads'
  bins are kept and nothing is refitted. The weights keep the meaning they were trained with, and
  the fine-tuned run can be merged with its parent (``toyland merge``) tensor by tensor in the same
  units. New data whose actions leave the parent's min-max range is refused (``check_action_range``):
  the policy could never output those actions, and the fine-tune would learn a capped skill.
- ``data``: statistics and bins come from the new data (refitted), only the parameters are taken
  from the checkpoint, as a fine-tune on a skill whose actions span other ranges needs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file

from toyland.config_keys import reject_unknown_keys
from toyland.policies.checkpoint import IncompatibleCheckpoint, load_weights, policy_record, read_record
from toyland.policies.merge import ACTING_FIELDS, jsonable, sha256

FINETUNE_KEYS = {"from", "weights", "statistics"}
WEIGHT_FILES = {"ema": "ema.safetensors", "model": "model.safetensors"}
STATISTICS = ("checkpoint", "data")


@dataclass(frozen=True)
class Start:
    folder: Path  # the checkpoint folder
    file: Path  # the weights file
    record: dict  # its policy.json, migrated
    statistics: str

    @property
    def keeps_statistics(self) -> bool:
        return self.statistics == "checkpoint"

    def entry(self) -> dict:
        return {"from": str(self.folder), "weights": self.file.name, "sha256": sha256(self.file),
                "statistics": self.statistics}


def resolve_start(spec: dict | None) -> Start | None:
    """The checkpoint a run starts from (``finetune.from``: a checkpoint or training run folder), or
    None for a run from scratch."""
    from toyland.train.state import checkpoint_of

    spec = dict(spec or {})
    reject_unknown_keys(spec, FINETUNE_KEYS, "train config `finetune`")
    if not spec.get("from"):
        return None
    weights, statistics = spec.get("weights", "ema"), spec.get("statistics", "checkpoint")
    if weights not in WEIGHT_FILES:
        raise ValueError(f"finetune.weights={weights!r}; valid: {', '.join(WEIGHT_FILES)}")
    if statistics not in STATISTICS:
        raise ValueError(f"finetune.statistics={statistics!r}; valid: {', '.join(STATISTICS)}")
    folder = checkpoint_of(spec["from"], "finetune.from")
    file = folder.resolve() / WEIGHT_FILES[weights]
    if not file.is_file():  # no fallback from EMA to raw weights: they are different starting points
        raise FileNotFoundError(f"finetune.from={folder} has no {file.name} (saved: "
                                f"{sorted(p.name for p in folder.glob('*.safetensors'))}); set finetune.weights=model")
    return Start(folder.resolve(), file, read_record(folder), statistics)


def check_same_policy(start: Start, name: str, config, features) -> None:
    """The policy the config builds (checked before it is built) is the checkpoint's, up to acting
    options; else the differences."""
    from types import SimpleNamespace

    mine = jsonable(policy_record(SimpleNamespace(name=name, config=config, features=features)))
    theirs = jsonable(start.record)
    problems = []
    if mine["name"] != theirs["name"]:
        problems.append(f"policy type: the config builds '{mine['name']}', the checkpoint is '{theirs['name']}' "
                        f"(pass policy={theirs['name']})")
    else:
        fields = sorted(k for k in set(mine["config"]) | set(theirs["config"])
                        if mine["config"].get(k) != theirs["config"].get(k) and k not in ACTING_FIELDS)
        if fields:
            problems.append("policy options " + ", ".join(
                f"{k} (config {mine['config'].get(k)!r}, checkpoint {theirs['config'].get(k)!r})" for k in fields)
                + " (train with the checkpoint's options, e.g. its experiment=...)")
    features = sorted(k for k in set(mine["features"]) | set(theirs["features"])
                      if mine["features"].get(k) != theirs["features"].get(k))
    if features:
        problems.append("the new data's features differ: " + "; ".join(
            f"{k}: data {mine['features'].get(k)!r}, checkpoint {theirs['features'].get(k)!r}" for k in features))
    if problems:
        raise IncompatibleCheckpoint(f"cannot fine-tune from {start.folder}: " + "; ".join(problems))


def load_start(start: Start, policy) -> None:
    """Fills ``policy`` with the checkpoint's weights: all of them with ``statistics=checkpoint``, the
    parameters only (the policy's own statistics and bins kept) with ``statistics=data``."""
    tensors = load_file(start.file)
    if not start.keeps_statistics:
        own = policy.state_dict()
        buffers = {name for name, _ in policy.named_buffers()}
        tensors = {**{k: v for k, v in own.items() if k in buffers},
                   **{k: v for k, v in tensors.items() if k not in buffers}}
    load_weights(policy, tensors, str(start.file))


def write_record(start: Start, out: Path) -> None:
    """``finetune.json`` in the run folder: the parent's path and the sha256 of the weights it began from."""
    from toyland.files import write_json_atomic

    path = Path(out) / "finetune.json"
    entry = start.entry()
    if path.is_file() and json.loads(path.read_text())["sha256"] != entry["sha256"]:
        raise IncompatibleCheckpoint(f"{out} was started from other weights ({json.loads(path.read_text())}); "
                                     "use a new output_dir to fine-tune from these")
    write_json_atomic(path, entry)


# how far (in the normalized [-1, 1] range) the new data's actions may pass the parent's edges
ACTION_RANGE_TOLERANCE = 0.02


def check_action_range(start: Start, policy, stats: dict) -> None:
    """With the checkpoint's statistics kept, the new data's actions (``stats``, the sampler's) must lie
    inside the range those statistics express: min-max actions are clipped to [-1, 1] when sampled
    (diffusion) or binned inside it (discrete heads), so an action beyond the parent's extremes could
    never be output. Else refused, with the dimensions and the two ways out."""
    import torch

    from toyland.policies.features import ACTION

    norm = policy.normalizer
    if not start.keeps_statistics or norm.modes.get(ACTION) != "min_max":
        return
    shift, scale = (t.detach().cpu() for t in norm._params(ACTION))
    lo, hi = (torch.as_tensor(stats[ACTION][k], dtype=torch.float32).reshape(-1) for k in ("min", "max"))
    out = [d for d in range(len(shift)) if scale[d] > 0 and (
        (lo[d] - shift[d]) / scale[d] < -1 - ACTION_RANGE_TOLERANCE or (hi[d] - shift[d]) / scale[d] > 1 + ACTION_RANGE_TOLERANCE)]
    if out:
        dims = "; ".join(f"dim {d}: data {float(lo[d]):.3g} to {float(hi[d]):.3g}, checkpoint "
                         f"{float(shift[d] - scale[d]):.3g} to {float(shift[d] + scale[d]):.3g}" for d in out)
        raise IncompatibleCheckpoint(
            f"cannot fine-tune from {start.folder} keeping its statistics: the new data's actions leave the range "
            f"they express, and the policy could never output them ({dims}). Either train the parent with the new "
            "data among its sources at weight 0, so that its statistics span it (parent and fine-tune then share "
            "units, as a merge needs), or set finetune.statistics=data (the new data's units)")
