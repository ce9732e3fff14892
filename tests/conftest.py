import numpy as np
import pytest

import toyland  # noqa: F401  (chooses the headless GL backend before mujoco loads)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def lift_demos(tmp_path_factory):
    """Three kept expert episodes of Lift at 48x48 (seeds from 0), shared by data and training tests."""
    from toyland.data.collect import collect

    root = tmp_path_factory.mktemp("demos") / "lift"
    collect({"task": "lift", "image_size": 48}, root, episodes=3, seed=0, workers=1, progress=False)
    return root


@pytest.fixture(scope="session")
def language_lift_demos(tmp_path_factory):
    """Two kept expert episodes of language-conditioned Lift with distractors at 48x48, with the
    instructed target's mask (the VLA's DetPool input)."""
    from toyland.data.collect import collect

    root = tmp_path_factory.mktemp("demos") / "language_lift"
    env = {"task": "language_lift", "image_size": 48, "cameras": {"front": {"modalities": ["rgb", "mask"]}}}
    collect(env, root, episodes=2, seed=0, workers=1, progress=False)
    return root


@pytest.fixture
def network_attempts(monkeypatch):
    """This process's network closed and every offline switch of the hub libraries off: attempts are recorded."""
    import socket

    import datasets.config
    import huggingface_hub.constants

    attempts = []

    def refuse(what):
        attempts.append(what)
        raise OSError(f"network closed by the test: {what}")

    connect = socket.socket.connect

    def guarded(self, address, *args):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            refuse(address)
        return connect(self, address, *args)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: refuse(host))
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False)
    return attempts


@pytest.fixture
def run_at_once():
    """``run(target, args_list)``: one spawned process per args tuple, each called as ``target(*args, start)``
    where ``start`` is a barrier they pass together (so their work overlaps); asserts every one exits 0."""
    import multiprocessing as mp

    def run(target, args_list, timeout=120):
        ctx = mp.get_context("spawn")
        start = ctx.Barrier(len(args_list))
        procs = [ctx.Process(target=target, args=(*args, start)) for args in args_list]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=timeout)
            assert p.exitcode == 0

    return run
