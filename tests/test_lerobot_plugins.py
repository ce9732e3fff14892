"""toyland inside lerobot's own CLIs: the env type, the policy types and the simulated robot
(toyland/plugins, registered by the distributions under plugins/)."""

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

PLUGINS = ("lerobot_env_toyland", "lerobot_policy_toyland", "lerobot_robot_toyland")
SEED = 1_000_000


def lerobot_cli(name: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """One of lerobot's console scripts from this environment, offline, its output returned."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    exe = Path(sys.executable).parent / name
    done = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{name} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
    return done


def test_the_plugin_distributions_register_toyland_with_lerobot():
    installed = {d.metadata["Name"] for d in importlib.metadata.distributions()}
    missing = [p for p in PLUGINS if p not in installed]
    assert not missing, f"plugins {missing} are not installed: run scripts/setup.sh"
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.envs.configs import EnvConfig
    from lerobot.robots.config import RobotConfig
    from lerobot.utils.import_utils import register_third_party_plugins

    register_third_party_plugins()
    assert "toyland" in EnvConfig.get_known_choices()
    assert {"toyland_diffusion", "toyland_vla"} <= set(PreTrainedConfig.get_known_choices())
    assert "toyland" in RobotConfig.get_known_choices()


def test_env_task_names():
    from toyland.plugins.env import toyland_task

    assert toyland_task("Lift-v0") == "lift"
    assert toyland_task("toyland/PickPlace-v0") == "pick_place"
    assert toyland_task("language_lift") == "language_lift"
    with pytest.raises(ValueError, match="Push-v0"):
        toyland_task("Stack-v0")


def test_the_env_type_gives_toylands_scenes_under_lerobots_names():
    from lerobot.envs.utils import preprocess_observation

    from toyland.plugins.env import ToylandEnvConfig
    from toyland.sim import make_env

    cfg = ToylandEnvConfig(task="Lift-v0", cameras=["front:rgb+depth", "wrist"], image_size=32,
                           factors={"camera_viewpoint": "ood_1"})
    assert cfg.features_map["pixels/front"] == "observation.images.front"
    assert cfg.features["agent_pos"].shape == (15,) and cfg.features["action"].shape == (7,)
    vec = cfg.create_envs(2)["toyland"][0]
    try:
        obs, _ = vec.reset(seed=[7, 8])
        batch = preprocess_observation(obs)
        assert batch["observation.images.front"].shape == (2, 3, 32, 32)
        assert batch["observation.depth.front"].shape == (2, 32, 32, 1)
        assert list(vec.call("task_description")) == [vec.call("task")[0], vec.call("task")[1]]
        for row, seed in enumerate([7, 8]):
            env = make_env(cfg.toyland_env)
            own, _ = env.reset(seed=seed)
            env.close()
            assert np.array_equal(obs["pixels"]["front"][row], own["observation.images.front"])
            assert np.array_equal(obs["agent_pos"][row], own["observation.state"])
            assert vec.call("task_description")[row] == own["task"]
    finally:
        vec.close()


class _Replay:
    """A lerobot policy replaying fixed action sequences, one per env of the batch."""

    @staticmethod
    def make(actions: list[np.ndarray]):
        from lerobot.policies.pretrained import PreTrainedPolicy

        from toyland.plugins.configuration_toyland import ToylandDiffusionConfig

        class Replay(PreTrainedPolicy):
            config_class, name = ToylandDiffusionConfig, "replay"

            def __init__(self):
                super().__init__(ToylandDiffusionConfig(device="cpu"))
                self.actions, self.t = actions, 0

            def reset(self):
                self.t = 0

            def select_action(self, batch, **_):
                rows = [a[min(self.t, len(a) - 1)] for a in self.actions]
                self.t += 1
                return torch.as_tensor(np.stack(rows)).float()

            def get_optim_params(self):
                return []

            def forward(self, batch):  # (lerobot's abstract API; a replay has nothing to learn)
                raise TypeError("a replay of recorded actions cannot be trained")

            def predict_action_chunk(self, batch, **_):
                rest = [a[min(self.t, len(a) - 1):] for a in self.actions]
                width = min(len(r) for r in rest)
                return torch.as_tensor(np.stack([r[:width] for r in rest])).float()

        return Replay()


@pytest.mark.parametrize("use_async_envs", [False, True])
def test_lerobots_evaluation_scores_the_episodes_toyland_scores(use_async_envs):
    """The expert's episodes of seeds S, S+1 replayed through lerobot's own eval_policy on the env type
    succeed exactly where toyland's runner says they do (and fail where a cut-short replay fails), in
    one process and on toyland's worker vector env (lerobot's async envs)."""
    from lerobot.processor import PolicyProcessorPipeline
    from lerobot.processor.factory import make_policy_processor_pipelines
    from lerobot.scripts.lerobot_eval import eval_policy

    from toyland.eval.actors import ExpertActor
    from toyland.plugins.env import ToylandEnvConfig
    from toyland.sim import make_env

    cfg = ToylandEnvConfig(task="Lift-v0", image_size=32)
    runs = []
    for seed in (SEED, SEED + 1):
        env, actor = make_env(cfg.toyland_env), ExpertActor()
        obs, _ = env.reset(seed=seed)
        actor.reset(env, seed)
        actions, success = [], False
        while not success and len(actions) < 100:
            actions.append(np.asarray(actor.act(obs), dtype=np.float32))
            obs, _, success, _, _ = env.step(actions[-1])
        env.close()
        runs.append((actions, success))
    assert all(success for _, success in runs), "the expert should lift in both scenes"
    # the second replay stops short of the lift (it holds its 10th action): a failure toyland also scores
    replays = [runs[0][0], runs[1][0][:10]]
    vec = cfg.create_envs(2, use_async_envs=use_async_envs)["toyland"][0]
    assert type(vec).__name__ == ("WorkerVectorEnv" if use_async_envs else "SyncVectorEnv")
    identity = PolicyProcessorPipeline(steps=[])
    pre, post = make_policy_processor_pipelines([], [])
    try:
        info = eval_policy(vec, _Replay.make(replays), identity, identity, pre, post, n_episodes=2, start_seed=SEED)
    finally:
        vec.close()
    lerobot_success = [bool(e["success"]) for e in info["per_episode"]]
    assert [e["seed"] for e in info["per_episode"]] == [SEED, SEED + 1]
    assert lerobot_success == [True, False]


@pytest.fixture(scope="module")
def lerobot_trained(tmp_path_factory, lift_demos):
    """toyland's diffusion policy trained for 2 steps by lerobot-train on toyland's Lift demos."""
    out = tmp_path_factory.mktemp("lerobot_train") / "run"
    lerobot_cli("lerobot-train", "--policy.type=toyland_diffusion", "--policy.device=cpu", "--policy.push_to_hub=false",
                "--policy.channels=[8,16,16]", "--policy.down_dims=[16,32,64]", "--dataset.repo_id=local/lift",
                f"--dataset.root={lift_demos}", "--steps=2", "--batch_size=4", "--save_freq=2", "--log_freq=1",
                "--num_workers=0", "--wandb.enable=false", f"--output_dir={out}")
    return out / "checkpoints" / "000002" / "pretrained_model"


def test_lerobot_train_saves_a_toyland_policy_that_carries_its_statistics(lerobot_trained, lift_demos):
    from toyland.plugins.modeling_toyland import ToylandDiffusionPolicy
    from toyland.policies.features import ACTION

    config = json.loads((lerobot_trained / "config.json").read_text())
    assert config["type"] == "toyland_diffusion" and config["channels"] == [8, 16, 16] and config["fps"] == 20
    policy = ToylandDiffusionPolicy.from_pretrained(str(lerobot_trained))
    stats = json.loads((lift_demos / "meta" / "stats.json").read_text())
    lo, hi = np.asarray(stats[ACTION]["min"]), np.asarray(stats[ACTION]["max"])
    shift = policy.inner.normalizer.action_shift.numpy()
    np.testing.assert_allclose(shift, (hi + lo) / 2, rtol=1e-5, atol=1e-6)


def test_lerobot_eval_on_the_env_type_agrees_with_toyland_eval(lerobot_trained, tmp_path):
    from toyland.eval.actors import make_actor
    from toyland.eval.runner import run_episode
    from toyland.sim import make_env

    out = tmp_path / "eval"
    lerobot_cli("lerobot-eval", f"--policy.path={lerobot_trained}", "--env.type=toyland", "--env.task=Lift-v0",
                "--env.image_size=48", "--env.max_episode_steps=12", "--eval.n_episodes=2", "--eval.batch_size=2",
                f"--seed={SEED}", f"--output_dir={out}")
    info = json.loads((out / "eval_info.json").read_text())
    lerobot_success = info["per_task"][0]["metrics"]["successes"]
    actor = make_actor(str(lerobot_trained))
    env = make_env({"task": "lift", "image_size": 48, "max_episode_steps": 12})
    try:
        toyland_success = [run_episode(env, actor, seed)[0]["success"] for seed in (SEED, SEED + 1)]
    finally:
        env.close()
    assert lerobot_success == toyland_success


def test_lerobot_rollout_drives_the_simulated_robot(lerobot_trained, tmp_path):
    report = tmp_path / "robot.json"
    lerobot_cli("lerobot-rollout", "--strategy.type=base", f"--policy.path={lerobot_trained}", "--robot.type=toyland",
                "--robot.image_size=48", f"--robot.report_path={report}", "--fps=20", "--duration=6",
                "--task=pick up the toy", "--play_sounds=false")
    done = json.loads(report.read_text())
    assert done["steps"] >= 2 and done["episodes"] >= 1 and len(done["finished_episodes"]) == done["episodes"] - 1
    assert done["loop_seconds"]["n"] == done["steps"] - 1 and done["decide_seconds"]["n"] == done["steps"]


def test_a_policy_the_robot_cannot_feed_is_refused_before_the_arm_moves(lerobot_trained):
    """Another image size, a missing camera or another joint count stop at the first observation,
    named, with no step taken."""
    from lerobot.policies.utils import prepare_observation_for_inference
    from lerobot.utils.feature_utils import build_dataset_frame, hw_to_dataset_features

    from toyland.plugins.config_toyland_robot import ToylandRobotConfig
    from toyland.plugins.modeling_toyland import ToylandDiffusionPolicy
    from toyland.plugins.toyland_robot import ToylandRobot
    from toyland.policies.features import FeatureMismatch

    policy = ToylandDiffusionPolicy.from_pretrained(str(lerobot_trained))
    for cameras, size, embodiment, match in (
            (["front"], 32, "panda", r"'observation.images.front' is \(3, 32, 32\)"),
            (["wrist"], 48, "panda", "lacks \\['observation.images.front'\\]"),
            (["front"], 48, "floating_gripper", r"'observation.state' is \(14,\), the policy takes \(15,\)")):  # 6 joints, not 7
        robot = ToylandRobot(ToylandRobotConfig(sim_cameras=cameras, image_size=size, embodiment=embodiment))
        robot.connect()
        try:
            features = hw_to_dataset_features(robot.observation_features, "observation")
            frame = build_dataset_frame(features, robot.get_observation(), prefix="observation")
            batch = prepare_observation_for_inference(frame, torch.device("cpu"), "pick up the toy", "toyland")
            with pytest.raises(FeatureMismatch, match=match):
                policy.select_action(batch)
            assert robot.report()["steps"] == 0
        finally:
            robot.disconnect()


def test_the_simulated_robot_clips_actions_outside_its_limits_and_counts_them():
    from toyland.plugins.config_toyland_robot import ToylandRobotConfig
    from toyland.plugins.toyland_robot import ToylandRobot

    robot = ToylandRobot(ToylandRobotConfig(image_size=32))
    assert set(robot.observation_features) >= {"joint1.pos", "gripper.opening.pos", "tcp.x.pos", "front"}
    robot.connect()
    try:
        keys = list(robot.action_features)
        sent = robot.send_action({k: 3.0 for k in keys})
        assert all(v == 1.0 for v in sent.values()) and robot.clipped_actions == 1
        robot.send_action({k: 0.5 for k in keys})
        assert robot.clipped_actions == 1
        with pytest.raises(KeyError, match="ee_pose control"):
            robot.send_action({keys[0]: 0.0})
    finally:
        robot.disconnect()


def exported(tmp_path, name: str, size: int = 32, robot_type: str | None = None, **extra):
    """A freshly initialized toyland policy (the VLA with DetPool's masks) saved as a checkpoint and
    exported: (lerobot folder, toyland checkpoint)."""
    from toyland.plugins.export import export_checkpoint
    from toyland.policies import make_policy
    from toyland.policies.checkpoint import save_policy
    from toyland.policies.features import PolicyFeatures

    features = PolicyFeatures(cameras={"observation.images.front": (3, size, size)}, state_dim=15, action_dim=7, fps=20,
                              masks={"observation.masks.front": (size, size)} if name == "vla" else {})
    rng = np.random.default_rng(0)
    stats = {"observation.state": {"min": -rng.random(15), "max": rng.random(15)},
             "action": {"min": -rng.random(7), "max": rng.random(7)}}
    options = {"diffusion": {"channels": [8, 16], "down_dims": [16, 32], "horizon": 8, "n_action_steps": 4},
               "vla": {"dim": 32, "heads": 2, "patch_size": 4, "use_language": False}}[name]
    torch.manual_seed(0)
    save_policy(make_policy({"name": name, **options, **extra}, features, stats), tmp_path / "ckpt")
    return (export_checkpoint(tmp_path / "ckpt", tmp_path / "lerobot", weights="model", robot_type=robot_type),
            tmp_path / "ckpt")


def test_every_toyland_policy_has_a_lerobot_policy_type():
    from lerobot.policies.factory import get_policy_class

    from toyland.plugins.configuration_toyland import LEROBOT_TYPES
    from toyland.policies.registry import POLICIES

    own = [n for n in POLICIES.names() if not n.startswith("lerobot")]  # (the lerobot_* adapters wrap lerobot's own)
    assert sorted(LEROBOT_TYPES) == sorted(own)
    for lerobot_type in LEROBOT_TYPES.values():
        assert get_policy_class(lerobot_type).name == lerobot_type


def test_instructions_with_a_picture_are_refused_through_lerobot():
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.configs.types import FeatureType, PolicyFeature

    from toyland.plugins.configuration_toyland import LEROBOT_TYPES

    config = PreTrainedConfig.get_choice_class(LEROBOT_TYPES["vla"])(det_pool=False, det_pool_geometry=False)
    config.input_features = {
        "observation.images.front": PolicyFeature(FeatureType.VISUAL, (3, 48, 48)),
        "observation.state": PolicyFeature(FeatureType.STATE, (15,)),
        "observation.instruction_picture": PolicyFeature(FeatureType.STATE, (32, 32, 3)),
    }
    config.output_features = {"action": PolicyFeature(FeatureType.ACTION, (7,))}
    with pytest.raises(ValueError, match="toyland train"):
        config.validate_features()


@pytest.mark.parametrize("name", ["diffusion", "vla"])  # (every key of LEROBOT_TYPES, checked above)
def test_an_exported_checkpoint_acts_in_lerobot_as_it_does_in_toyland(name, tmp_path):
    """``toyland export``: lerobot's own loader and processors give the toyland policy's actions."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    from toyland.policies.checkpoint import load_policy

    dst, ckpt = exported(tmp_path, name)
    rng = np.random.default_rng(1)
    config = PreTrainedConfig.from_pretrained(str(dst))
    lerobot_policy = get_policy_class(config.type).from_pretrained(str(dst), config=config)
    pre, post = make_pre_post_processors(config, pretrained_path=str(dst))
    toyland_policy = load_policy(ckpt)
    obs = {"observation.images.front": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
           "observation.state": rng.random(15).astype(np.float32), "task": "pick up the toy"}
    if name == "vla":
        obs["observation.masks.front"] = (rng.random((32, 32)) > 0.7).astype(np.uint8)
    batch = {"task": obs["task"], "observation.state": torch.from_numpy(obs["observation.state"]),
             "observation.images.front": torch.from_numpy(obs["observation.images.front"]).permute(2, 0, 1).float() / 255}
    if name == "vla":
        batch["observation.masks.front"] = torch.from_numpy(obs["observation.masks.front"]).float()[None]  # (batched: lerobot adds the dim to images and state only)
    for step in range(5):  # across a chunk boundary: each keeps its own queue
        torch.manual_seed(step)
        ours = toyland_policy.select_action(obs)
        torch.manual_seed(step)
        theirs = post(lerobot_policy.select_action(pre(batch)))
        np.testing.assert_allclose(theirs.numpy()[0], ours, rtol=1e-5, atol=1e-6)


def test_a_policy_told_the_embodiment_acts_in_lerobot_as_the_exported_robot_type(tmp_path):
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import get_policy_class

    from toyland.policies.checkpoint import load_policy
    from toyland.policies.features import FeatureMismatch

    cross = {"embodiments": ["panda", "floating_gripper"], "embodiment_dim": 4}
    with pytest.raises(ValueError, match="so101"):
        exported(tmp_path / "so101", "diffusion", robot_type="so101", **cross)
    rng = np.random.default_rng(1)
    image, state = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), rng.random(15).astype(np.float32)
    batch = {"task": "", "observation.state": torch.from_numpy(state)[None],
             "observation.images.front": torch.from_numpy(image).permute(2, 0, 1).float()[None] / 255}
    for robot in ("floating_gripper", None):
        dst, ckpt = exported(tmp_path / str(robot), "diffusion", robot_type=robot, **cross)
        config = PreTrainedConfig.from_pretrained(str(dst))
        lerobot_policy = get_policy_class(config.type).from_pretrained(str(dst), config=config)
        if robot is None:
            with pytest.raises(FeatureMismatch, match="--policy.robot_type"):
                lerobot_policy.select_action(batch)
            continue
        ours = load_policy(ckpt)
        torch.manual_seed(0)
        expected = ours.select_action({"observation.images.front": image, "observation.state": state, "task": "",
                                       "robot_type": robot})
        torch.manual_seed(0)
        np.testing.assert_allclose(lerobot_policy.select_action(batch).numpy()[0], expected, rtol=1e-5, atol=1e-6)


