"""Weight merging of two checkpoints of one policy (RETAIN, arXiv 2512.08333):
theta = (1 - alpha) theta_base + alpha theta_finetuned, with one alpha per module group.

``GROUPS`` maps each policy type's module groups to the parameter-name prefixes they own; every
parameter of a policy falls in exactly one group (checked, so a new module cannot slip through
unmerged). Buffers are not weights: the normalization statistics, the discrete heads' quantile bins
and their ``fitted`` flag are copied whole from one parent (``statistics``, the fine-tuned one by
default, see docs/policies.md), never interpolated. The result is an ordinary checkpoint whose
``policy.json`` carries a ``merge`` record (parents, sha256 of their weights, alphas, statistics).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import torch
from safetensors.torch import load_file

from toyland.policies.checkpoint import (POLICY_FILE, WEIGHTS_FILE, IncompatibleCheckpoint, load_weights, read_record,
                                         save_policy)

# policy type -> module group -> module paths (a parameter belongs to a path when its name is the path
# or starts with "<path>.")
GROUPS: Mapping[str, Mapping[str, tuple[str, ...]]] = MappingProxyType({
    "diffusion": MappingProxyType({
        "vision": ("encoders", "viewpoint_embed"),  # per-camera conv encoders, the warp offset embedding
        "language": ("language",),  # projection of the MiniLM sentence embedding
        "trunk": ("denoiser.step", "denoiser.down", "denoiser.mid", "denoiser.up"),  # the FiLM U-Net's body
        "head": ("denoiser.final",),  # its last conv block and the projection to actions
        "embodiment": ("embodiment",),  # the embedding of the embodiment acting (co-training across robots)
        "auxiliary": ("phase_head", "action_token_head"),  # training-only heads: acting never runs them
    }),
    "vla": MappingProxyType({
        "vision": ("vision", "pool", "camera", "viewpoint_embed"),  # patch encoders, DetPool, camera embeddings
        # the MiniLM tokens' projection, the instruction picture's encoder, the instruction-to-object matcher
        # and its own encoders and DetPool where it has them (grounding_vision=own)
        "language": ("language_in", "picture", "picture_type", "matcher", "match_vision", "match_pool"),
        "trunk": ("blocks", "norm", "frame", "state_in", "state_type"),  # transformer over all tokens, proprioception
        "head": ("head",),  # action decoder (its quantile bins are buffers: statistics)
        "auxiliary": ("grounding",),  # training-only: the grounding loss's object score (grounding_aux)
    }),
})
WEIGHT_FILES = {"ema": "ema.safetensors", "raw": WEIGHTS_FILE}
STATISTICS = ("finetuned", "base")
# config fields that only say how the weights act (not what they mean): taken from the fine-tuned parent
ACTING_FIELDS = frozenset({"n_action_steps", "inference_steps", "flow_steps", "memory_format"})


@dataclass(frozen=True)
class Parent:
    role: str  # "base" or "finetuned"
    folder: Path  # the checkpoint folder
    file: Path  # the weights file merged
    record: dict  # policy.json, migrated

    @classmethod
    def resolve(cls, role: str, path: str | Path, weights: str) -> "Parent":
        """A checkpoint folder or a training run folder (its newest checkpoint), as ``toyland eval`` takes."""
        from toyland.train.state import checkpoint_of

        folder = checkpoint_of(Path(path).expanduser().resolve(), role).resolve()
        file = folder / WEIGHT_FILES[weights]
        if not file.is_file():  # no silent fallback: merging raw with EMA weights would mix two things
            raise FileNotFoundError(f"{role} {folder} has no {file.name} (saved: "
                                    f"{sorted(p.name for p in folder.glob('*.safetensors'))}); use weights=raw")
        return cls(role, folder, file, read_record(folder))

    def entry(self) -> dict:
        return {"path": str(self.folder), "weights": self.file.name, "sha256": sha256(self.file)}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def owns(path: str, name: str) -> bool:
    return name == path or name.startswith(path + ".")


def group_of(policy_name: str, parameters) -> dict[str, str]:
    """Parameter name -> its module group; a parameter in no group or in two is an error."""
    if policy_name not in GROUPS:
        raise IncompatibleCheckpoint(f"merging knows the module groups of policies {sorted(GROUPS)}, not "
                                     f"'{policy_name}': add its groups to GROUPS in toyland/policies/merge.py")
    out, problems = {}, []
    for name in parameters:
        hits = [g for g, paths in GROUPS[policy_name].items() if any(owns(p, name) for p in paths)]
        if len(hits) != 1:
            problems.append(f"{name} ({'no group' if not hits else 'groups ' + ', '.join(hits)})")
        else:
            out[name] = hits[0]
    if problems:
        raise IncompatibleCheckpoint(f"policy '{policy_name}' parameters not in exactly one merge group: "
                                     f"{problems[:8]}; fix GROUPS in toyland/policies/merge.py")
    return out


def _read(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(file)
    except Exception as exc:  # safetensors' own error type for a truncated or foreign file
        raise IncompatibleCheckpoint(f"{file} is not a readable safetensors file ({exc}); "
                                     "was it copied whole?") from exc


def resolve_alphas(policy_name: str, groups: dict[str, str], alpha: float, alphas: Mapping[str, float]) -> dict[str, float]:
    """One alpha per group this policy has: ``alphas[group]`` or the default ``alpha``."""
    table = GROUPS[policy_name]
    unknown = sorted(set(alphas) - set(table))
    if unknown:
        raise ValueError(f"alphas for unknown groups {unknown}; policy '{policy_name}' has groups {sorted(table)}")
    present = set(groups.values())
    absent = sorted(set(alphas) - present)
    if absent:
        raise ValueError(f"alphas for groups {absent} that this '{policy_name}' checkpoint has no parameters in "
                         f"(its config leaves them out); it has {sorted(present)}")
    check_alpha_values(alpha, alphas)
    return {g: float(alphas.get(g, alpha)) for g in table if g in present}


def check_alpha_values(alpha, alphas: Mapping) -> None:
    """``alpha`` and every ``alphas`` value are numbers in [0, 1]; else the offending ones, named."""
    given = {"alpha": alpha, **{f"alphas.{g}": a for g, a in alphas.items()}}
    bad = {k: a for k, a in given.items()
           if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0.0 <= a <= 1.0}
    if bad:
        raise ValueError(f"{bad}: alphas are numbers, none outside [0, 1] (0: the base's weights, 1: the fine-tuned's)")


def check_compatible(base: Parent, ft: Parent, tb: dict, tf: dict) -> None:
    """Same policy type, feature contract, tensor names and shapes, and config up to acting fields;
    the refusal names what differs."""
    rb, rf = base.record, ft.record
    if rb["name"] != rf["name"]:
        raise IncompatibleCheckpoint(f"different policy types: base is '{rb['name']}', fine-tuned '{rf['name']}'")
    fb, ff = jsonable(rb["features"]), jsonable(rf["features"])
    features = sorted(k for k in set(fb) | set(ff) if fb.get(k) != ff.get(k))
    if features:
        raise IncompatibleCheckpoint("different feature contracts: " + "; ".join(
            f"{k}: base {fb.get(k)!r}, fine-tuned {ff.get(k)!r}" for k in features))
    cb, cf = jsonable(rb["config"]), jsonable(rf["config"])
    fields = sorted(k for k in set(cb) | set(cf) if cb.get(k) != cf.get(k) and k not in ACTING_FIELDS)
    only_b, only_f = sorted(set(tb) - set(tf)), sorted(set(tf) - set(tb))
    shapes = sorted(k for k in set(tb) & set(tf) if tb[k].shape != tf[k].shape or tb[k].dtype != tf[k].dtype)
    if fields or only_b or only_f or shapes:
        parts = []
        if fields:
            parts.append("config fields " + ", ".join(f"{k} (base {cb.get(k)!r}, fine-tuned {cf.get(k)!r})" for k in fields))
        if only_b:
            parts.append(f"tensors only in the base {only_b[:8]}")
        if only_f:
            parts.append(f"tensors only in the fine-tuned {only_f[:8]}")
        if shapes:
            parts.append(f"{len(shapes)} tensors of different shape (first 8) " + ", ".join(
                f"{k} {tuple(tb[k].shape)} vs {tuple(tf[k].shape)}" for k in shapes[:8]))
        raise IncompatibleCheckpoint(f"checkpoints of different architectures cannot be merged: {'; '.join(parts)}")


def jsonable(value):
    return json.loads(json.dumps(value))


def interpolate(b: torch.Tensor, f: torch.Tensor, a: float) -> torch.Tensor:
    # the end points are copies, so alpha 0 and 1 give a parent back bit for bit
    if a == 0.0:
        return b.clone()
    if a == 1.0:
        return f.clone()
    return ((1.0 - a) * b.double() + a * f.double()).to(b.dtype)


def merge_checkpoints(base: str | Path, finetuned: str | Path, output_dir: str | Path, alpha: float = 0.5,
                      alphas: Mapping[str, float] | None = None, weights: str = "ema",
                      statistics: str = "finetuned") -> dict:
    """Writes the merged checkpoint to ``output_dir`` (atomically) and returns its ``merge`` record."""
    check_options(weights, statistics)
    pb, pf = Parent.resolve("base", base, weights), Parent.resolve("finetuned", finetuned, weights)
    out = check_output(output_dir, (pb.folder, pf.folder))
    policy, tb, tf = load_parents(pb, pf)
    merged, group_alpha = merge_tensors(policy, tb, tf, alpha, alphas or {}, statistics)
    buffers = sorted(set(tb) - {n for n, _ in policy.named_parameters()})
    policy.load_state_dict(merged)
    record = {
        "rule": "theta = (1 - alpha) * theta_base + alpha * theta_finetuned per module group (RETAIN, arXiv 2512.08333)",
        "base": pb.entry(),
        "finetuned": pf.entry(),
        "alphas": group_alpha,
        "groups": {g: list(GROUPS[policy.name][g]) for g in group_alpha},
        "statistics": {"kept": statistics, "buffers": buffers,
                       "differed": [k for k in buffers if not torch.equal(tb[k], tf[k])]},
        "config_from": "finetuned",
    }
    save_policy(policy, out, info={"merge": record})
    return record


def check_options(weights: str, statistics: str) -> None:
    if weights not in WEIGHT_FILES:
        raise ValueError(f"weights={weights!r}; valid: {', '.join(WEIGHT_FILES)}")
    if statistics not in STATISTICS:
        raise ValueError(f"statistics={statistics!r}; valid: {', '.join(STATISTICS)}")


def load_parents(pb: Parent, pf: Parent):
    """The fine-tuned parent's policy (its acting fields too), to be refilled with merged tensors, and
    both parents' tensors, checked compatible."""
    from toyland.policies.features import PolicyFeatures
    from toyland.policies.registry import make_policy

    tb, tf = _read(pb.file), _read(pf.file)
    check_compatible(pb, pf, tb, tf)
    policy = make_policy({"name": pf.record["name"], **pf.record["config"]},
                         PolicyFeatures.from_dict(pf.record["features"]), stats=None)
    load_weights(policy, tf, str(pf.file))  # the weights fit this config
    return policy, tb, tf


