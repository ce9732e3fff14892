"""Policy rollouts on seeded episodes: the one runner used by training's periodic evaluation and
by ``toyland eval``. Evaluation seeds start at ``EVAL_SEED_START``, far from the collection seeds
(0, 1, 2, ...), so a policy is never scored on an episode it was trained on."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from toyland.eval.rollout import EpisodeResult, run_episode, wilson_interval

EVAL_SEED_START = 1_000_000


@dataclass
class EvalResult:
    episodes: list[EpisodeResult] = field(default_factory=list)

    @property
    def successes(self) -> int:
        return sum(e.success for e in self.episodes)

    @property
    def success_rate(self) -> float:
        return self.successes / max(len(self.episodes), 1)

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.successes, len(self.episodes))

    def summary(self) -> dict:
        lo, hi = self.ci95
        out = {"episodes": len(self.episodes), "successes": self.successes, "success_rate": self.success_rate,
               "ci95": [lo, hi]}
        if any("wrong_object" in e.outcome for e in self.episodes):  # a distractor lifted instead of the target
            wrong = sum(bool(e.outcome.get("wrong_object")) for e in self.episodes)
            out.update(wrong_object=wrong, wrong_object_rate=wrong / len(self.episodes),
                       wrong_object_ci95=list(wilson_interval(wrong, len(self.episodes))))
        if any("grasped_ever" in e.outcome for e in self.episodes):  # how the failures failed
            failed = [e for e in self.episodes if not e.success]
            out["failures"] = {"never_grasped": sum(not e.outcome.get("grasped_ever") for e in failed),
                               "grasped_not_done": sum(bool(e.outcome.get("grasped_ever")) for e in failed)}
        return {**out, "seeds": [e.seed for e in self.episodes]}


def policy_actor(policy):
    """``act(obs)`` for run_episode; the policy acts in eval mode without gradients."""
    policy.eval()

    def act(obs):
        return np.asarray(policy.select_action(obs), dtype=np.float32)

    return act


def evaluate_policy(policy, env, episodes: int, seed_start: int = EVAL_SEED_START, record: int = 0) -> EvalResult:
    """``episodes`` episodes with seeds ``seed_start + i``; torch is seeded per episode so that a
    stochastic policy gives the same actions for the same seed."""
    policy.features.check_env(env)
    act = policy_actor(policy)
    result = EvalResult()
    for i in range(episodes):
        seed = seed_start + i
        torch.manual_seed(seed)
        result.episodes.append(run_episode(env, act, seed=seed, reset_hook=policy.reset, record=i < record))
    return result
