"""What acts in an evaluation: a trained policy checkpoint, or a scripted reference.

``expert``: the privileged scripted expert (an upper reference). ``cue_follower``: the expert aimed
at the object the shortcut cue implies instead of the instructed one, the behaviour of a policy that
learned the shortcut; on a shortcut scenario it scores a shortcut rate near 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from toyland.eval.runner import Actor
from toyland.registry import Registry

SCRIPTED: Registry[type] = Registry("scripted actor")


@SCRIPTED.register("expert")
class ExpertActor(Actor):
    label = "scripted expert"

    def reset(self, env, seed):
        from toyland.sim.experts import make_expert

        self.expert = make_expert(env)
        self.expert.reset()

    def act(self, obs):
        return self.expert.act(obs)


@SCRIPTED.register("cue_follower")
class CueFollowerActor(ExpertActor):
    label = "scripted cue follower"

    def reset(self, env, seed):
        from toyland.sim.experts import EXPERTS

        self.expert = cue_following(EXPERTS.get(env.unwrapped.task.name))(env)
        self.expert.reset()


_CUE_FOLLOWING: dict[type, type] = {}


def cue_following(expert_cls: type) -> type:
    """The expert class aimed at the cue's object (the instructed one when there is no cue)."""
    if expert_cls not in _CUE_FOLLOWING:
        class CueFollowing(expert_cls):
            @property
            def target_index(self) -> int:
                task = self.env.task
                return task.target_index if task.cue_index is None else task.cue_index

        _CUE_FOLLOWING[expert_cls] = CueFollowing
    return _CUE_FOLLOWING[expert_cls]


class PolicyActor(Actor):
    def __init__(self, path: str | Path, weights: str = "ema", device: str = "cpu", n_action_steps: int | None = None):
        from toyland.policies.checkpoint import load_policy

        folder, weights = resolve_checkpoint(path, weights)
        self.policy = load_policy(folder, weights=weights, device=device)
        if n_action_steps is not None:  # the execution horizon is an acting choice: no retraining needed
            self.policy.config.n_action_steps = int(n_action_steps)
            self.policy.config.validate()
            most = getattr(self.policy, "chunk_length", self.policy.config.horizon)
            if self.policy.config.n_action_steps > most:  # before any worker starts, not at the first action
                raise ValueError(f"n_action_steps={n_action_steps} must lie in [1, {most}]: this policy's chunks "
                                 f"hold {most} actions")
        self.label = f"{self.policy.name} ({folder})"
        self.folder = folder
        # a policy told which embodiment acts gets the env's with every observation
        self.embodiments = tuple(getattr(self.policy.config, "embodiments", ()) or ())
        self._robots: dict[int, str] = {}

    def check(self, env):
        self.policy.check_env(env)
        robot = env.unwrapped.embodiment.name
        if self.embodiments and robot not in self.embodiments:
            from toyland.policies.features import FeatureMismatch

            raise FeatureMismatch(f"the env's embodiment is '{robot}'; this policy was trained on {list(self.embodiments)}"
                                  ": set env.embodiment to one of them")

    def _with_robot(self, obs: dict, slots) -> dict:
        if not self.embodiments:
            return obs
        return {**obs, "robot_type": [self._robots[s] for s in slots]}

    @property
    def period(self) -> int:
        return self.policy.config.n_action_steps

    @property
    def batchable(self) -> bool:
        return self.policy.batchable

    def reset(self, env, seed):
        torch.manual_seed(seed)
        self.policy.reset(seeds=[seed])  # a stochastic policy samples from the episode's own stream
        self._robots = {0: env.unwrapped.embodiment.name}

    def act(self, obs):
        return np.asarray(self.policy.select_action(self._with_robot(obs, [0])), dtype=np.float32)

    def prepare(self, slots):
        self.policy.reset(num_envs=slots)

    def start(self, slot, env, seed):
        torch.manual_seed(seed)
        self.policy.reset(env_ids=[slot], seeds=[seed])
        self._robots[slot] = env.unwrapped.embodiment.name

    def act_many(self, observations, slots):
        batch = {key: np.stack([o[key] for o in observations]) for key in observations[0] if key != "task"}
        batch["task"] = [o["task"] for o in observations]
        batch = self._with_robot(batch, slots)
        return np.asarray(self.policy.select_action(batch, env_ids=list(slots)), dtype=np.float32)


