"""Action modes: end-effector deltas move the tool as commanded, joint limits hold, grippers work."""

import numpy as np
import pytest

from toyland.sim import geometry as geo
from toyland.sim import make_env
from toyland.sim.embodiments import EMBODIMENTS

STEP = 0.4 / 20  # max linear speed (m/s) x control period: metres per step at action 1
TURN = 2.0 / 20


def ee_action(move=(0, 0, 0), turn=(0, 0, 0), grip=-1.0):
    return np.array([*move, *turn, grip], np.float32)


def run(env, action, steps):
    for _ in range(steps):
        obs, *_ = env.step(action)
    return obs


@pytest.fixture(params=EMBODIMENTS.names())
def env(request):
    env = make_env(embodiment=request.param, control_mode="ee_delta", cameras=[], terminate_on_success=False)
    env.reset(seed=0)
    yield env.unwrapped
    env.close()


def test_translation_follows_the_command(env):
    start, rot0 = env.scene.tcp_pose()
    run(env, ee_action(move=(0, 0, 1)), 4)
    run(env, ee_action(move=(0, -1, 0)), 4)
    run(env, ee_action(), 8)  # hold still so the servos settle
    end, rot1 = env.scene.tcp_pose()
    np.testing.assert_allclose(end - start, [0, -4 * STEP, 4 * STEP], atol=0.006)
    assert np.linalg.norm(geo.rotvec_from_mat(rot1 @ rot0.T)) < 0.03


def test_rotation_follows_the_command(env):
    _, rot0 = env.scene.tcp_pose()
    start = env.scene.tcp_pose()[0]
    run(env, ee_action(move=(0, 0, 1)), 3)  # clear of the table
    run(env, ee_action(turn=(0, 0, 1)), 5)
    run(env, ee_action(), 8)
    _, rot1 = env.scene.tcp_pose()
    np.testing.assert_allclose(geo.rotvec_from_mat(rot1 @ rot0.T), [0, 0, 5 * TURN], atol=0.03)
    assert env.scene.tcp_pose()[0][2] == pytest.approx(start[2] + 3 * STEP, abs=0.006)


def test_gripper_closes_and_opens(env):
    run(env, ee_action(move=(0, 0, 1)), 3)  # nothing between the fingers
    run(env, ee_action(grip=1.0), 10)
    assert env.scene.finger_opening() < 0.005
    run(env, ee_action(grip=-1.0), 10)
    assert env.scene.finger_opening() > 0.075


def test_joint_limits_hold_when_pushing_out_of_reach(env):
    m, d = env.scene.model, env.scene.data
    joints = [m.joint(env.embodiment.prefix + n).id for n in env.embodiment.arm_joints]
    low, high = m.jnt_range[joints].T
    for move in [(1, 0, 1), (0, 1, 0), (-1, -1, -1)]:
        for _ in range(40):
            env.step(ee_action(move=move, turn=(1, 0, 0)))
            q = d.qpos[env.scene.arm_qpos]
            assert np.all(q >= low - 0.02) and np.all(q <= high + 0.02), q


@pytest.mark.parametrize("embodiment", EMBODIMENTS.names())
def test_joint_position_mode_reaches_its_targets(embodiment):
    env = make_env(embodiment=embodiment, control_mode="joint_position", cameras=[], terminate_on_success=False)
    env.reset(seed=0)
    u = env.unwrapped
    target = u.embodiment.home_qpos() + np.linspace(0.05, 0.15, len(u.embodiment.arm_joints))
    action = np.r_[u.controller.normalize(target), -1.0].astype(np.float32)
    run(u, action, 20)
    np.testing.assert_allclose(u.scene.data.qpos[u.scene.arm_qpos], target, atol=0.01)
    env.close()


@pytest.mark.parametrize("embodiment", EMBODIMENTS.names())
def test_pose_mode_goes_to_the_commanded_pose_at_bounded_speed(embodiment):
    env = make_env(embodiment=embodiment, control_mode="ee_pose", cameras=[], terminate_on_success=False)
    env.reset(seed=0)
    u = env.unwrapped
    start, rot0 = u.scene.tcp_pose()
    goal_pos = start + np.array([0.06, -0.05, 0.08])
    goal_rot = geo.mat_from_rotvec([0.0, 0.0, 0.4]) @ rot0
    action = u.controller.encode(goal_pos, goal_rot, -1.0)
    env.step(action)
    # one step moves the command by at most the delta mode's top speed per axis
    assert np.all(np.abs(u.controller.target_pos - start) <= STEP + 1e-3)
    run(u, action, 30)
    end, rot1 = u.scene.tcp_pose()
    np.testing.assert_allclose(end, goal_pos, atol=0.006)
    assert np.linalg.norm(geo.rotvec_from_mat(rot1 @ goal_rot.T)) < 0.03
    np.testing.assert_allclose(u.controller.decode(action)[0], goal_pos, atol=1e-9)


def test_the_expert_does_the_same_in_pose_and_delta_modes():
    from toyland.sim.experts import make_expert

    traces = {}
    for mode in ("ee_delta", "ee_pose"):
        env = make_env(control_mode=mode, cameras=[])
        env.reset(seed=4)
        expert = make_expert(env)
        expert.reset()
        states, done = [], False
        while not done:
            obs, _, terminated, truncated, info = env.step(expert.act())
            states.append(obs["observation.state"])
            done = terminated or truncated
        traces[mode] = (np.array(states), info["is_success"])
    (delta, ok_delta), (pose, ok_pose) = traces["ee_delta"], traces["ee_pose"]
    assert ok_delta and ok_pose and delta.shape == pose.shape
    np.testing.assert_allclose(pose, delta, atol=1e-4)


def test_experts_refuse_joint_position_mode_saying_which_modes_work():
    from toyland.sim.experts import make_expert

    env = make_env(control_mode="joint_position", cameras=[])
    with pytest.raises(ValueError, match="control_mode=ee_pose or ee_delta"):
        make_expert(env)