def test_the_so101_twin_has_the_features_of_lerobots_so101_follower():
    """In lerobot's joint units the simulated SO-101 reads and takes exactly what the real arm's driver
    does: a policy trained on its data needs no mapping on the real arm (cameras named alike)."""
    from lerobot.cameras.opencv import OpenCVCameraConfig
    from lerobot.robots.so_follower import SO101Follower, SO101FollowerConfig

    from toyland.plugins.config_toyland_robot import ToylandRobotConfig
    from toyland.plugins.toyland_robot import ToylandRobot

    real = SO101Follower(SO101FollowerConfig(  # (not connected: no port is opened)
        port="/dev/null", cameras={"wrist": OpenCVCameraConfig(index_or_path=0, width=64, height=64, fps=30)}))
    twin = ToylandRobot(ToylandRobotConfig(embodiment="so101", control_mode="lerobot_joint", image_size=64,
                                           sim_cameras=["wrist"]))
    assert twin.observation_features == real.observation_features
    assert twin.action_features == real.action_features
    twin.connect()
    try:
        obs = twin.get_observation()
        assert obs["gripper.pos"] > 95 and obs["wrist"].shape == (64, 64, 3)
        sent = twin.send_action({**{k: obs[k] for k in twin.action_features}, "gripper.pos": 130.0})
        assert sent["gripper.pos"] == 100.0 and twin.clipped_actions == 1
    finally:
        twin.disconnect()


