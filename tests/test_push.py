"""The Push task (slide the toy onto a marker) and its scripted expert."""

import numpy as np
import pytest

from toyland.eval.actors import ExpertActor
from toyland.eval.runner import run_episode
from toyland.sim import make_env
from toyland.sim.experts import EXPERTS
from toyland.sim.tasks import TASKS
from toyland.sim.tasks.push import HOLD_STEPS, MARKER_HIGH, MARKER_LOW, PUSH_DISTANCE, SUCCESS_RADIUS


@pytest.fixture
def env():
    env = make_env(task="push", cameras=[], control_mode="ee_delta")
    yield env
    env.close()


def still(env):
    return np.r_[np.zeros(env.action_space.shape[0] - 1), -1.0].astype(np.float32)


def test_push_is_registered_with_its_env_id_and_expert():
    assert "push" in TASKS.names() and "push" in EXPERTS.names()
    assert make_env(task="push", cameras=[]).spec.id == "toyland/Push-v0"


def test_the_marker_has_no_collision_and_lies_a_push_away_inside_its_area(env):
    for seed in range(8):
        _, info = env.reset(seed=seed)
        scene, task = env.unwrapped.scene, env.unwrapped.task
        disc = scene.model.geom("marker/disc")
        assert disc.contype[0] == 0 and disc.conaffinity[0] == 0
        marker = np.asarray(info["marker_xy"])
        start = scene.data.xpos[scene.object_bodies[task.target_index], :2]
        assert PUSH_DISTANCE[0] - 0.01 <= np.linalg.norm(marker - start) <= PUSH_DISTANCE[1] + 0.01
        assert np.all((MARKER_LOW <= marker) & (marker <= MARKER_HIGH))
        assert task.centre_distance(scene, task.target_index) > SUCCESS_RADIUS and not info["is_success"]


def test_success_needs_the_toy_centre_over_the_marker_for_a_few_steps(env):
    env.reset(seed=3)
    scene, task = env.unwrapped.scene, env.unwrapped.task
    body = scene.object_bodies[task.target_index]
    adr = scene.model.jnt_qposadr[scene.model.body_jntadr[body]]
    # move the toy so that its centre of mass sits 1 cm from the marker's centre
    shift = task.marker_xy + [0.01, 0.0] - scene.data.xipos[body, :2]
    scene.data.qpos[adr : adr + 2] += shift
    scene.data.qvel[:] = 0
    successes = []
    for _ in range(HOLD_STEPS + 1):
        _, reward, terminated, _, info = env.step(still(env))
        successes.append(info["is_success"])
        if terminated:
            break
    assert successes[: HOLD_STEPS - 1] == [False] * (HOLD_STEPS - 1) and successes[-1] is True
    assert info["distance"] < SUCCESS_RADIUS and info["on_table"]


def test_expert_pushes_most_toys_onto_the_marker(env):
    # measured 49/50, 50/50 and 46/50 on seeds 0-49, 1000-1049 and 2000-2049 (ee_pose); 18/20 here
    # (ee_delta, seeds 2000-2019), 17/20 on the first approach
    actor = ExpertActor()
    results, first = [], 0
    for i in range(20):
        results.append(run_episode(env, actor, seed=2000 + i)[0])
        first += results[-1]["success"] and actor.expert.attempts == 1
    wins = sum(r["success"] for r in results)
    assert wins >= 17 and first >= 15, f"{wins}/20, {first} on the first approach"
    assert not any(r["clipped_actions"] for r in results)
    assert not any(r["outcome"]["grasped"] for r in results if r["success"])  # pushed, not carried