class LeRobotPretrainedActor(Actor):
    """A folder written by lerobot's ``save_pretrained`` (``config.json`` with a ``type``, weights and
    its pre/post-processor pipelines, which carry the normalization statistics). It acts in one env
    at a time: lerobot's policies keep one observation queue for the whole batch."""

    batchable = False

    def __init__(self, path: Path, device: str = "cpu", n_action_steps: int | None = None):
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors
        from lerobot.utils.import_utils import register_third_party_plugins

        register_third_party_plugins()  # policy types from plugins (toyland's own among them), as lerobot's CLIs do
        config = PreTrainedConfig.from_pretrained(str(path))
        config.device = device
        if n_action_steps is not None:
            if not hasattr(config, "n_action_steps"):
                raise ValueError(f"lerobot policy type '{config.type}' has no n_action_steps; leave n_action_steps unset")
            # the most a chunk holds: diffusion's horizon past its observation history, else the chunk
            if hasattr(config, "horizon"):
                most = config.horizon - config.n_obs_steps + 1
            elif hasattr(config, "chunk_size"):
                most = config.chunk_size
            else:
                raise ValueError(f"lerobot policy type '{config.type}' names no chunk length; leave n_action_steps unset")
            if not 1 <= int(n_action_steps) <= most:
                raise ValueError(f"n_action_steps={n_action_steps} must lie in [1, {most}] for this lerobot {config.type} policy")
            config.n_action_steps = int(n_action_steps)
        self.policy = get_policy_class(config.type).from_pretrained(str(path), config=config).eval()
        self.pre, self.post = make_pre_post_processors(config, pretrained_path=str(path))
        self.config, self.label = config, f"lerobot {config.type} ({path})"

    def check(self, env):
        from toyland.policies.features import FeatureMismatch

        spaces = env.unwrapped.observation_space.spaces
        problems = []
        for key, feature in self.config.input_features.items():
            if key not in spaces:
                problems.append(f"'{key}' missing (env has {sorted(k for k in spaces if k != 'task')})")
            elif key.startswith("observation.images.") and tuple(spaces[key].shape) != tuple(feature.shape[1:]) + tuple(feature.shape[:1]):
                problems.append(f"'{key}' is {tuple(spaces[key].shape)} in the env, the policy takes {tuple(feature.shape)} (C, H, W)")
            elif key == "observation.state" and spaces[key].shape[0] != feature.shape[0]:
                problems.append(f"state has {spaces[key].shape[0]} dims in the env, the policy takes {feature.shape[0]}")
        action = self.config.output_features.get("action")
        if action is not None and action.shape[0] != env.unwrapped.action_space.shape[0]:
            problems.append(f"the env takes {env.unwrapped.action_space.shape[0]}-d actions, the policy gives {action.shape[0]}")
        if problems:
            raise FeatureMismatch("the lerobot policy cannot act in this env: " + "; ".join(problems))

    def reset(self, env, seed):
        torch.manual_seed(seed)
        self.policy.reset()

    @torch.no_grad()
    def act(self, obs):
        batch = {"task": [obs["task"]]}
        for key in self.config.input_features:  # each with its batch dimension, as lerobot's env rollouts give them
            x = torch.as_tensor(np.asarray(obs[key]))
            batch[key] = (x.permute(2, 0, 1).float().div(255.0) if key.startswith("observation.images.") else x.float())[None]
        action = self.post(self.policy.select_action(self.pre(batch)))
        return np.asarray(action, dtype=np.float32).reshape(-1)


def resolve_checkpoint(path: str | Path, weights: str = "ema") -> tuple[Path, str]:
    """(checkpoint folder, weights name): a training run folder gives its newest checkpoint, and
    ``ema`` falls back to ``model`` for a checkpoint saved without EMA weights."""
    from toyland.train.state import checkpoint_of

    folder = checkpoint_of(path, "policy")
    if weights == "ema" and not (folder / "ema.safetensors").is_file():
        weights = "model"
    return folder, weights


def actor_fingerprint(spec: str, weights: str = "ema") -> str | None:
    """sha256 of the weights file ``spec`` acts with (None for a scripted actor), so that records of
    different weights are never mixed under one evaluation folder."""
    import hashlib

    if spec in SCRIPTED:
        return None
    path = Path(spec).expanduser()
    if (path / "policy.json").is_file() or (path / "checkpoints").is_dir():
        folder, weights = resolve_checkpoint(path, weights)
        file = folder / ("model.safetensors" if weights == "model" else f"{weights}.safetensors")
    else:
        file = path / "model.safetensors"  # a lerobot pretrained folder
    if not file.is_file():
        return None
    digest = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def make_actor(spec: str, weights: str = "ema", device: str = "cpu", n_action_steps: int | None = None) -> Actor:
    """``spec``: a scripted actor's name, a toyland checkpoint or training run folder, or a lerobot
    pretrained policy folder. ``n_action_steps``: actions executed per predicted chunk, instead of
    the policy's own setting."""
    if spec in SCRIPTED:
        if n_action_steps is not None:
            raise ValueError(f"n_action_steps applies to policies; the scripted actor '{spec}' has no action chunks")
        return SCRIPTED.get(spec)()
    path = Path(spec).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"policy {spec!r} is neither a scripted actor ({', '.join(SCRIPTED.names())}) "
                                "nor an existing checkpoint folder")
    if not (path / "policy.json").is_file() and (path / "config.json").is_file() and not (path / "checkpoints").is_dir():
        return LeRobotPretrainedActor(path, device=device, n_action_steps=n_action_steps)
    return PolicyActor(path, weights=weights, device=device, n_action_steps=n_action_steps)
