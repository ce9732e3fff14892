"""``toyland collect``: run a scripted expert over a scenario and write a LeRobotDataset.

Episodes are simulated in worker processes and written by the main process in seed order, so
the dataset is the same whatever the number of workers. Episode ``k`` of a collection uses reset
seed ``seed + k``; a seed's outcome is fixed, so a resumed collection continues exactly where the
interrupted one stopped. SIGINT and SIGTERM stop it between episodes, after the finished episodes
are made durable.
"""

from __future__ import annotations

import collections
import multiprocessing
import signal
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toyland.data.features import env_features, to_frame

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


class EpisodeRecorder:
    """One env and its expert; records an episode per seed (lives in a worker process)."""

    FUMBLE_TRIES = 3

    def __init__(self, env_cfg: dict, post_success_steps: int, action_noise: ActionNoise | float = 0.0,
                 recovery: float = 0.0):
        from toyland.sim import make_env, resolved_env_config
        from toyland.sim.experts import make_expert

        # Keep going after success so the data shows the object held, not only its first lift. The time
        # limit is kept here: a recovery demo gets the whole limit from its first recorded frame.
        self.limit = resolved_env_config(env_cfg)["max_episode_steps"]
        self.env = make_env(env_cfg, terminate_on_success=False, max_episode_steps=2 * self.limit)
        self.expert = make_expert(self.env)
        self.action_noise = ActionNoise.of(action_noise)
        self.post_success_steps = post_success_steps
        # DART-style noise: the env executes the expert's action plus noise on the arm entries while the
        # dataset records the clean action, so the demos show the expert correcting from states off its
        # own path, where an imitating policy ends up.
        self.noisy = self.action_noise.mask(self.env.unwrapped.action_names)
        # Recovery demos: in this fraction of episodes the expert's first grasp is aimed off and the
        # recording starts when it gives up on the miss, so the data shows re-grasping from the states a
        # policy's missed grasp leaves behind, and never the aimed-off approach itself.
        self.recovery = recovery

    def __call__(self, seed: int) -> Episode:
        fumble_rng = np.random.default_rng([seed, 0x2EC0])  # the seed fixes whether and how it fumbles
        if self.recovery > 0 and fumble_rng.random() < self.recovery:
            for _ in range(self.FUMBLE_TRIES):  # an aimed-off grasp holds about half the time: aim off again
                episode = self._run(seed, fumble_rng)
                if episode is not None:
                    return episode
        return self._run(seed)

    def _run(self, seed: int, fumble_rng: np.random.Generator | None = None) -> Episode | None:
        """One episode; with ``fumble_rng`` a recovery demo, or None when the aimed-off grasp did not miss."""
        obs, info = self.env.reset(seed=seed)
        self.expert.reset()
        if fumble_rng is not None:
            self.expert.fumble(fumble_rng)
        frames, success_step, step_info, skipped = [], None, {}, 0
        noise = self.action_noise.draws(np.random.default_rng([seed, 0xDA27]), self.noisy.shape)  # the seed fixes it
        while True:
            action = self.expert.act(obs)
            if fumble_rng is not None and not frames and self.expert.phase != "retreat":
                skipped += 1  # still on the aimed-off attempt: executed, not recorded
            else:
                frames.append({**to_frame(obs, action), **self.expert.annotation()})
            executed = action
            if self.action_noise.std > 0:
                scale = self.expert.noise_scale() if self.action_noise.gated else 1.0
                executed = np.clip(action + scale * self.noisy * next(noise), -1.0, 1.0).astype(action.dtype)
            obs, _, terminated, _, step_info = self.env.step(executed)
            truncated = len(frames) >= self.limit
            if not frames and (terminated or skipped >= self.limit or step_info["is_success"]):
                return None  # the aimed-off grasp held, or time ran out before the miss
            if success_step is None and step_info["is_success"]:
                success_step = len(frames)
            if terminated or truncated or (success_step is not None and len(frames) - success_step >= self.post_success_steps):
                break
        outcome = {k: bool(v) if isinstance(v, (bool, np.bool_)) else v for k, v in step_info.items()
                   if isinstance(v, (bool, int, float, np.bool_))}
        record = {
            "seed": seed,
            "episode_seed": info["episode_seed"],
            "success": success_step is not None,
            "success_step": success_step,
            "length": len(frames),
            "instruction": info["instruction"],
            "target_index": info["target_index"],
            "colours": info["colours"],
            "factors": info["factors"],
            "toys": info["toys"],
            "outcome": outcome,
        }
        if fumble_rng is not None:
            record["recorded_from_step"] = skipped  # a recovery demo: env steps before its first frame
        if "cue_index" in info:
            record["cue_index"] = info["cue_index"]
        return Episode(seed=seed, success=success_step is not None, frames=frames, task=info["instruction"], record=record)


