"""Co-training modalities (issue 28, arXiv 2602.01067): cross-embodiment data in the tool's state and
action space with the embodiment given to the policy, dense phase annotations and discrete action
tokens as auxiliary targets."""

import numpy as np
import pytest
import torch

from toyland.data.batches import BatchSampler, Phase, Source
from toyland.data.frames import DatasetError, FrameStore
from toyland.sim.annotations import PHASE_ANNOTATION, PHASES
from toyland.sim.embodiments import EMBODIMENTS

TOOL_STATE = ["gripper.opening", "tcp.x", "tcp.y", "tcp.z", "tcp.qw", "tcp.qx", "tcp.qy", "tcp.qz"]
CHUNK = [i / 20 for i in range(8)]


@pytest.fixture(scope="module")
def tool_demos(tmp_path_factory):
    """Two Lift episodes each of the Panda and the floating gripper at 48x48, tool state only."""
    from toyland.data.collect import collect

    out = {}
    for robot in ("panda", "floating_gripper"):
        root = tmp_path_factory.mktemp("cross") / robot
        collect({"task": "lift", "image_size": 48, "embodiment": robot, "state": "tool"}, root, episodes=2, seed=0,
                workers=1, progress=False)
        out[robot] = root
    return out


@pytest.mark.parametrize("robot", EMBODIMENTS.names())
def test_tool_state_is_the_same_entries_on_every_embodiment(robot):
    from toyland.sim import make_env

    full = make_env({"embodiment": robot, "cameras": []})
    tool = make_env({"embodiment": robot, "cameras": [], "state": "tool"})
    try:
        assert tool.unwrapped.state_names == TOOL_STATE
        assert tool.observation_space["observation.state"].shape == (len(TOOL_STATE),)
        a, _ = full.reset(seed=3)
        b, _ = tool.reset(seed=3)
        keep = [full.unwrapped.state_names.index(n) for n in TOOL_STATE]
        np.testing.assert_array_equal(a["observation.state"][keep], b["observation.state"])
    finally:
        full.close()
        tool.close()


def test_state_option_refusals_name_the_fix():
    from toyland.sim import make_env

    with pytest.raises(ValueError, match="valid: full, tool"):
        make_env({"cameras": [], "state": "joints"})
    with pytest.raises(ValueError, match="use state=full or an end-effector control mode"):
        make_env({"embodiment": "so101", "control_mode": "lerobot_joint", "cameras": [], "state": "tool"})


def test_a_policy_refuses_an_env_whose_state_means_otherwise():
    from test_policies import NAMES

    from toyland.policies.features import FeatureMismatch, PolicyFeatures
    from toyland.sim import make_env

    features = PolicyFeatures(cameras={}, state_dim=15, action_dim=7, fps=20, **NAMES)
    env = make_env({"cameras": [], "state": "tool"})
    try:
        with pytest.raises(FeatureMismatch, match="set env.state and env.control_mode"):
            features.check_env(env)
    finally:
        env.close()
    tool = PolicyFeatures(cameras={}, state_dim=8, action_dim=7, fps=20, state_names=tuple(TOOL_STATE),
                          action_names=NAMES["action_names"])
    for robot in EMBODIMENTS.names():
        env = make_env({"cameras": [], "state": "tool", "embodiment": robot})
        try:
            tool.check_env(env)  # one policy acts on every embodiment
        finally:
            env.close()


def test_an_embodiment_mixed_batch_keeps_each_sources_masks(tool_demos, lift_demos):
    panda, floating = (FrameStore.load(tool_demos[r]) for r in ("panda", "floating_gripper"))
    assert (panda.robot_type, floating.robot_type) == ("panda", "floating_gripper")
    deltas = {"observation.images.front": [0.0], "observation.state": [0.0], "action": CHUNK, PHASE_ANNOTATION: [0.0]}
    # the floating gripper's phases hidden (an unannotated source beside an annotated one)
    sources = [Source("panda", panda), Source("floating", floating, rename={PHASE_ANNOTATION: "annotation.none"})]
    batch = BatchSampler(sources, deltas, 64, phases=[Phase({"panda": 1, "floating": 1})]).sample(0)
    floating_rows = batch["source"] == 1
    assert 0 < floating_rows.sum() < 64
    assert batch["robot_type"] == ["floating_gripper" if f else "panda" for f in floating_rows.tolist()]
    assert "observation.state_dim_mask" not in batch  # one state space: nothing padded
    assert torch.equal(batch[f"{PHASE_ANNOTATION}_present"], ~floating_rows)
    assert batch[PHASE_ANNOTATION][floating_rows].abs().sum() == 0
    assert torch.all(batch[PHASE_ANNOTATION][~floating_rows].sum(-1) == 1)
    with pytest.raises(DatasetError, match="toyland collect"):  # data recorded without the annotation
        BatchSampler([Source("floating", floating, rename={PHASE_ANNOTATION: "annotation.none"})],
                     {PHASE_ANNOTATION: [0.0]}, 8)
    # a full 15-d Panda state beside the gripper's tool state would put joints under tool entries
    with pytest.raises(DatasetError, match="env.state=tool"):
        BatchSampler([Source("full", FrameStore.load(lift_demos)), Source("floating", floating)],
                     {"observation.state": [0.0]}, 8)


