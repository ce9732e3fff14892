"""Worker processes that build one object each and serve calls on it: on this machine (spawned
processes) or on Ray (a local instance or a cluster), with the worker's own error reaching the
caller and a dead worker costing only the items it was running.

``ProcessPoolExecutor``'s initializer failing (an unknown toy set, a missing GL library, a broken
checkpoint) only breaks the pool, and the caller sees ``BrokenProcessPool`` with the cause lost in a
worker's stderr. Here the initializer keeps its exception and the first call re-raises it, so the
caller gets that error (its traceback from the worker attached as the cause). Workers are spawned:
a fresh interpreter, no forked GL or OpenMP state.

``map_unordered`` (evaluation chunks) and ``map_ordered`` (collection, re-rendering: a dataset is
written in seed order) run a method over items. An item whose worker dies (SIGKILL, the OOM killer,
a lost node) runs again on a fresh worker, up to ``retries`` times (a local pool breaks as a whole,
so the other items it was running run again too); an exception raised by the item itself is not
retried (items are deterministic: it would fail again) and reaches the caller as itself.
"""

from __future__ import annotations

import multiprocessing
import pickle
import signal
import traceback
import warnings
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator

# The object this worker process serves (or the error building it), set once by _init. Module
# state by necessity: it is the only place a pool's initializer can leave something for its tasks.
_SERVED: dict[str, Any] = {}


class WorkerError(RuntimeError):
    """An error in a worker whose exception could not be sent back as itself."""


def _portable(exc: BaseException) -> BaseException:
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        text = "".join(traceback.format_exception(exc))
        return WorkerError(f"{type(exc).__name__} in a worker process: {exc}\n{text}")


def _init(factory: Callable, args: tuple) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when to stop
    try:
        _SERVED["object"] = factory(*args)
    except BaseException as exc:  # raised again by the first call, where the caller sees it
        _SERVED["error"] = _portable(exc)


def _call(method: str, item):
    if "error" in _SERVED:
        raise _SERVED["error"]
    try:
        return getattr(_SERVED["object"], method)(item)
    except BaseException as exc:
        raise _portable(exc) from None


def worker_pool(workers: int, factory: Callable, *args) -> "Pool":
    """A pool of ``workers`` spawned processes, each serving ``factory(*args)``."""
    return Pool(workers, factory, args)


class Pool:
    def __init__(self, workers: int, factory: Callable, args: tuple):
        ctx = multiprocessing.get_context("spawn")
        self.executor = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init, initargs=(factory, args))

    def submit(self, method: str, item):
        """``factory(*args).method(item)`` in some worker; a future of its result."""
        return self.executor.submit(_call, method, item)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.executor.shutdown(wait=True, cancel_futures=True)


class WorkerLost(RuntimeError):
    """Worker processes kept dying (killed, out of memory, a lost node) after their items were rerun."""


class _Lost(Exception):
    """A handle whose worker died before it returned."""


LAUNCHERS = ("local", "ray")


def check_launcher(launcher: str, address: str | None = None) -> None:
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher={launcher!r} is not one of {', '.join(LAUNCHERS)}")
    if address and launcher != "ray":
        raise ValueError(f"ray_address={address} needs launcher=ray")


class _LocalBackend:
    """Spawned processes; a dead one breaks the whole pool, which is replaced (``restart``)."""

    def __init__(self, workers, factory, args):
        self.spec, self.pool = (workers, factory, args), None
        self.restart()

    def restart(self):
        if self.pool is not None:
            self.pool.__exit__(None, None, None)
        self.pool = Pool(*self.spec)

    def submit(self, method, item):
        try:
            return self.pool.submit(method, item)
        except BrokenProcessPool as exc:  # broke since the last result: a handle that reports the loss
            from concurrent.futures import Future

            lost = Future()
            lost.set_exception(exc)
            return lost

    def wait_any(self, handles):
        return next(iter(wait(handles, return_when=FIRST_COMPLETED).done))

    def result(self, handle):
        try:
            return handle.result()
        except BrokenProcessPool:
            raise _Lost from None

    def close(self):
        self.pool.__exit__(None, None, None)


class _Served:
    """A Ray actor's object: built once, its construction error raised by the first call (as ``_init``)."""

    def __init__(self, factory, args):
        import torch

        torch.set_num_threads(1)
        try:
            self.object, self.error = factory(*args), None
        except BaseException as exc:
            self.object, self.error = None, _portable(exc)

    def call(self, method, item):
        if self.error is not None:
            raise self.error
        return getattr(self.object, method)(item)


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fails at once with the address instead of after Ray's own connection timeout."""
    import socket

    if address == "auto":  # the cluster this machine already belongs to
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"ray_address={address!r} is not HOST:PORT (the head node's GCS port, 6379 by default) or 'auto'")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ConnectionError(f"the Ray cluster at {address} cannot be reached ({exc}); start it with `ray start "
                              "--head` there, or leave ray_address unset for a local Ray instance") from None


def _ray():
    try:
        import ray
    except ImportError:
        raise ImportError("launcher=ray needs Ray: bash scripts/setup.sh installs it") from None
    return ray


def start_ray(address: str | None, num_cpus: int | None = None, **kwargs) -> bool:
    """Connects to the cluster at ``address`` (checked first) or starts a local instance of
    ``num_cpus`` CPUs, unless Ray is already running; whether this call started it (and shuts it down)."""
    ray = _ray()
    if address:
        check_reachable(address)
    if ray.is_initialized():
        return False
    ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False,
             **({"address": address} if address else {"num_cpus": num_cpus}), **kwargs)
    return True


