"""PickPlace's success predicate: the target resting inside the bowl, released, for a few steps."""

import mujoco
import numpy as np
import pytest

from toyland.sim import make_env
from toyland.sim.tasks.pick_place import BOWL_RADIUS


def drop_target_at(env, xy):
    u = env.unwrapped
    scene, task = u.scene, u.task
    body = scene.object_bodies[task.target_index]
    adr = scene.model.jnt_qposadr[scene.model.body_jntadr[body]]
    scene.data.qpos[adr : adr + 3] = [xy[0], xy[1], 0.12]
    scene.data.qvel[:] = 0
    mujoco.mj_forward(scene.model, scene.data)


def hold_still(env, steps):
    u = env.unwrapped
    action = np.array([0, 0, 1, 0, 0, 0, -1], np.float32)  # rise, gripper open: nothing touches the toy
    infos = []
    for _ in range(steps):
        _, _, terminated, _, info = env.step(action)
        infos.append(info)
        if terminated:
            break
    return u, infos


@pytest.mark.parametrize("task", ["pick_place", "place"])
def test_a_toy_dropped_into_the_bowl_succeeds_and_one_beside_it_does_not(task):
    env = make_env(task=task, cameras=[], toy_set="train")
    env.reset(seed=2)
    bowl = env.unwrapped.task.bowl_centre
    drop_target_at(env, bowl[:2])
    _, infos = hold_still(env, 25)
    assert infos[-1]["is_success"] and not infos[-1]["wrong_object"]

    env.reset(seed=2)
    outside = bowl[:2] + [0.0, BOWL_RADIUS + 0.12] if bowl[1] < 0 else bowl[:2] - [0.0, BOWL_RADIUS + 0.12]
    drop_target_at(env, outside)
    _, infos = hold_still(env, 25)
    assert not any(i["is_success"] for i in infos)


def test_the_bowl_never_overlaps_the_objects():
    env = make_env(task="pick_place", cameras=[], factors={"distractors": "ood_2"}, settle_time=0.0)  # as placed
    for seed in range(20):
        env.reset(seed=seed)
        u = env.unwrapped
        bowl = u.task.bowl_centre[:2]
        for toy, body in zip(u.task.toys, u.scene.object_bodies):
            assert np.linalg.norm(u.scene.data.xpos[body, :2] - bowl) > BOWL_RADIUS + toy.radius


def test_place_is_pick_and_place_with_the_target_alone():
    for task, objects in (("pick_place", 3), ("place", 1)):
        env = make_env(task=task, cameras=[], settle_time=0.0)
        env.reset(seed=0)
        assert len(env.unwrapped.scene.object_bodies) == objects
        assert env.unwrapped.task.instruction.endswith("in the bowl")
