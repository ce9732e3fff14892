"""VLA inference latency on this CPU: milliseconds per control step, amortized over the action
chunk (one observation encoding and one chunk decode every ``n_action_steps`` steps), per action
head and with DetPool on and off, at the CPU config (configs/policy/vla.yaml) on two 64x64
cameras. Evaluation runs policies on one torch thread per worker, so that is measured first.

    .venv/bin/python benchmarks/vla_latency.py [--threads 1 2] [--steps 160]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import yaml

from toyland.policies import make_policy
from toyland.policies.features import PolicyFeatures

CAMERAS = ("front", "wrist")
SIZE = 64


def features() -> PolicyFeatures:
    return PolicyFeatures(cameras={f"observation.images.{c}": (3, SIZE, SIZE) for c in CAMERAS}, state_dim=15,
                          action_dim=7, fps=20, masks={f"observation.masks.{c}": (SIZE, SIZE) for c in CAMERAS})


class UniformActions:
    def values(self, key):
        return np.random.default_rng(0).uniform(-1, 1, (10_000, 7))


def observation(rng) -> dict:
    obs = {"observation.state": rng.uniform(-1, 1, 15).astype(np.float32), "task": "pick up the blue ring"}
    for c in CAMERAS:
        obs[f"observation.images.{c}"] = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
        mask = np.zeros((SIZE, SIZE), np.uint8)
        mask[20:30, 24:36] = 1
        obs[f"observation.masks.{c}"] = mask
    return obs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=160, help="control steps timed per variant")
    args = parser.parse_args()
    from importlib.resources import files

    base = yaml.safe_load(files("toyland.configs").joinpath("policy/vla.yaml").read_text())
    stats = {k: {"min": -np.ones(d), "max": np.ones(d)} for k, d in (("observation.state", 15), ("action", 7))}
    rng = np.random.default_rng(0)
    obs = [observation(rng) for _ in range(8)]
    print(f"| threads | head | DetPool | ms per chunk | ms per control step (chunk of {base['n_action_steps']}) |")
    print("|---|---|---|---|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for det_pool in (True, False):
            for head in ("flow", "discrete_diffusion", "autoregressive"):
                torch.manual_seed(0)
                policy = make_policy({**base, "head": head, "det_pool": det_pool}, features(), stats)
                policy.fit(UniformActions())
                policy.eval()
                policy.reset()
                for i in range(2 * base["n_action_steps"]):  # warm-up, the instruction's encoding cached
                    policy.select_action(obs[i % len(obs)])
                t0 = time.perf_counter()
                for i in range(args.steps):
                    policy.select_action(obs[i % len(obs)])
                per_step = (time.perf_counter() - t0) / args.steps * 1000
                print(f"| {threads} | {head} | {'on' if det_pool else 'off'} | {per_step * base['n_action_steps']:.1f} "
                      f"| {per_step:.2f} |", flush=True)


if __name__ == "__main__":
    main()
