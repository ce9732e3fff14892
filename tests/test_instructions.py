"""Instructions that show the target as a picture (Interleave-VLA, issue 27): the env's modes, the
picture itself, datasets that store it, and the VLA that reads it."""

import numpy as np
import pytest

from toyland.sim import make_env
from toyland.sim.instructions import IMAGE_TOKEN, INSTRUCTION_PICTURE, MODES, phrase, split
from toyland.sim.tasks import TASKS

TINY_VLA = ["policy=vla", "policy.dim=32", "policy.heads=2", "policy.vision_layers=1", "policy.policy_layers=1",
            "policy.head_layers=1", "policy.patch_size=6", "policy.bins=16", "policy.horizon=8",
            "policy.n_action_steps=4", "policy.flow_steps=3", "policy.det_pool=false", "policy.det_pool_geometry=false"]
ENV = {"task": "language_lift", "image_size": 48, "cameras": ["front"], "max_episode_steps": 8,
       "instruction_picture_size": 24}


def test_each_mode_phrases_the_target_its_way():
    assert phrase("pick up the {object}", "blue ring", "text") == "pick up the blue ring"
    assert phrase("pick up the {object}", "blue ring", "interleaved") == f"pick up the {IMAGE_TOKEN}"
    assert phrase("pick up the {object}", "blue ring", "image") == IMAGE_TOKEN
    assert split("pick up the blue ring") is None
    assert split(f"put the {IMAGE_TOKEN} in the bowl") == ("put the", "in the bowl")
    assert split(IMAGE_TOKEN) == ("", "")
    with pytest.raises(ValueError, match="more than one"):
        split(f"{IMAGE_TOKEN} and {IMAGE_TOKEN}")
    with pytest.raises(ValueError, match="valid: text, interleaved, image"):
        make_env(cameras=[], instruction="picture")


@pytest.mark.parametrize("task", TASKS.names())
def test_every_task_shows_its_target_in_every_mode(task):
    """The scene, the state and the outcome are the mode's business not at all; the picture is the same
    every step of an episode and the same on a rerun."""
    seen = {}
    for mode in MODES:
        env = make_env({**ENV, "task": task, "instruction": mode})
        try:
            obs, info = env.reset(seed=5)
            after, *_ = env.step(np.zeros(env.action_space.shape, np.float32))
            seen[mode] = (obs, after, info)
            if mode == "text":
                assert INSTRUCTION_PICTURE not in obs and INSTRUCTION_PICTURE not in env.observation_space.spaces
                continue
            picture = obs[INSTRUCTION_PICTURE]
            assert picture.shape == (24, 24, 3) and picture.dtype == np.uint8
            assert env.observation_space[INSTRUCTION_PICTURE].contains(picture)
            np.testing.assert_array_equal(after[INSTRUCTION_PICTURE], picture)
            assert picture.std() > 5  # a toy on the grey background, not an empty frame
            assert IMAGE_TOKEN in obs["task"] and info["instruction"] == obs["task"]
            again, _ = env.reset(seed=5)
            np.testing.assert_array_equal(again[INSTRUCTION_PICTURE], picture)
        finally:
            env.close()
    for mode in ("interleaved", "image"):
        for i in range(2):
            for key in ("observation.images.front", "observation.state"):
                np.testing.assert_array_equal(seen[mode][i][key], seen["text"][i][key])
    np.testing.assert_array_equal(seen["interleaved"][0][INSTRUCTION_PICTURE], seen["image"][0][INSTRUCTION_PICTURE])


def test_the_picture_shows_the_episodes_colours():
    """A hue shift of target_appearance reaches the picture, as the scene's colours do; the camera and
    lighting factors do not (it is a picture of the object, not of the scene)."""
    def picture(factors):
        env = make_env({**ENV, "instruction": "image", "factors": factors})
        try:
            return env.reset(seed=2)[0][INSTRUCTION_PICTURE].astype(int)
        finally:
            env.close()

    nominal = picture({})
    np.testing.assert_array_equal(picture({"camera_viewpoint": "ood_3", "lighting": "ood_3"}), nominal)
    shifted = picture({"target_appearance": {"hue": 0.4, "size": 0.0}})
    assert np.abs(shifted - nominal).max() > 60


@pytest.fixture(scope="module")
def picture_demos(tmp_path_factory):
    from toyland.data.collect import collect

    root = tmp_path_factory.mktemp("pictures") / "interleaved"
    collect({**ENV, "max_episode_steps": 200, "instruction": "interleaved"}, root, episodes=2, seed=0, workers=1,
            progress=False)
    return root


def test_a_dataset_stores_the_picture_per_frame(picture_demos):
    import json

    from toyland.data.frames import FrameStore

    info = json.loads((picture_demos / "meta" / "info.json").read_text())
    assert info["features"][INSTRUCTION_PICTURE]["shape"] == [24, 24, 3]
    store = FrameStore.load(picture_demos)
    pictures = store.arrays[INSTRUCTION_PICTURE]
    first = store.episode_index == 0
    assert (pictures[first] == pictures[first][0]).all()  # one picture per episode
    assert all(IMAGE_TOKEN in t for t in store.tasks)


@pytest.fixture(scope="module")
def picture_vla(tmp_path_factory, picture_demos):
    from test_train import config

    from toyland.train.trainer import train

    run = tmp_path_factory.mktemp("picture_vla") / "run"
    train(config(run, picture_demos, "env.task=language_lift", "env.instruction=interleaved",
                 "env.instruction_picture_size=24", policy=TINY_VLA))
    return run


