"""``toyland collect``: run a scripted expert over a scenario and write a LeRobotDataset.

Episodes are simulated in worker processes and written by the main process in seed order, so
the dataset is the same whatever the number of workers. Episode ``k`` of a collection uses reset
seed ``seed + k``; a seed's outcome is fixed, so a resumed collection continues exactly where the
interrupted one stopped. SIGINT and SIGTERM stop it between episodes, after the finished episodes
are made durable.
"""

from __future__ import annotations

import itertools
import signal
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toyland.data.features import camera_features, camera_frame, env_features, to_frame
from toyland.data.replay import SimStateTap
from toyland.eval.runner import Actor

KEEP = ("successful", "all")


@dataclass(frozen=True)
class ActionNoise:
    """DART-style noise (Laskey et al. 2017) on the executed actions, in normalized action units; the
    dataset records the expert's clean actions. ``correlation`` is the noise's step-to-step
    correlation (an Ornstein-Uhlenbeck process of stationary std ``std``): 0 draws it afresh every
    step, which the expert undoes a step later; near 1 it holds an offset for many steps, the kind a
    policy's misjudged target leaves, and the demos show the expert correcting it. ``entries`` names
    the perturbed action entries (None or empty: every arm entry; "x,y" is read as ("x", "y")). ``gated`` scales the noise by the expert's
    ``noise_scale()``: the expert says where an offset is worth correcting and fades it out before
    its own grasp would fail (the Lift expert: over its descent onto the grasp, none elsewhere)."""

    std: float = 0.0
    correlation: float = 0.0
    entries: tuple[str, ...] | None = None
    gated: bool = False

    def __post_init__(self):
        if not 0.0 <= self.std <= 0.5:
            raise ValueError(f"action_noise={self.std}: use a std between 0 (off) and 0.5 in normalized action units")
        if not 0.0 <= self.correlation < 1.0:
            raise ValueError(f"noise_correlation={self.correlation}: use a step-to-step correlation in [0, 1)")
        if self.entries is not None:  # a list, or "x,y" as a command line gives it
            entries = self.entries.split(",") if isinstance(self.entries, str) else self.entries
            object.__setattr__(self, "entries", tuple(map(str, entries)) or None)

    @classmethod
    def of(cls, noise: "ActionNoise | float") -> "ActionNoise":
        return noise if isinstance(noise, ActionNoise) else cls(std=float(noise))

    def record(self) -> dict:
        """The dataset config's entries (none when off; the plain std when no option is used)."""
        if not self.std:
            return {}
        options = {"noise_correlation": self.correlation, "noise_entries": list(self.entries or []),
                   "noise_gated": self.gated}
        return {"action_noise": self.std, **{k: v for k, v in options.items() if v}}

    def mask(self, action_names: list[str]) -> np.ndarray:
        """Which action entries are perturbed (checks the names against the env's action space)."""
        arm = [name for name in action_names if name != "gripper"]
        if self.entries is not None and not set(self.entries) <= set(arm):
            raise ValueError(f"noise_entries={list(self.entries)}: perturb entries of this action space, "
                             f"{', '.join(arm)} (the gripper is never perturbed)")
        return np.array([name in (self.entries or arm) for name in action_names])

    def draws(self, rng: np.random.Generator, shape: tuple[int, ...]):
        """The noise of successive steps (a generator)."""
        keep, fresh = self.correlation, np.sqrt(1.0 - self.correlation ** 2)
        value = rng.normal(0.0, self.std, shape)
        while True:
            yield value
            value = keep * value + fresh * rng.normal(0.0, self.std, shape)


@dataclass
class Episode:
    seed: int
    success: bool
    frames: list[dict] = field(repr=False)
    task: str
    record: dict  # what the episode log keeps: factors, toys, instruction, outcome
    sim_state: dict | None = field(default=None, repr=False)  # per-frame simulator state (toyland.data.replay)


