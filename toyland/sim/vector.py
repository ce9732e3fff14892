"""A vector env whose worker processes each step several envs per message.

gymnasium's ``AsyncVectorEnv`` keeps one env per process, so every env step is a round trip: the
main process sends an action down a pipe, a worker steps, the main process wakes and reads the
observation. On 2 cores that round trip (scheduling latency, not data) cost about 0.5 ms per step
against 1.7 ms of simulation and rendering, and 2 workers gave 1.3-1.5x one env. Here each of
``workers`` processes runs a ``SyncVectorEnv`` over its share of the envs and steps them all per
message, so the round trip is paid once per ``num_envs / workers`` env steps
(``benchmarks/env_throughput.py`` measures it against one env).

Env ``i`` is the same env, seeded the same, whatever the number of workers: the envs are split into
contiguous blocks and everything the caller sees is in env order, so records do not depend on
``workers``. An error in a worker reaches the caller as that error; a worker that dies is named.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from typing import Any, Callable, Sequence

import cloudpickle
import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from toyland.parallel import _portable  # an exception that cannot be pickled travels as its text


class VectorWorkerError(RuntimeError):
    """A vector env worker died, so its envs are gone."""


def _serve(conn, payload: bytes, autoreset_mode: AutoresetMode) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when to stop
    try:
        envs = gym.vector.SyncVectorEnv(cloudpickle.loads(payload), autoreset_mode=autoreset_mode)
        conn.send(("ok", (envs.single_observation_space, envs.single_action_space, envs.metadata)))
    except BaseException as exc:
        conn.send(("error", _portable(exc)))
        return
    while True:
        command, args, kwargs = conn.recv()
        try:
            if command == "close":
                envs.close()
                conn.send(("ok", None))
                return
            conn.send(("ok", getattr(envs, command)(*args, **kwargs)))
        except BaseException as exc:
            conn.send(("error", _portable(exc)))


class WorkerVectorEnv(gym.vector.VectorEnv):
    """``len(env_fns)`` envs on ``workers`` spawned processes, each stepping its block of envs in one
    message. The same interface as gymnasium's vector envs (reset, step, call, get_attr, render)."""

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], workers: int | None = None,
                 autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP):
        n = len(env_fns)
        if n < 1:
            raise ValueError("WorkerVectorEnv needs at least one env function")
        if workers is None:  # one per CPU core, at most one per env
            workers = min(n, os.cpu_count() or 1)
        if not 1 <= int(workers) <= n:
            raise ValueError(f"workers={workers}: between 1 and the number of envs ({n})")
        self.num_envs, self.autoreset_mode = n, AutoresetMode(autoreset_mode)
        bounds = np.linspace(0, n, int(workers) + 1).round().astype(int)
        self.blocks = [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked GL or OpenMP state
        self._conns, self._processes, self.closed = [], [], False
        try:
            for block in self.blocks:
                parent, child = ctx.Pipe()
                process = ctx.Process(target=_serve, args=(child, cloudpickle.dumps(list(env_fns[block])), self.autoreset_mode),
                                      daemon=True, name=f"toyland-vector-{len(self._processes)}")
                process.start()
                child.close()
                self._conns.append(parent)
                self._processes.append(process)
            spaces = self._gather()
        except BaseException:
            self.close(terminate=True)
            raise
        self.single_observation_space, self.single_action_space, self.metadata = spaces[0]
        self.metadata = {**self.metadata, "autoreset_mode": self.autoreset_mode}
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)

    # -- messaging ---------------------------------------------------------------------------------
    def _send(self, command: str, make: Callable[[slice], tuple[tuple, dict]]) -> None:
        """Sends each worker ``command`` with the arguments ``make`` gives for its block of envs."""
        if self.closed:
            raise RuntimeError("this vector env is closed")
        for conn, block in zip(self._conns, self.blocks):
            args, kwargs = make(block)
            conn.send((command, args, kwargs))

    def _gather(self) -> list:
        results, error = [], None
        for i, conn in enumerate(self._conns):
            try:
                status, value = conn.recv()
            except (EOFError, ConnectionError):
                self._processes[i].join(1.0)
                status, value = "error", VectorWorkerError(
                    f"vector env worker {i} (envs {self.blocks[i].start}..{self.blocks[i].stop - 1}) died"
                    f" (exit code {self._processes[i].exitcode}); the vector env cannot go on: make a new one")
            if status == "error" and error is None:
                error = value
            results.append(value)
        if error is not None:  # every worker answered, so the pipes stay in step; the first error wins
            raise error
        return results

    # -- gymnasium's interface ----------------------------------------------------------------------
    def reset(self, *, seed: int | Sequence[int | None] | None = None, options: dict | None = None):
        if seed is None or isinstance(seed, (int, np.integer)):
            seeds = [None if seed is None else int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"reset got {len(seeds)} seeds for {self.num_envs} envs")
        self._send("reset", lambda b: ((), {"seed": seeds[b], "options": options}))
        parts = self._gather()
        return _concat([p[0] for p in parts], self.single_observation_space), self._merge_infos([p[1] for p in parts])

    def step(self, actions):
        actions = np.asarray(actions) if not isinstance(actions, (dict, tuple)) else actions
        self._send("step", lambda b: ((actions[b],), {}))
        parts = self._gather()
        obs = _concat([p[0] for p in parts], self.single_observation_space)
        reward, terminated, truncated = (_concat([p[k] for p in parts]) for k in (1, 2, 3))
        return obs, reward, terminated, truncated, self._merge_infos([p[4] for p in parts])

    def call(self, name: str, *args, **kwargs) -> tuple:
        self._send("call", lambda b: ((name, *args), kwargs))
        return tuple(x for part in self._gather() for x in part)

    def get_attr(self, name: str) -> tuple:
        self._send("get_attr", lambda b: ((name,), {}))
        return tuple(x for part in self._gather() for x in part)

    def set_attr(self, name: str, values: Any) -> None:
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(f"set_attr got {len(values)} values for {self.num_envs} envs")
        self._send("set_attr", lambda b: ((name, list(values[b])), {}))
        self._gather()

    def render(self):
        return self.call("render")

    def close(self, terminate: bool = False, **kwargs) -> None:
        if getattr(self, "closed", True):
            return
        self.closed = True
        for conn, process in zip(self._conns, self._processes):
            if not terminate and process.is_alive():
                try:
                    conn.send(("close", (), {}))
                    conn.recv()
                except (EOFError, ConnectionError, BrokenPipeError):
                    pass
            process.join(5.0)
            if process.is_alive():
                process.terminate()
                process.join()
            conn.close()

    def __del__(self):
        try:
            self.close(terminate=True)
        except Exception:
            pass

    # -- helpers ------------------------------------------------------------------------------------
    def _merge_infos(self, parts: list[dict]) -> dict:
        return _merge_infos(parts, [b.stop - b.start for b in self.blocks])