def test_the_vla_reads_the_picture_and_acts_only_in_the_datas_mode(tmp_path, picture_demos, picture_vla):
    from test_eval import ID_ONLY
    from test_train import TINY_DIFFUSION, config

    from toyland.eval.actors import resolve_checkpoint
    from toyland.eval.harness import evaluate_suite
    from toyland.policies.checkpoint import load_policy
    from toyland.policies.features import FeatureMismatch
    from toyland.train.trainer import train

    policy = load_policy(resolve_checkpoint(picture_vla)[0])
    assert policy.picture is not None and policy.features.instruction_picture == (3, 24, 24)
    results = evaluate_suite(str(picture_vla), {**ENV, "instruction": "interleaved"}, ID_ONLY, tmp_path / "eval",
                             episodes=1, workers=1, videos=False, progress=False)
    assert results["cells"]["id"]["episodes"] == 1
    with pytest.raises(FeatureMismatch, match="env.instruction to the data's mode"):
        evaluate_suite(str(picture_vla), ENV, ID_ONLY, tmp_path / "eval_text", episodes=1, workers=1,
                       videos=False, progress=False)
    with pytest.raises(FeatureMismatch, match="reads words only"):
        train(config(tmp_path / "diffusion", picture_demos, "policy.use_language=true", policy=TINY_DIFFUSION))


def test_text_policies_keep_their_record_and_modes_do_not_mix(tmp_path, picture_demos, picture_vla):
    """A words-only policy's features are recorded as before pictures existed (older checkpoints
    compare equal when fine-tuned or merged); data of two instruction modes is refused; a policy that
    reads pictures is not exported to lerobot, which would drop them."""
    from test_train import config

    from toyland.data.collect import collect
    from toyland.plugins.export import export_checkpoint
    from toyland.policies.features import FeatureMismatch, PolicyFeatures
    from toyland.train.trainer import train

    words = PolicyFeatures(cameras={"observation.images.front": (3, 48, 48)}, state_dim=15, action_dim=7, fps=20)
    assert "instruction_picture" not in words.to_dict()
    assert PolicyFeatures.from_dict(words.to_dict()) == words
    text = tmp_path / "words"
    collect({**ENV, "max_episode_steps": 200}, text, episodes=1, seed=0, workers=1, progress=False)
    cfg = config(tmp_path / "mixed", picture_demos, "env.task=language_lift", policy=TINY_VLA)
    cfg["data"]["sources"] = [{"name": "pictures", "path": str(picture_demos), "weight": 1.0},
                              {"name": "words", "path": str(text), "weight": 1.0}]
    with pytest.raises(FeatureMismatch, match="name their target in different ways"):
        train(cfg)
    with pytest.raises(ValueError, match="toyland eval"):
        export_checkpoint(picture_vla, tmp_path / "exported")


def test_the_picture_changes_what_the_vla_sees(picture_vla):
    """Its tokens stand in the instruction: another picture, with the same words and scene, changes the
    observation tokens (with the picture ignored it would not)."""
    import torch

    from toyland.eval.actors import resolve_checkpoint
    from toyland.policies.checkpoint import load_policy

    policy = load_policy(resolve_checkpoint(picture_vla)[0]).eval()
    torch.manual_seed(0)
    batch = {"observation.images.front": torch.rand(2, 1, 3, 48, 48), "observation.state": torch.rand(2, 1, 15),
             INSTRUCTION_PICTURE: torch.rand(1, 1, 3, 24, 24).expand(2, 1, 3, 24, 24).clone(),
             "task": [f"pick up the {IMAGE_TOKEN}"] * 2}
    batch["observation.images.front"][1] = batch["observation.images.front"][0]
    batch["observation.state"][1] = batch["observation.state"][0]
    memory, pad = policy.encode(batch)
    # the same rows agree to float32 rounding (CPU kernels may split a batch's rows differently:
    # up to 1e-6 seen, with one thread too); another picture moves them by far more
    assert (memory[0] - memory[1]).abs().max() < 1e-5
    batch[INSTRUCTION_PICTURE][1] = torch.rand(1, 3, 24, 24)
    memory, pad = policy.encode(batch)
    assert not torch.allclose(memory[0], memory[1], atol=1e-4)
    # two words, the picture's patches, then "in the bowl"'s tokens: the sequence holds all three
    batch["task"] = [f"pick up the {IMAGE_TOKEN} in the bowl", "pick up the red ring"]
    memory, pad = policy.encode(batch)
    assert (~pad[0]).sum() > (~pad[1]).sum()


def test_a_rerendered_dataset_shows_the_new_colours_in_its_pictures(picture_demos, tmp_path):
    """`toyland augment` renders the picture again: the same at the episodes' own factors and under a
    new camera, another under a new target hue."""
    from toyland.data.frames import FrameStore
    from toyland.data.rerender import augment

    before = FrameStore.load(picture_demos).arrays[INSTRUCTION_PICTURE].astype(int)
    augment(picture_demos, tmp_path / "camera", {"camera_viewpoint": "ood_2"}, workers=1, progress=False)
    np.testing.assert_array_equal(FrameStore.load(tmp_path / "camera").arrays[INSTRUCTION_PICTURE], before)
    hue = {"target_appearance": {"hue": 0.4, "size": 0.0}}
    augment(picture_demos, tmp_path / "hue", hue, workers=1, progress=False)
    after = FrameStore.load(tmp_path / "hue").arrays[INSTRUCTION_PICTURE].astype(int)
    assert np.abs(after - before).max(axis=(1, 2, 3)).min() > 60  # every frame's picture
