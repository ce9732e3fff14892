"""``toyland train``: one trainer for every registered policy.

AdamW with linear warmup and cosine decay, EMA weights, gradient clipping, periodic checkpoints
(atomic, safetensors) and in-training evaluation rollouts through ``toyland.eval``, TensorBoard
logs and a progress bar. The batch of step ``k`` and the diffusion noise of step ``k`` are functions
of ``(seed, k)``, so a run resumed from a checkpoint continues as the uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from toyland.config_keys import reject_unknown_keys
from toyland.files import write_json_atomic
from toyland.train.finetune import check_action_range, check_same_policy, load_start, resolve_start, write_record
from toyland.train.state import (
    CHECKPOINTS, latest_checkpoint, restore_training, save_training,
)

TRAIN_KEYS = {"env", "policy", "data", "steps", "batch_size", "seed", "device", "threads", "optim", "ema", "log_every",
              "save_every", "eval", "resume", "output_dir", "experiment", "prefetch", "augment", "finetune", "precision",
              "compile"}
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}  # bf16 autocast: no loss scaling to checkpoint, CPU and GPU
OPTIM_KEYS = {"lr", "weight_decay", "betas", "warmup_steps", "grad_clip"}
EMA_KEYS = {"enabled", "decay"}
EVAL_KEYS = {"every", "episodes", "final_episodes", "seed_start", "videos", "workers", "envs_per_worker"}


class NonFiniteLoss(FloatingPointError):
    pass


def resolve_device(spec: str) -> torch.device:
    """``auto``: CUDA when present, else CPU. Asking for CUDA where there is none is an error."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={spec} but torch sees no CUDA device; use device=cpu or device=auto")
    return device


def compile_backend(value) -> str | None:
    """``compile``: false, true (inductor, torch's default) or a torch.compile backend by name, e.g.
    aot_eager to trace without generating kernels."""
    if value in (None, False, "false", "none"):
        return None
    if value is True or value == "true":
        return "inductor"
    from torch._dynamo import list_backends

    valid = list_backends(exclude_tags=())
    if value not in valid:
        raise ValueError(f"compile={value!r}; valid: true, false or a torch.compile backend: {', '.join(valid)}")
    return value


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup to 1, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def batch_statistics(batch: dict) -> dict:
    return {k: {"mean": float(v.float().mean()), "std": float(v.float().std()), "min": float(v.min()), "max": float(v.max()),
                "finite": bool(torch.isfinite(v.float()).all())}
            for k, v in batch.items() if torch.is_tensor(v) and v.is_floating_point()}


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


@dataclass
class TrainResult:
    output_dir: Path
    steps: int
    final_eval: dict | None
    history: list[dict] = field(default_factory=list)