class _RayBackend:
    """Ray actors, one CPU each. Ray itself restarts a dead actor (building its object again) and
    retries the call it was running, ``retries`` times; past that the handle is lost for good."""

    def __init__(self, workers, factory, args, retries, address):
        ray = self.ray = _ray()
        self.started = start_ray(address, num_cpus=workers, runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
        served = ray.remote(num_cpus=1, max_restarts=retries, max_task_retries=retries)(_Served)
        self.actors = [served.remote(factory, args) for _ in range(workers)]
        self.load = [0] * workers  # calls in flight per actor: the least loaded gets the next item
        self.owner = {}

    def restart(self):
        raise AssertionError("Ray restarts its own actors")

    def submit(self, method, item):
        k = min(range(len(self.actors)), key=self.load.__getitem__)
        ref = self.actors[k].call.remote(method, item)
        self.load[k] += 1
        self.owner[ref] = k
        return ref

    def wait_any(self, handles):
        return self.ray.wait(list(handles), num_returns=1)[0][0]

    def result(self, ref):
        from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

        self.load[self.owner.pop(ref)] -= 1
        try:
            return self.ray.get(ref)
        except RayTaskError as exc:  # the item's own error, raised as itself
            raise exc.as_instanceof_cause() from None
        except (RayActorError, WorkerCrashedError):
            raise _Lost from None

    def close(self):
        self.actors = []  # actors end with their last handle (on a cluster too)
        if self.started:
            self.ray.shutdown()


def _backend(workers, factory, args, launcher, address, retries):
    check_launcher(launcher, address)
    if launcher == "ray":
        return _RayBackend(workers, factory, args, retries, address)
    return _LocalBackend(workers, factory, args)


class _Losses:
    """How often each item's worker died under it; too often ends the run, naming the item."""

    def __init__(self, backend, retries: int):
        self.backend, self.retries, self.count = backend, retries, {}

    def lost(self, keys: list, describe) -> None:
        if isinstance(self.backend, _RayBackend):  # Ray has already restarted the actor and retried the call
            raise WorkerLost(f"a Ray worker died {self.retries + 1} times running {describe(keys[0])} (killed, or out of "
                             "memory?); lower workers= or look for what kills them")
        for key in keys:
            self.count[key] = self.count.get(key, 0) + 1
            if self.count[key] > self.retries:
                raise WorkerLost(f"a worker process died {self.count[key]} times running {describe(key)} (killed, or "
                                 "out of memory?); lower workers= or look for what kills them (dmesg shows the OOM killer)")
        warnings.warn(f"a worker process died; running the {len(keys)} item(s) it took down again on new workers",
                      RuntimeWarning, stacklevel=4)
        self.backend.restart()


def map_unordered(items: list, factory: Callable, args: tuple, method: str, *, workers: int, launcher: str = "local",
                  address: str | None = None, retries: int = 2) -> Iterator[tuple[int, Any]]:
    """``factory(*args).method(item)`` for every item on ``workers`` workers; yields ``(index, result)``
    as items finish, each index once. Items are handed out as workers free up (one per local process,
    two per Ray actor so that the next is queued on it). A local pool breaks as a whole when one of
    its processes dies: every item it was running is run again (each at most ``retries`` times)."""
    backend = _backend(workers, factory, args, launcher, address, retries)
    losses = _Losses(backend, retries)
    queue, running = deque(enumerate(items)), {}  # running: handle -> (index, item)
    flight = workers * (2 if launcher == "ray" else 1)
    try:
        while queue or running:
            while queue and len(running) < flight:
                i, item = queue.popleft()
                running[backend.submit(method, item)] = (i, item)
            handle = backend.wait_any(running)
            i, item = running.pop(handle)
            try:
                result = backend.result(handle)
            except _Lost:
                lost = [(i, item)]
                for other, (j, it) in list(running.items()):  # the broken pool has settled every call
                    try:
                        done = backend.result(other)
                    except _Lost:
                        lost.append((j, it))
                        continue
                    yield j, done
                running.clear()
                losses.lost([j for j, _ in lost], lambda j: f"item {j}")
                queue.extendleft(reversed(lost))
                continue
            yield i, result
    finally:
        backend.close()


def map_ordered(items: Iterable, factory: Callable, args: tuple, method: str, *, workers: int, launcher: str = "local",
                address: str | None = None, retries: int = 2) -> Iterator[Any]:
    """``factory(*args).method(item)`` for each item of a (possibly endless) iterable, yielded in the
    items' order, with ``2 * workers`` items in flight."""
    backend = _backend(workers, factory, args, launcher, address, retries)
    losses = _Losses(backend, retries)
    items, position = iter(items), 0
    window: deque = deque()  # [position, item, handle or _Settled], in order
    try:
        while True:
            while len(window) < 2 * workers:
                item = next(items, _END)
                if item is _END:
                    break
                window.append([position, item, backend.submit(method, item)])
                position += 1
            if not window:
                return
            try:
                result = _settle(backend, window[0][2])
            except _Lost:
                lost = []
                for entry in window:  # keep what finished before the pool broke; the rest run again
                    try:
                        entry[2] = _Settled(_settle(backend, entry[2]))
                    except _Lost:
                        lost.append(entry)
                losses.lost([e[0] for e in lost], lambda k: f"item {k} of the stream")
                for entry in lost:
                    entry[2] = backend.submit(method, entry[1])
                continue
            window.popleft()
            yield result
    finally:
        backend.close()


class _Settled:
    def __init__(self, value):
        self.value = value


def _settle(backend, handle):
    return handle.value if isinstance(handle, _Settled) else backend.result(handle)


_END = object()