def _concat(parts: list, space: gym.Space | None = None):
    """Joins the workers' batched values along the env axis, as ``space`` (the single env's) batches:
    arrays for Box and the discrete spaces, tuples for spaces gymnasium batches as tuples (Text)."""
    if isinstance(space, gym.spaces.Dict):
        return {k: _concat([p[k] for p in parts], sub) for k, sub in space.spaces.items()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(_concat([p[i] for p in parts], sub) for i, sub in enumerate(space.spaces))
    if space is None or isinstance(space, (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiBinary,
                                           gym.spaces.MultiDiscrete)):
        return np.concatenate([np.asarray(p) for p in parts], axis=0)
    return tuple(x for p in parts for x in p)


def _merge_infos(parts: list[dict], sizes: list[int]) -> dict:
    """Vectorized infos of env blocks -> the infos of all envs: a key one block lacks gets
    gymnasium's default there (zero, False or None) and its ``_key`` mask stays False."""
    n, starts = sum(sizes), np.cumsum([0, *sizes])
    merged: dict = {}
    for key in dict.fromkeys(k for p in parts for k in p):
        present = [p[key] for p in parts if key in p]
        if isinstance(present[0], dict):
            merged[key] = _merge_infos([p.get(key, {}) for p in parts], sizes)
            continue
        template = np.asarray(present[0])
        full = np.zeros((n, *template.shape[1:]), dtype=template.dtype) if template.dtype != object \
            else np.full(n, None, dtype=object)
        for i, p in enumerate(parts):
            if key in p:
                full[starts[i]:starts[i + 1]] = p[key]
        merged[key] = full
    return merged


def make_vector_env(num_envs: int, workers: int | None = None,
                    autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP, **env_cfg) -> WorkerVectorEnv:
    """``gym.make_vec("toyland/<Task>-v0", num_envs, vectorization_mode="vector_entry_point",
    workers=2, **env config)``: ``num_envs`` toyland envs of one config on ``workers`` processes
    (default: one per CPU core, at most one per env)."""
    import functools

    from toyland.sim import make_env

    return WorkerVectorEnv([functools.partial(make_env, env_cfg)] * num_envs, workers, autoreset_mode)


__all__ = ["WorkerVectorEnv", "VectorWorkerError", "make_vector_env"]