class NoisyExpert(Actor):
    """The scripted expert, its executed actions carrying DART noise; ``clean`` (the expert's own
    action), ``annotation`` (its privileged labels), ``geometry`` (the cameras' intrinsics and poses)
    and ``sim`` (the simulator state) are what the dataset records of the step, taken in ``act``,
    the moment the observation is current (``observe`` runs after the env has stepped on)."""

    label = "scripted expert (collection)"

    def __init__(self, noise: ActionNoise, mask: np.ndarray):
        self.noise, self.mask = noise, mask

    def reset(self, env, seed):
        from toyland.sim.experts import make_expert

        self.env = env
        self.sim = SimStateTap()
        self.expert = make_expert(env)
        self.expert.reset()
        self.draws = self.noise.draws(np.random.default_rng([seed, 0xDA27]), self.mask.shape)  # the seed fixes it

    def act(self, obs):
        scene = self.env.unwrapped.scene
        self.geometry = camera_frame(self.env)
        self.sim.capture(scene.model, scene.data)
        self.clean = self.expert.act(obs)
        self.annotation = self.expert.annotation()
        if not self.noise.std:
            return self.clean
        scale = self.expert.noise_scale() if self.noise.gated else 1.0
        space = self.env.unwrapped.action_space  # (noise in normalized units: half the space's width is 1)
        noise = scale * self.mask * next(self.draws) * (space.high - space.low) / 2.0
        return np.clip(self.clean + noise, space.low, space.high).astype(self.clean.dtype)


class EpisodeRecorder:
    """One env and its expert; records an episode per seed through the episode runner (lives in a
    worker process)."""

    def __init__(self, env_cfg: dict, post_success_steps: int, action_noise: ActionNoise | float = 0.0):
        from toyland.sim import make_env, resolved_env_config

        # Keep going after success so the data shows the object held, not only its first lift.
        self.limit = resolved_env_config(env_cfg)["max_episode_steps"]
        self.env = make_env(env_cfg, terminate_on_success=False)
        self.post_success_steps = post_success_steps
        # DART-style noise: the env executes the expert's action plus noise on the arm entries while the
        # dataset records the clean action, so the demos show the expert correcting from states off its
        # own path, where an imitating policy ends up.
        noise = ActionNoise.of(action_noise)
        self.actor = NoisyExpert(noise, noise.mask(self.env.unwrapped.action_names))

    def __call__(self, seed: int) -> Episode:
        from toyland.eval.runner import run_episode

        frames, success_at = [], []

        def observe(step) -> bool:
            frames.append({**to_frame(step.obs, self.actor.clean), **self.actor.geometry, **self.actor.annotation})
            if not success_at and step.info["is_success"]:
                success_at.append(len(frames))
            return len(frames) >= self.limit or bool(success_at and len(frames) - success_at[0] >= self.post_success_steps)

        result, _ = run_episode(self.env, self.actor, seed, observe=observe)
        episode = self.env.unwrapped.task.episode_info()
        record = {
            "seed": seed,
            "episode_seed": result["episode_seed"],
            "success": result["success"],
            "success_step": success_at[0] if success_at else None,
            "length": len(frames),
            "instruction": result["instruction"],
            "target_index": result["target_index"],
            "colours": episode["colours"],
            "factors": result["factors"],
            "toys": episode["toys"],
            "outcome": result["outcome"],
        }
        if result["cue_index"] is not None:
            record["cue_index"] = result["cue_index"]
        return Episode(seed=seed, success=result["success"], frames=frames, task=result["instruction"], record=record,
                       sim_state=self.actor.sim.arrays())