_RECORDER: EpisodeRecorder | None = None  # per worker process: built once by _init_worker


def _init_worker(env_cfg: dict, post_success_steps: int, action_noise: ActionNoise, recovery: float) -> None:
    global _RECORDER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when to stop
    _RECORDER = EpisodeRecorder(env_cfg, post_success_steps, action_noise, recovery)


def _record(seed: int) -> Episode:
    return _RECORDER(seed)


def ordered_episodes(env_cfg: dict, post_success_steps: int, first_seed: int, workers: int,
                     action_noise: ActionNoise | float = 0.0, recovery: float = 0.0):
    """Episodes for seeds first_seed, first_seed + 1, ... in order, simulated on ``workers`` processes."""
    if workers <= 1:
        recorder = EpisodeRecorder(env_cfg, post_success_steps, action_noise, recovery)
        seed = first_seed
        while True:
            yield recorder(seed)
            seed += 1
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: no forked GL state
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(env_cfg, post_success_steps, action_noise, recovery)) as pool:
        window = collections.deque(pool.submit(_record, first_seed + i) for i in range(2 * workers))
        next_seed = first_seed + len(window)
        try:
            while True:
                episode = window.popleft().result()
                window.append(pool.submit(_record, next_seed))
                next_seed += 1
                yield episode
        finally:
            for future in window:
                future.cancel()


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
            provenance: dict | None = None, action_noise: ActionNoise | float = 0.0, recovery: float = 0.0) -> CollectSummary:
    """Collects until the dataset at ``output_dir`` holds ``episodes`` kept episodes (resuming one
    that is there). ``provenance`` (e.g. scenario and split) is stored in the episode log.
    ``action_noise``: DART-style noise on the executed arm actions while the clean expert actions are
    recorded (an ``ActionNoise``, or its std in normalized units). ``recovery`` > 0: the fraction of episodes
    recorded as recovery demos (the first grasp aimed off, recorded from the expert's retreat on)."""
    from tqdm import tqdm

    from toyland.data.writer import DatasetWriter
    from toyland.sim import make_env, resolved_env_config
    from toyland.sim.experts import make_expert

    if keep not in KEEP:
        raise ValueError(f"keep={keep!r}; valid: {', '.join(KEEP)}")
    if episodes < 1:
        raise ValueError(f"episodes={episodes}: ask for at least one episode")
    action_noise = ActionNoise.of(action_noise)
    if not 0.0 <= recovery <= 1.0:
        raise ValueError(f"recovery={recovery}: use the fraction of recovery demos, between 0 (off) and 1")
    probe = make_env(env_cfg, terminate_on_success=False)
    expert = make_expert(probe)  # refuses a control mode the experts cannot act in before any worker starts
    if recovery > 0 and not hasattr(expert, "fumble"):
        raise ValueError(f"recovery={recovery}: the {env_cfg.get('task')} expert cannot aim a grasp off; use recovery=0")
    features = {**env_features(probe, video=video), **expert.annotation_features()}
    base = probe.unwrapped
    action_noise.mask(base.action_names)  # an entry this action space lacks: say so before any worker starts
    fps = int(round(base.control_cfg.rate_hz))
    robot_type = base.embodiment.name
    probe.close()
    config = {"env": resolved_env_config(env_cfg), "seed": seed, "keep": keep, "post_success_steps": post_success_steps,
              "video": video, **action_noise.record(),
              **({"recovery": recovery} if recovery else {}), **(provenance or {})}
    writer = DatasetWriter(output_dir, repo_id or f"toyland/{Path(output_dir).name}", features, fps, robot_type,
                           video, config, checkpoint_every)
    start_kept, start_discarded = writer.num_episodes, len(writer.log.discarded)
    bar = tqdm(total=episodes, initial=min(start_kept, episodes), desc="collect", unit="ep", disable=not progress)
    interrupted = False
    try:
        with StopRequest() as stop:
            if writer.num_episodes < episodes:
                for episode in ordered_episodes(env_cfg, post_success_steps, writer.log.next_seed, workers, action_noise,
                                                recovery):
                    if episode.success or keep == "all":
                        writer.add_episode(episode.frames, episode.task, episode.record)
                        bar.update(1)
                    else:
                        writer.discard({"seed": episode.seed, "outcome": episode.record["outcome"]})
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
