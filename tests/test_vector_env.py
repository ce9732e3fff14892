"""The worker vector env: the same envs and numbers as gymnasium's SyncVectorEnv, errors as themselves."""

import functools
import os
import signal

import gymnasium as gym
import numpy as np
import pytest

from toyland.sim import make_env
from toyland.sim.env import env_id
from toyland.sim.tasks import TASKS
from toyland.sim.vector import VectorWorkerError, WorkerVectorEnv

CFG = {"cameras": ["front"], "image_size": 24, "max_episode_steps": 3, "terminate_on_success": False}


def _broken_env():
    raise FileNotFoundError("no such toy set: /nowhere")


def _rollout(envs, steps=5):
    """Observations, rewards, end flags and success infos over ``steps`` steps, through an autoreset."""
    obs, info = envs.reset(seed=[3, 4, 5])
    actions = np.random.default_rng(0).uniform(-0.5, 0.5, (steps, 3, 7)).astype(np.float32)
    record = [(obs, info["toys"])]
    for a in actions:
        obs, reward, terminated, truncated, info = envs.step(a)
        record.append((obs, reward, terminated, truncated, info.get("is_success"), info.get("_is_success")))
    return record


def _assert_same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif a is None or isinstance(a, str):
        assert a == b
    else:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_worker_vector_env_matches_sync_env_for_env_and_autoreset():
    fns = [functools.partial(make_env, CFG)] * 3
    sync = gym.vector.SyncVectorEnv(fns)
    workers = WorkerVectorEnv(fns, workers=2)  # blocks of 2 and 1 envs
    try:
        assert workers.observation_space == sync.observation_space
        assert workers.action_space == sync.action_space
        _assert_same(_rollout(sync), _rollout(workers))  # the step after the 3-step limit is an autoreset
        assert workers.get_attr("substeps") == sync.get_attr("substeps") and len(workers.get_attr("substeps")) == 3
        assert len(workers.render()) == 3
    finally:
        sync.close()
        workers.close()


def test_make_vec_entry_point_and_worker_errors():
    envs = gym.make_vec(env_id(TASKS.get("lift")), num_envs=2, vectorization_mode="vector_entry_point", workers=2, **CFG)
    try:
        assert isinstance(envs, WorkerVectorEnv)
        obs, _ = envs.reset(seed=0)
        assert obs["observation.images.front"].shape == (2, 24, 24, 3)
        with pytest.raises(ValueError, match="action must have shape"):  # the env's own error, from its worker
            envs.step(np.zeros((2, 6), np.float32))
        envs.step(np.zeros((2, 7), np.float32))  # the pipes stay in step after an error
        os.kill(envs._processes[1].pid, signal.SIGKILL)
        with pytest.raises(VectorWorkerError, match=r"worker 1 \(envs 1..1\) died"):
            envs.step(np.zeros((2, 7), np.float32))
    finally:
        envs.close()
    with pytest.raises(FileNotFoundError, match="no such toy set"):
        WorkerVectorEnv([_broken_env, _broken_env], workers=2)
    with pytest.raises(ValueError, match="workers=3"):
        WorkerVectorEnv([_broken_env] * 2, workers=3)
