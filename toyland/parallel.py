"""Worker processes that build one object each and serve calls on it, with the worker's own error
reaching the caller.

``ProcessPoolExecutor``'s initializer failing (an unknown toy set, a missing GL library, a broken
checkpoint) only breaks the pool, and the caller sees ``BrokenProcessPool`` with the cause lost in a
worker's stderr. Here the initializer keeps its exception and the first call re-raises it, so the
caller gets that error (its traceback from the worker attached as the cause). Workers are spawned:
a fresh interpreter, no forked GL or OpenMP state.
"""

from __future__ import annotations

import multiprocessing
import pickle
import signal
import traceback
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

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