def ordered_episodes(env_cfg: dict, post_success_steps: int, first_seed: int, workers: int,
                     action_noise: ActionNoise | float = 0.0, launcher: str = "local", address: str | None = None):
    """Episodes for seeds first_seed, first_seed + 1, ... in order, simulated on ``workers`` processes
    (local, or Ray actors)."""
    if workers <= 1 and launcher == "local":
        recorder = EpisodeRecorder(env_cfg, post_success_steps, action_noise)
        seed = first_seed
        while True:
            yield recorder(seed)
            seed += 1
    from toyland.parallel import map_ordered

    yield from map_ordered(itertools.count(first_seed), EpisodeRecorder, (env_cfg, post_success_steps, action_noise),
                           "__call__", workers=workers, launcher=launcher, address=address)


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag checked between episodes (a write is never cut in half)."""

    def __init__(self):
        self.signal: int | None = None

    def __enter__(self):
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum, frame) -> None:
        self.signal = signum

    def __exit__(self, *exc) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)


class ExpertFailing(RuntimeError):
    pass


def check_yield(kept: int, discarded: int, patience: int = 20) -> None:
    """Stops a collection whose expert almost never succeeds (an episode limit too short for the task,
    factors beyond what it can do), which would otherwise discard episodes forever."""
    if discarded >= patience and discarded > 9 * kept:
        raise ExpertFailing(
            f"the scripted expert succeeded in {kept} of {kept + discarded} episodes; under 10% means this env cannot "
            "be demonstrated as configured (check env.max_episode_steps, the factor levels and the toy set), or "
            "record failures too with keep=all")


@dataclass
class CollectSummary:
    root: Path
    kept: int
    discarded: int
    kept_now: int
    discarded_now: int
    interrupted: bool


def collect(env_cfg: dict, output_dir: str | Path, episodes: int, seed: int = 0, workers: int = 2,
            keep: str = "successful", post_success_steps: int = 10, checkpoint_every: int = 10,
            video: bool = False, repo_id: str | None = None, progress: bool = True,
            provenance: dict | None = None, action_noise: ActionNoise | float = 0.0, launcher: str = "local",
            ray_address: str | None = None) -> CollectSummary:
    """Collects until the dataset at ``output_dir`` holds ``episodes`` kept episodes (resuming one
    that is there). ``provenance`` (e.g. scenario and split) is stored in the episode log.
    ``action_noise``: DART-style noise on the executed arm actions while the clean expert actions are
    recorded (an ``ActionNoise``, or its std in normalized units). ``launcher``: ``local`` worker
    processes or ``ray`` (a local instance, or the cluster at ``ray_address``); the dataset is the same."""
    from tqdm import tqdm

    from toyland.parallel import check_launcher

    from toyland.data.writer import DatasetWriter
    from toyland.sim import make_env, resolved_env_config
    from toyland.sim.experts import make_expert

    if keep not in KEEP:
        raise ValueError(f"keep={keep!r}; valid: {', '.join(KEEP)}")
    check_launcher(launcher, ray_address)
    if episodes < 1:
        raise ValueError(f"episodes={episodes}: ask for at least one episode")
    action_noise = ActionNoise.of(action_noise)
    probe = make_env(env_cfg, terminate_on_success=False)
    expert = make_expert(probe)  # refuses a control mode the experts cannot act in before any worker starts
    features = {**env_features(probe, video=video), **camera_features(probe), **expert.annotation_features()}
    base = probe.unwrapped
    action_noise.mask(base.action_names)  # an entry this action space lacks: say so before any worker starts
    fps = int(round(base.control_cfg.rate_hz))
    robot_type = base.embodiment.name
    probe.close()
    config = {"env": resolved_env_config(env_cfg), "seed": seed, "keep": keep, "post_success_steps": post_success_steps,
              "video": video, **action_noise.record(),
              **(provenance or {})}
    writer = DatasetWriter(output_dir, repo_id or f"toyland/{Path(output_dir).name}", features, fps, robot_type,
                           video, config, checkpoint_every)
    start_kept, start_discarded = writer.num_episodes, len(writer.log.discarded)
    bar = tqdm(total=episodes, initial=min(start_kept, episodes), desc="collect", unit="ep", disable=not progress)
    interrupted = False
    try:
        with StopRequest() as stop:
            if writer.num_episodes < episodes:
                for episode in ordered_episodes(env_cfg, post_success_steps, writer.log.next_seed, workers, action_noise,
                                                launcher, ray_address):
                    if episode.success or keep == "all":
                        writer.add_episode(episode.frames, episode.task, episode.record, episode.sim_state)
                        bar.update(1)
                    else:
                        writer.discard({"seed": episode.seed, "outcome": episode.record["outcome"]})
                        check_yield(writer.num_episodes - start_kept, len(writer.log.discarded) - start_discarded)
                    bar.set_postfix(discarded=len(writer.log.discarded))
                    if writer.num_episodes >= episodes or stop.signal is not None:
                        interrupted = stop.signal is not None and writer.num_episodes < episodes
                        break
    finally:
        writer.close()
        bar.close()
    return CollectSummary(
        root=Path(output_dir), kept=writer.num_episodes, discarded=len(writer.log.discarded),
        kept_now=writer.num_episodes - start_kept, discarded_now=len(writer.log.discarded) - start_discarded,
        interrupted=interrupted,
    )