def merge_tensors(policy, tb: dict, tf: dict, alpha: float, alphas: Mapping[str, float],
                  statistics: str = "finetuned") -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """The merged state dict of ``policy`` (parameters interpolated per group, buffers copied from the
    ``statistics`` parent) and the alpha of each group."""
    params = [n for n, _ in policy.named_parameters()]
    groups = group_of(policy.name, params)
    group_alpha = resolve_alphas(policy.name, groups, alpha, alphas)
    kept = tf if statistics == "finetuned" else tb
    merged = {k: interpolate(tb[k], tf[k], group_alpha[groups[k]]) for k in params}
    merged.update({k: kept[k].clone() for k in set(tb) - set(params)})
    return merged, group_alpha


def check_output(output_dir: str | Path | None, parents: tuple[Path, ...]) -> Path:
    if not output_dir:
        raise ValueError("give output_dir=DIR, the folder of the merged checkpoint")
    out = Path(output_dir).expanduser().resolve()
    for parent in parents:
        if out == parent or parent in out.parents or out in parent.parents:
            raise ValueError(f"output_dir {out} overlaps the parent checkpoint {parent}: choose a new folder")
    if out.exists() and any(out.iterdir()):
        previous = out / POLICY_FILE
        if not (previous.is_file() and "merge" in json.loads(previous.read_text())):
            raise ValueError(f"output_dir {out} exists and is not a merged checkpoint: choose a new folder")
    return out