def test_lerobot_train_evaluates_lerobots_own_act_on_the_env_type(lift_demos, tmp_path):
    """Any lerobot policy on toyland's env type: lerobot's ACT, evaluated in toyland's Lift while
    lerobot-train trains it, with lerobot's evaluation videos (its actions clipped into the space)."""
    out = tmp_path / "act"
    done = lerobot_cli("lerobot-train", "--policy.type=act", "--policy.device=cpu", "--policy.push_to_hub=false",
                       "--policy.dim_model=64", "--policy.dim_feedforward=128", "--policy.n_encoder_layers=1",
                       "--policy.pretrained_backbone_weights=null", "--policy.chunk_size=10", "--policy.n_action_steps=10",
                       "--dataset.repo_id=local/lift", f"--dataset.root={lift_demos}", "--steps=2", "--batch_size=4",
                       "--save_freq=2", "--log_freq=1", "--num_workers=0", "--wandb.enable=false", "--env.type=toyland",
                       "--env.image_size=48", "--env.max_episode_steps=10", "--env_eval_freq=2", "--eval.n_episodes=2",
                       "--eval.batch_size=2", f"--output_dir={out}")
    assert "pc_success" in done.stdout + done.stderr
    videos = sorted((out / "eval").rglob("*.mp4"))
    assert len(videos) == 2 and all(v.stat().st_size > 1000 for v in videos)


