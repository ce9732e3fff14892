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


def holds_orientation(env) -> bool:
    """Six arm joints or more hold the tool's orientation while it moves; fewer trade it for position
    (the SO-101: five joints, orientation weighed low in its IK)."""
    return len(env.embodiment.arm_joints) >= 6


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
    if holds_orientation(env):
        assert np.linalg.norm(geo.rotvec_from_mat(rot1 @ rot0.T)) < 0.03


def test_rotation_follows_the_command(env):
    _, rot0 = env.scene.tcp_pose()
    start = env.scene.tcp_pose()[0]
    run(env, ee_action(move=(0, 0, 1)), 3)  # clear of the table
    run(env, ee_action(turn=(0, 0, 1)), 5)
    run(env, ee_action(), 8)
    _, rot1 = env.scene.tcp_pose()
    if holds_orientation(env):
        np.testing.assert_allclose(geo.rotvec_from_mat(rot1 @ rot0.T), [0, 0, 5 * TURN], atol=0.03)
    else:  # the jaw's heading in the table plane; the SO-101's tool tilts by 34 degrees up there
        # (its wrist at its limit), so a turn about its own axis shows as 0.4 of the 0.5 rad commanded
        heading = lambda rot: np.arctan2(rot[1, 1], rot[0, 1])  # noqa: E731  (the fingers' axis)
        assert (heading(rot1) - heading(rot0)) == pytest.approx(5 * TURN, abs=0.12)
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
    home, middle = u.embodiment.home_qpos(), (u.controller.joint_low + u.controller.joint_high) / 2
    target = home + np.sign(middle - home) * np.linspace(0.05, 0.15, len(home))  # towards the middle: in range
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
    if holds_orientation(u):
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


def test_experts_refuse_joint_position_mode_saying_which_modes_work():  # (lerobot_joint plans through IK)
    from toyland.sim.experts import make_expert

    env = make_env(control_mode="joint_position", cameras=[])
    with pytest.raises(ValueError, match="control_mode=ee_pose, ee_delta or lerobot_joint"):
        make_expert(env)


@pytest.mark.parametrize("embodiment", EMBODIMENTS.names())
def test_lerobot_joint_mode_speaks_lerobots_units(embodiment):
    """Degrees from each joint's zero and the gripper 0 (closed) .. 100 (open), in state and action."""
    env = make_env(embodiment=embodiment, control_mode="lerobot_joint", cameras=[], terminate_on_success=False)
    obs, _ = env.reset(seed=0)
    u = env.unwrapped
    names = [f"{j}.pos" for j in u.embodiment.arm_joints] + ["gripper.pos"]
    assert u.action_names == names and u.state_names == names
    state = obs["observation.state"]
    np.testing.assert_allclose(state[:-1], np.degrees(u.scene.data.qpos[u.scene.arm_qpos]), atol=1e-3)
    assert state[-1] > 95  # open at reset
    low, high = env.action_space.low, env.action_space.high
    np.testing.assert_allclose(low[:-1], np.degrees(u.controller.joint_low), rtol=1e-6)
    assert (low[-1], high[-1]) == (0.0, 100.0)
    home, middle = np.degrees(u.embodiment.home_qpos()), (low[:-1] + high[:-1]) / 2
    target = home + np.sign(middle - home) * np.linspace(3.0, 8.0, len(home))
    obs = run(u, np.r_[target, 100.0].astype(np.float32), 20)
    np.testing.assert_allclose(obs["observation.state"][:-1], target, atol=0.6)
    obs = run(u, np.r_[target, 0.0].astype(np.float32), 15)
    assert obs["observation.state"][-1] < 5


def test_the_expert_acts_in_lerobot_joint_mode():
    """It plans through the end-effector IK and sends that step's joint targets: the same episode."""
    from toyland.sim.experts import make_expert

    outcomes = {}
    for mode in ("ee_delta", "lerobot_joint"):
        env = make_env(embodiment="so101", control_mode=mode, cameras=[])
        env.reset(seed=4)
        expert, done, tcp = make_expert(env), False, []
        expert.reset()
        while not done:
            action = expert.act()
            assert env.action_space.contains(action), action
            _, _, terminated, truncated, info = env.step(action)
            tcp.append(env.unwrapped.scene.tcp_pose()[0])
            done = terminated or truncated
        outcomes[mode] = (info["is_success"], np.array(tcp))
    assert outcomes["ee_delta"][0] and outcomes["lerobot_joint"][0]
    np.testing.assert_allclose(outcomes["lerobot_joint"][1], outcomes["ee_delta"][1], atol=1e-3)


def test_box_ik_takes_minks_step_with_limits_active():
    """The controller's box QP gives the step mink's own solver (daqp) gives, with joint limits binding."""
    import mink

    env = make_env(cameras=[])
    env.reset(seed=0)
    ctl = env.unwrapped.controller
    rng = np.random.default_rng(0)
    binding = 0
    for _ in range(40):
        env.step(rng.uniform(-1, 1, 7).astype(np.float32))
        ctl.task.set_target(ctl.task.transform_target_to_world @ mink.SE3.exp(rng.normal(0, 0.3, 6)))  # far: limits bind
        ref = mink.solve_ik(ctl.configuration, [ctl.task, ctl.posture], ctl.dt, "daqp", 1e-3, limits=ctl.limits)
        ours = ctl._box.step(ctl.configuration, *ctl._objective(ctl.configuration))
        np.testing.assert_allclose(ours, ref, atol=1e-8)
        step = ours * ctl.dt
        binding += int(np.any(np.isclose(step, ctl._box.step_high) | np.isclose(step, ctl._box.step_low)))
    assert binding >= 10


@pytest.mark.parametrize("native", [True, False], ids=["mink_compiled", "mink_python"])
def test_tool_objective_is_minks_objective_bit_for_bit(native, monkeypatch):
    """The controller's one-pass IK objective equals the sum of mink's tasks' objectives exactly, with
    mink's compiled Lie-group operations and with its Python ones."""
    import mink

    from toyland.sim import control

    if native and control._lie is None:
        pytest.skip("this mink has no compiled Lie-group operations")
    if not native:
        monkeypatch.setattr(control, "_lie", None)
        monkeypatch.setattr("mink.tasks.frame_task._native", None, raising=False)
        monkeypatch.setattr("mink.configuration._native", None, raising=False)
    env = make_env(cameras=[])
    env.reset(seed=1)
    ctl = env.unwrapped.controller
    ctl.posture.lm_damping = 0.5  # the posture's LM term too (0 in the controller)
    rng = np.random.default_rng(1)
    for _ in range(20):
        env.step(rng.uniform(-1, 1, 7).astype(np.float32))
        ctl.task.set_target(ctl.task.transform_target_to_world @ mink.SE3.exp(rng.normal(0, 0.3, 6)))
        H, c = 1e-3 * np.eye(ctl.ik_model.nv), np.zeros(ctl.ik_model.nv)
        for task in (ctl.task, ctl.posture):
            H_task, c_task = task.compute_qp_objective(ctl.configuration)
            H += H_task
            c += c_task
        ours_H, ours_c = ctl._objective(ctl.configuration)
        assert np.array_equal(ours_H, H) and np.array_equal(ours_c, c)