def train(cfg: dict) -> TrainResult:
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    from toyland.data.mixture import build_sampler
    from toyland.policies import policy_config
    from toyland.policies.features import PolicyFeatures

    reject_unknown_keys(cfg, TRAIN_KEYS, "train config")
    optim, ema_cfg, eval_cfg = dict(cfg["optim"]), dict(cfg["ema"]), dict(cfg["eval"])
    reject_unknown_keys(optim, OPTIM_KEYS, "train config `optim`")
    reject_unknown_keys(ema_cfg, EMA_KEYS, "train config `ema`")
    reject_unknown_keys(eval_cfg, EVAL_KEYS, "train config `eval`")
    from toyland.augment import build_augmentations

    augmentations = build_augmentations(cfg.get("augment"))  # a bad name or field fails before any data is read
    device = resolve_device(cfg["device"])
    precision = cfg.get("precision") or "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}; valid: {', '.join(PRECISIONS)}")
    backend = compile_backend(cfg.get("compile"))
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    out = Path(cfg["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    seed, total = int(cfg["seed"]), int(cfg["steps"])

    # the policy's features come from the data; its needs (cameras, windows) pick what is decoded
    cls, pconfig = policy_config(cfg["policy"])
    first = _first_source_info(cfg["data"])
    _check_one_instruction_mode(cfg["data"], first)
    features = PolicyFeatures.from_dataset_info(first, list(pconfig.cameras) if pconfig.cameras else None,
                                                masks=pconfig.needs_masks, depth=pconfig.needs_depth)
    start = resolve_start(cfg.get("finetune"))  # fine-tuning: the weights training starts from
    if start is not None:  # before any policy is built: another policy's build errors would hide the reason
        check_same_policy(start, cls.name, pconfig, features)
    deltas = cls(pconfig, features, None).delta_timestamps()
    augment = AugmentStep(augmentations, device) if len(augmentations) else None
    if augment is not None:
        add_augment_keys(deltas, augmentations, first)
    sampler = build_sampler(cfg["data"], deltas, int(cfg["batch_size"]), seed=seed, transform=augment)
    if augment is not None:  # a dataset without what an augmentation needs fails here, with the collect hint
        augmentations.check(sampler.sample(0))
    torch.manual_seed(seed)
    keep = start is not None and start.keeps_statistics
    policy = cls(pconfig, features, None if keep else sampler.stats()).to(device)
    if not keep:
        policy.fit(sampler)
    if start is not None:
        load_start(start, policy)
        check_action_range(start, policy, sampler.stats())
        write_record(start, out)
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=optim["lr"], betas=tuple(optim["betas"]), weight_decay=optim["weight_decay"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, int(optim["warmup_steps"]), total))
    ema = AveragedModel(policy, multi_avg_fn=get_ema_multi_avg_fn(float(ema_cfg["decay"])), use_buffers=True) \
        if ema_cfg["enabled"] else None

    # compiled: the same module and state dict (checkpoints unchanged), its forward traced and fused;
    # random ops draw from torch's generator (fallback_random), so a seed still gives the same run
    if backend == "inductor":
        from torch._inductor import config as inductor

        inductor.fallback_random = True
    model = torch.compile(policy, backend=backend) if backend else policy
    autocast = (lambda: torch.autocast(device.type, dtype=PRECISIONS[precision])) if PRECISIONS[precision] else \
        contextlib.nullcontext
    step, history, train_s = 0, [], 0.0
    if cfg.get("resume"):
        ckpt = latest_checkpoint(out)
        if ckpt is not None:
            step, history, train_s = restore_training(ckpt, policy, optimizer, scheduler, ema, cfg)
            print(f"resumed from {ckpt} at step {step}")
    evaluating = bool(eval_cfg["every"] or eval_cfg["final_episodes"])
    if evaluating:  # the policy's contract against the evaluation env: fail now, not after an hour of training
        from toyland.sim import make_env

        env = make_env(dict(cfg["env"]))
        policy.check_env(env)
        env.close()
    writer = SummaryWriter(str(out / "tensorboard"))
    write_json_atomic(out / "config.json", cfg, default=str)
    log_path = out / "train_log.jsonl"
    evaluate = Evaluation(cfg, out, writer, log_path, started=time.perf_counter() - (history[-1]["time_s"] if history else 0.0))
    if evaluating and eval_cfg["every"] and step and step % int(eval_cfg["every"]) == 0 and step < total \
            and not any(h["step"] == step for h in history):  # killed during this evaluation: run it again
        history.append(evaluate(step, int(eval_cfg["episodes"]), train_s or 0.0))
    batches = sampler.batches(start_step=step, prefetch=int(cfg.get("prefetch", 2)))
    bar = tqdm(total=total, initial=step, desc="train", unit="step", dynamic_ncols=True)
    wait = compute = 0.0
    # optimization time only, evaluations excluded, over every run of this one (unknown stays unknown in
    # the checkpoints, while the evaluation records count from this run's start)
    known = train_s is not None or step == 0
    clock = {"train_s": train_s or 0.0}

    def save() -> None:  # the checkpoint of the current step
        save_training(out, step, policy, optimizer, scheduler, ema, cfg, history, clock["train_s"] if known else None)

    policy.train()
    try:
        while step < total:
            t0 = time.perf_counter()
            batch = to_device(next(batches), device)
            t1 = time.perf_counter()
            torch.manual_seed(seed * 1_000_003 + step)  # this step's noise, the same after a resume
            with autocast():
                loss, metrics = model(batch)
            loss = loss.float()
            if not torch.isfinite(loss):
                last = latest_checkpoint(out)
                raise NonFiniteLoss(
                    f"loss is {loss.item()} at step {step}; batch statistics: {json.dumps(batch_statistics(batch))}; "
                    f"the last good checkpoint is {last or 'none (nothing saved yet)'}"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, float(optim["grad_clip"]))
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update_parameters(policy)
            step += 1
            wait, compute = wait + (t1 - t0), compute + (time.perf_counter() - t1)
            clock["train_s"] += time.perf_counter() - t0
            bar.update(1)
            if step % int(cfg["log_every"]) == 0 or step == total:
                share = wait / max(wait + compute, 1e-9)
                bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{scheduler.get_last_lr()[0]:.1e}", data=f"{share:.1%}")
                scalars = {"loss": loss.item(), "grad_norm": float(grad_norm), "lr": scheduler.get_last_lr()[0],
                           "data_share": share, **metrics}
                if augment is not None:  # its share of the step (it runs inside the batch wait) and warp holes
                    scalars.update(augment.take(wait + compute))
                for name, value in scalars.items():
                    writer.add_scalar(f"train/{name}", value, step)
                wait = compute = 0.0
            evaluate_now = eval_cfg["every"] and step % int(eval_cfg["every"]) == 0 and step < total
            if evaluate_now or (step % int(cfg["save_every"]) == 0 and step < total):
                save()
            if evaluate_now:  # the checkpoint just saved, scored as `toyland eval` would score it
                history.append(evaluate(step, int(eval_cfg["episodes"]), clock["train_s"]))
                save()
    finally:
        bar.close()
        batches.close()
    save()
    final = None
    if eval_cfg["final_episodes"]:
        final = evaluate(step, int(eval_cfg["final_episodes"]), clock["train_s"], videos=bool(eval_cfg.get("videos")))
        history.append(final)
        save()
        write_json_atomic(out / "results.json", final)
    writer.close()
    return TrainResult(out, step, final, history)


class AugmentStep:
    """The sampler's transform: the batch moved to the training device, then augmented there (the
    augmentations act on the device's tensors, so on a GPU they are batched GPU ops). Keeps the time it
    took and the warp's hole share for the logs."""

    def __init__(self, augmentations, device: torch.device):
        self.augmentations, self.device = augmentations, device
        self.seconds, self.holes = 0.0, []

    def __call__(self, batch: dict, generator: torch.Generator) -> dict:
        t0 = time.perf_counter()
        batch = self.augmentations(to_device(batch, self.device), generator)
        holes = batch.get("augment.viewpoint_warp.holes")
        if holes is not None:
            self.holes.append(float(holes.float().mean()))
        self.seconds += time.perf_counter() - t0
        return batch

    def take(self, step_seconds: float) -> dict:
        """Since the last call: the augmentations' share of the training time, and the mean hole share."""
        out = {"augment_share": self.seconds / max(step_seconds, 1e-9)}
        if self.holes:
            out["warp_holes"] = sum(self.holes) / len(self.holes)
        self.seconds, self.holes = 0.0, []
        return out


def add_augment_keys(deltas: dict, augmentations, dataset_info: dict) -> None:
    """Asks the sampler for what the augmentations need beyond the policy's inputs (depth for a
    depth-aware warp, camera geometry), at the images' time offsets. Only keys the dataset has: a
    missing one is reported by ``augmentations.check`` with how to collect it."""
    have = dataset_info.get("features", {})
    for key, offsets in list(deltas.items()):
        if key.startswith("observation.images.") and not key.endswith(("_is_pad", "_present")):
            cam = key.removeprefix("observation.images.")
            for extra in augmentations.batch_keys([cam]) + [f"camera.intrinsics.{cam}", f"camera.pose.{cam}"]:
                if extra in have:
                    deltas.setdefault(extra, offsets)


def _check_one_instruction_mode(data_cfg: dict, first: dict) -> None:
    """Every source names its target the same way as the first (words, or a picture of one size): the
    policy's inputs come from the first, and a picture in a later source would go unread."""
    from toyland.policies.features import INSTRUCTION_PICTURE, FeatureMismatch

    def picture(info: dict):
        feature = info["features"].get(INSTRUCTION_PICTURE)
        return None if feature is None else tuple(feature["shape"])

    want = picture(first)
    for entry in (data_cfg.get("sources") or [])[1:]:
        path, info = _source_info(entry)
        got = picture(info)
        if got != want:
            say = lambda p: "words" if p is None else f"a {p[0]}x{p[1]} picture"  # noqa: E731
            raise FeatureMismatch(f"the data sources name their target in different ways: the first with {say(want)}, "
                                  f"{path} with {say(got)}; train on data of one env.instruction mode")


def _source_info(entry) -> tuple[str, dict]:
    """(path, meta/info.json) of one data source entry (a path, or a dict with one)."""
    from toyland.data.frames import check_dataset_path

    path = entry if isinstance(entry, str) else entry.get("path")
    return path, json.loads((check_dataset_path(path) / "meta" / "info.json").read_text())


def _first_source_info(data_cfg: dict) -> dict:
    from toyland.data.frames import DatasetError

    sources = data_cfg.get("sources") or []
    if not sources:
        raise DatasetError("data config: `sources` is empty; list at least one dataset path")
    return _source_info(sources[0])[1]


class Evaluation:
    """The trainer's evaluations: the checkpoint of the step, scored by ``toyland.eval.harness`` (the
    one episode runner, worker processes, one torch thread each) into ``eval/step_<k>/``, so an
    evaluation during training and ``toyland eval`` of the same checkpoint give the same records."""

    def __init__(self, cfg: dict, out: Path, writer, log_path: Path, started: float):
        self.cfg, self.out, self.writer, self.log_path, self.started = cfg, out, writer, log_path, started

    def __call__(self, step: int, episodes: int, train_s: float, videos: bool = False) -> dict:
        import shutil

        from toyland.eval.harness import check_same_run, evaluate_suite, run_record
        from toyland.train.state import checkpoint_folder

        eval_cfg = self.cfg["eval"]
        folder = self.out / "eval" / f"step_{step:07d}"
        checkpoint, env, cells = str(checkpoint_folder(self.out, step)), dict(self.cfg["env"]), {"base": {}}
        try:  # a resumed run continues its own evaluation of these weights
            check_same_run(folder, run_record(checkpoint, env, cells, episodes, int(eval_cfg["seed_start"]),
                                              envs_per_worker=int(eval_cfg.get("envs_per_worker") or 1)))
        except ValueError:  # an earlier run's evaluation of other weights at this step: this trainer's own folder
            shutil.rmtree(folder)
        t0 = time.perf_counter()
        results = evaluate_suite(checkpoint, env, cells, folder, episodes=episodes, seed_start=int(eval_cfg["seed_start"]),
                                 workers=int(eval_cfg.get("workers") or 1), weights="ema", videos=videos, progress=False,
                                 envs_per_worker=int(eval_cfg.get("envs_per_worker") or 1))
        cell = results["cells"]["id"]
        keep = ("episodes", "successes", "success_rate", "ci95", "wrong_object", "wrong_object_rate",
                "wrong_object_ci95", "clipped_episodes", "failures")
        record = {"step": step, "time_s": round(time.perf_counter() - self.started, 1), "train_s": round(train_s, 1),
                  "eval_s": round(time.perf_counter() - t0, 1), **{k: cell[k] for k in keep if k in cell},
                  "eval_dir": str(folder.relative_to(self.out))}
        self.writer.add_scalar("eval/success_rate", cell["success_rate"], step)
        with open(self.log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        lo, hi = cell["ci95"]
        extra = f", distractor lifted {cell['wrong_object']}" if cell.get("wrong_object") else ""
        if "failures" in cell:
            f = cell["failures"]
            extra += f"; failures: {f['never_grasped']} never grasped, {f['grasped_not_done']} grasped but not finished"
        print(f"\nstep {step}: success {cell['successes']}/{cell['episodes']} = {cell['success_rate']:.2f} "
              f"(95% CI {lo:.2f}-{hi:.2f}){extra}; records in {folder}")
        return record


__all__ = ["train", "resolve_device", "lr_factor", "NonFiniteLoss", "TrainResult", "CHECKPOINTS"]