@pytest.mark.parametrize("masks", ["target", "objects"])
def test_a_detectors_mask_reaches_detpool_through_lerobots_rename_map(tmp_path, masks):
    """The simulated robot's mask camera (what a detector gives a real robot) renamed to the policy's
    mask input: the VLA acts on it exactly as in toyland on the same observation. Every object's ids
    (masks=objects) survive lerobot's image scaling."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors
    from lerobot.policies.utils import prepare_observation_for_inference
    from lerobot.utils.feature_utils import build_dataset_frame, hw_to_dataset_features

    from toyland.plugins.config_toyland_robot import ToylandRobotConfig
    from toyland.plugins.toyland_robot import ToylandRobot
    from toyland.policies.checkpoint import load_policy

    dst, ckpt = exported(tmp_path, "vla", det_pool_masks=masks)
    config = PreTrainedConfig.from_pretrained(str(dst))
    policy = get_policy_class(config.type).from_pretrained(str(dst), config=config)
    rename = {"observation.images.front_mask": "observation.masks.front"}
    pre, post = make_pre_post_processors(config, pretrained_path=str(dst),
                                         preprocessor_overrides={"rename_observations_processor": {"rename_map": rename}})
    robot = ToylandRobot(ToylandRobotConfig(task="language_lift", sim_cameras=["front:rgb+mask"], image_size=32,
                                            masks=masks))
    assert robot.observation_features["front_mask"] == (32, 32, 1)
    robot.connect()
    try:
        raw = robot.get_observation()
        values = {0, 255} if masks == "target" else {0, 1, 2, 3}
        assert set(np.unique(raw["front_mask"])) <= values and raw["front_mask"].any()
        if masks == "objects":
            assert raw["front_mask"].max() > 1
        frame = build_dataset_frame(hw_to_dataset_features(robot.observation_features, "observation"), raw, "observation")
        batch = prepare_observation_for_inference(frame, torch.device("cpu"), "pick up the toy", "toyland")
        toyland_policy = load_policy(ckpt)
        torch.manual_seed(0)
        theirs = post(policy.select_action(pre(batch))).numpy()[0]
        torch.manual_seed(0)
        ours = toyland_policy.select_action(robot._obs)
        np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-6)
    finally:
        robot.disconnect()


def test_lerobot_train_trains_the_vla_type_on_masks_and_instructions(language_lift_demos, tmp_path):
    from toyland.plugins.modeling_toyland import ToylandVlaPolicy

    out = tmp_path / "vla"
    lerobot_cli("lerobot-train", "--policy.type=toyland_vla", "--policy.device=cpu", "--policy.push_to_hub=false",
                "--policy.dim=32", "--policy.heads=2", "--policy.patch_size=6", "--policy.head=discrete_diffusion",
                "--policy.bins=16", "--dataset.repo_id=local/language_lift", f"--dataset.root={language_lift_demos}",
                "--steps=2", "--batch_size=4", "--save_freq=2", "--log_freq=1", "--num_workers=0", "--wandb.enable=false",
                f"--output_dir={out}")
    policy = ToylandVlaPolicy.from_pretrained(str(out / "checkpoints" / "000002" / "pretrained_model"))
    assert "observation.masks.front" in policy.inner.features.masks and policy.inner.config.use_language
    bins = policy.inner.head.bins  # fitted on the dataset's actions when lerobot built the policy, saved with it
    assert bool(bins.fitted) and not torch.equal(bins.edges, torch.linspace(-1, 1, 17).repeat(7, 1))