def test_auxiliary_losses_leave_out_what_a_sample_lacks():
    from toyland.policies.auxiliary import ActionTokenHead, PhaseHead

    torch.manual_seed(0)
    head = PhaseHead(6, None)
    features = torch.randn(4, 6, requires_grad=True)
    labels = torch.nn.functional.one_hot(torch.tensor([[0], [1], [2], [3]]), len(PHASES)).float()
    present = torch.tensor([True, True, False, True])
    loss, _ = head.loss(features, {PHASE_ANNOTATION: labels, f"{PHASE_ANNOTATION}_present": present})
    loss.backward()
    assert features.grad[2].abs().sum() == 0 and features.grad[[0, 1, 3]].abs().sum() > 0
    changed = labels.clone()
    changed[2] = torch.nn.functional.one_hot(torch.tensor([9]), len(PHASES)).float()
    again, _ = head.loss(features, {PHASE_ANNOTATION: changed, f"{PHASE_ANNOTATION}_present": present})
    assert torch.equal(loss, again)
    with pytest.raises(Exception, match="phase_aux=0"):
        PhaseHead(6, {"action": {}})

    tokens = ActionTokenHead(6, horizon=2, action_dim=3, bins=8)
    assert tokens.tokens(torch.tensor([-1.0, -0.76, 0.0, 0.999, 1.0, 3.0])).tolist() == [0, 0, 4, 7, 7, 7]
    actions = torch.rand(4, 2, 3) * 2 - 1
    dim_mask = torch.tensor([[True, True, False]] * 4)
    features = torch.randn(4, 6)
    base, _ = tokens.loss(features, actions, {"action_dim_mask": dim_mask})
    shifted = actions.clone()
    shifted[..., 2] = -shifted[..., 2]  # the padded dimension's values do not count
    assert torch.equal(base, tokens.loss(features, shifted, {"action_dim_mask": dim_mask})[0])
    pad = torch.tensor([[False, True]] * 4)
    shifted = actions.clone()
    shifted[:, 1] = -shifted[:, 1]
    assert torch.equal(tokens.loss(features, actions, {"action_is_pad": pad}, mask_padding=True)[0],
                       tokens.loss(features, shifted, {"action_is_pad": pad}, mask_padding=True)[0])


def test_the_embodiment_conditions_the_policy_and_others_are_refused():
    from test_policies import fake_batch, tiny_policy

    policy = tiny_policy("diffusion-cotraining").eval()
    batch = fake_batch(policy, batch_size=2)
    panda = policy.condition(batch)
    floating = policy.condition({**batch, "robot_type": ["floating_gripper"] * 2})
    width = policy.config.embodiment_dim
    torch.testing.assert_close(panda[:, :-width], floating[:, :-width])  # the rest of the condition is the same
    assert not torch.allclose(panda[:, -width:], floating[:, -width:])
    with pytest.raises(ValueError, match="so101"):
        policy.condition({**batch, "robot_type": ["so101", "panda"]})
    with pytest.raises(ValueError, match="robot_type"):
        policy.condition({k: v for k, v in batch.items() if k != "robot_type"})
    loss, metrics = policy.train()(batch)
    assert loss.isfinite() and {"mse", "phase_ce", "phase_accuracy", "token_ce", "token_accuracy"} <= set(metrics)
    with pytest.raises(ValueError, match="distinct"):
        type(policy.config)(embodiments=("panda", "panda")).validate()


def test_cross_embodiment_training_with_annotations_and_tokens_acts_on_either_robot(tmp_path, tool_demos):
    from test_eval import ID_ONLY
    from test_train import TINY_DIFFUSION, config

    from toyland.eval.harness import evaluate_suite
    from toyland.policies.features import FeatureMismatch
    from toyland.train.trainer import train

    cfg = config(tmp_path / "run", tool_demos["panda"], "policy.embodiments=[panda,floating_gripper]",
                 "policy.phase_aux=0.5", "policy.action_token_aux=0.5", "policy.action_token_bins=8", "env.state=tool",
                 policy=TINY_DIFFUSION)
    cfg["data"]["sources"] = [{"name": "panda", "path": str(tool_demos["panda"]), "weight": 1.0},
                              {"name": "floating", "path": str(tool_demos["floating_gripper"]), "weight": 1.0}]
    train(cfg)
    checkpoint = tmp_path / "run"
    for robot in ("panda", "floating_gripper"):
        env = {"task": "lift", "image_size": 48, "cameras": ["front"], "embodiment": robot, "state": "tool",
               "max_episode_steps": 8}
        results = evaluate_suite(str(checkpoint), env, ID_ONLY, tmp_path / f"eval_{robot}", episodes=1,
                                 workers=1, videos=False, progress=False)
        assert results["cells"]["id"]["episodes"] == 1
    with pytest.raises(FeatureMismatch, match="so101"):
        evaluate_suite(str(checkpoint), {"task": "lift", "image_size": 48, "cameras": ["front"], "embodiment": "so101",
                                         "state": "tool"}, ID_ONLY, tmp_path / "eval_so101", episodes=1,
                       workers=1, videos=False, progress=False)
