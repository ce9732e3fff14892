"""Contract tests over every registered policy (lerobot adapters included), and checkpoints."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import toyland
from toyland.policies import POLICIES, make_policy, policy_config
from toyland.policies.checkpoint import IncompatibleCheckpoint, load_policy, save_policy
from toyland.policies.features import ACTION, STATE, FeatureMismatch, PolicyFeatures
from toyland.sim.annotations import PHASE_ANNOTATION, PHASES, TARGET_ANNOTATION

NAMES = dict(state_names=(*(f"joint{i}.pos" for i in range(1, 8)), "gripper.opening", "tcp.x", "tcp.y", "tcp.z",
                          "tcp.qw", "tcp.qx", "tcp.qy", "tcp.qz"),
             action_names=("x", "y", "z", "rx", "ry", "rz", "gripper"))  # a Lift dataset's, ee_pose actions
FEATURES = PolicyFeatures(cameras={"observation.images.front": (3, 48, 48)}, state_dim=15, action_dim=7, fps=20, **NAMES)
MASKED = PolicyFeatures(cameras={"observation.images.front": (3, 48, 48)}, state_dim=15, action_dim=7, fps=20,
                        masks={"observation.masks.front": (48, 48)}, **NAMES)
WITH_DEPTH = PolicyFeatures(cameras={"observation.images.front": (3, 48, 48)}, state_dim=15, action_dim=7, fps=20,
                            depths={"observation.depth.front": (48, 48)}, **NAMES)
MASKED_DEPTH = PolicyFeatures(cameras={"observation.images.front": (3, 48, 48)}, state_dim=15, action_dim=7, fps=20,
                              masks={"observation.masks.front": (48, 48)}, depths={"observation.depth.front": (48, 48)},
                              **NAMES)
TINY_VLA = {"name": "vla", "dim": 32, "heads": 2, "vision_layers": 1, "policy_layers": 1, "head_layers": 1,
            "patch_size": 6, "crop": 0.875, "bins": 16, "horizon": 8, "n_action_steps": 4, "flow_steps": 3,
            "inference_steps": 3}
# the smallest configs of each policy (and each VLA action head), so that the contract runs in seconds
TINY = {
    "diffusion": {"channels": [8, 16], "down_dims": [16, 32], "keypoints": 8, "image_feature_dim": 16,
                  "horizon": 8, "n_action_steps": 4, "inference_steps": 3},
    "diffusion-target_mask": {"name": "diffusion", "channels": [8, 16], "down_dims": [16, 32], "keypoints": 8,
                              "image_feature_dim": 16, "horizon": 8, "n_action_steps": 4, "inference_steps": 3,
                              "target_mask": True},
    "diffusion-depth": {"name": "diffusion", "channels": [8, 16], "down_dims": [16, 32], "keypoints": 8,
                        "image_feature_dim": 16, "horizon": 8, "n_action_steps": 4, "inference_steps": 3, "depth": True,
                        "crop_coords": True},
    "diffusion-keypoints": {"name": "diffusion", "channels": [8, 16], "down_dims": [16, 32], "keypoints": 8,
                                   "image_feature_dim": 16, "horizon": 8, "n_action_steps": 4, "inference_steps": 3,
                                   "pool": "spatial_softmax",
                                   "prediction": "epsilon", "mask_padding": True},
    # co-training: told the embodiment, with the phase and action-token auxiliary losses
    "diffusion-cotraining": {"name": "diffusion", "channels": [8, 16], "down_dims": [16, 32], "keypoints": 8,
                             "image_feature_dim": 16, "horizon": 8, "n_action_steps": 4, "inference_steps": 3,
                             "embodiments": ["panda", "floating_gripper"], "embodiment_dim": 4, "phase_aux": 0.5,
                             "action_token_aux": 0.5, "action_token_bins": 8},
    "vla-flow": {**TINY_VLA, "head": "flow"},  # the default recipe: conv stem, 4 slots, geometry, pixel coordinates
    "vla-discrete_diffusion": {**TINY_VLA, "head": "discrete_diffusion"},
    "vla-flow-linear-one-slot": {**TINY_VLA, "head": "flow", "stem": "linear", "det_pool_slots": 1,
                                 "det_pool_geometry": False, "crop_coords": False},
    "vla-flow-depth": {**TINY_VLA, "head": "flow", "depth": True},
    # every object's mask (a class-agnostic detector's): the instruction picks the target among them
    "vla-flow-objects": {**TINY_VLA, "head": "flow", "det_pool_masks": "objects"},
    "vla-flow-objects-grounded": {**TINY_VLA, "head": "flow", "det_pool_masks": "objects", "grounding_aux": 0.5},
    # the instruction matched to the objects before the policy layers, the named one marked
    "vla-flow-objects-marked": {**TINY_VLA, "head": "flow", "det_pool_masks": "objects", "grounding_aux": 0.5,
                                "grounding_marker": True},
    # the matcher chooses one object and the policy reads it alone, as the target-mask recipe reads the target
    "vla-flow-objects-select": {**TINY_VLA, "head": "flow", "det_pool_masks": "objects", "grounding_aux": 0.5,
                                "grounding_select": True},
    # ... with encoders of the matcher's own, apart from the policy's
    "vla-flow-objects-select-own": {**TINY_VLA, "head": "flow", "det_pool_masks": "objects", "grounding_aux": 0.5,
                                    "grounding_select": True, "grounding_vision": "own"},
    "vla-autoregressive-patches": {**TINY_VLA, "head": "autoregressive", "det_pool": False, "det_pool_geometry": False,
                                   "use_language": False},
    "lerobot_diffusion": {"horizon": 8, "n_action_steps": 4,
                          "overrides": {"down_dims": [16, 32], "num_inference_steps": 3, "diffusion_step_embed_dim": 16}},
    "lerobot_act": {"horizon": 8, "n_action_steps": 4,
                    "overrides": {"dim_model": 32, "dim_feedforward": 64, "n_heads": 2, "n_encoder_layers": 1, "latent_dim": 8}},
    "lerobot": {"lerobot_type": "act", "horizon": 8, "n_action_steps": 4,
                "overrides": {"dim_model": 32, "dim_feedforward": 64, "n_heads": 2, "n_encoder_layers": 1, "latent_dim": 8}},
}


def tiny_config(case: str) -> dict:
    return {"name": case, **TINY[case]}


def test_every_registered_policy_and_vla_head_has_a_tiny_config():
    from toyland.policies.vla.heads import HEADS

    assert set(POLICIES.names()) == {tiny_config(c)["name"] for c in TINY}
    assert set(HEADS.names()) == {c["head"] for c in TINY.values() if c.get("name") == "vla"}


def tiny_policy(case: str):
    torch.manual_seed(0)
    cls, config = policy_config(tiny_config(case))
    features = {(True, True): MASKED_DEPTH, (True, False): MASKED, (False, True): WITH_DEPTH,
                (False, False): FEATURES}[(config.needs_masks, config.needs_depth)]
    policy = cls(config, features, fake_stats(features))
    policy.fit(FakeSampler(policy))
    return policy


class FakeSampler:
    """What ``Policy.fit`` reads from the trainer's BatchSampler."""

    def __init__(self, policy):
        self.policy = policy

    def values(self, key):
        return np.random.default_rng(0).uniform(-1, 1, (500, FEATURES.action_dim))

    def sample(self, step: int) -> dict:
        return fake_batch(self.policy, batch_size=8, seed=step % 2**31)


def fake_stats(features: PolicyFeatures) -> dict:
    stats = {STATE: {"min": -np.ones(features.state_dim), "max": np.ones(features.state_dim),
                     "mean": np.zeros(features.state_dim), "std": np.ones(features.state_dim)},
             ACTION: {"min": -np.ones(features.action_dim), "max": np.ones(features.action_dim),
                      "mean": np.zeros(features.action_dim), "std": np.ones(features.action_dim)},
             PHASE_ANNOTATION: {"min": np.zeros(len(PHASES)), "max": np.ones(len(PHASES)),
                                "mean": np.full(len(PHASES), 1 / len(PHASES)), "std": np.full(len(PHASES), 0.3)},
             TARGET_ANNOTATION: {"min": np.ones(1), "max": np.full(1, 3.0), "mean": np.full(1, 2.0), "std": np.ones(1)}}
    for key, (c, _, _) in features.cameras.items():
        stats[key] = {"mean": np.full((c, 1, 1), 0.5), "std": np.full((c, 1, 1), 0.25),
                      "min": np.zeros((c, 1, 1)), "max": np.ones((c, 1, 1))}
    return stats


def fake_batch(policy, batch_size: int = 4, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    deltas = policy.delta_timestamps()
    batch = {}
    for key, times in deltas.items():
        if key in policy.features.cameras:
            c, h, w = policy.features.cameras[key]
            batch[key] = torch.rand(batch_size, len(times), c, h, w, generator=g)
        elif key in policy.features.masks:
            batch[key] = (torch.rand(batch_size, len(times), *policy.features.masks[key], generator=g) > 0.7).to(torch.uint8)
        elif key in policy.features.depths:
            batch[key] = 0.1 + 1.9 * torch.rand(batch_size, len(times), *policy.features.depths[key], generator=g)
        elif key == STATE:
            batch[key] = torch.rand(batch_size, len(times), policy.features.state_dim, generator=g) * 2 - 1
        elif key == TARGET_ANNOTATION:
            batch[key] = torch.randint(1, 4, (batch_size, len(times), 1), generator=g).float()
        elif key == PHASE_ANNOTATION:
            which = torch.randint(len(PHASES), (batch_size, len(times)), generator=g)
            batch[key] = torch.nn.functional.one_hot(which, len(PHASES)).float()
        else:
            batch[key] = torch.rand(batch_size, len(times), policy.features.action_dim, generator=g) * 2 - 1
        batch[f"{key}_is_pad"] = torch.zeros(batch_size, len(times), dtype=torch.bool)
    batch["task"] = ["pick up the red ball"] * batch_size
    batch["robot_type"] = ["panda"] * batch_size
    return batch


def fake_obs(seed: int, batch: int | None = None) -> dict:
    rng = np.random.default_rng(seed)
    lead = () if batch is None else (batch,)
    return {"observation.images.front": rng.integers(0, 255, (*lead, 48, 48, 3), dtype=np.uint8),
            "observation.masks.front": (rng.uniform(size=(*lead, 48, 48)) > 0.7).astype(np.uint8),
            "observation.depth.front": rng.uniform(0.1, 2.0, (*lead, 48, 48, 1)).astype(np.float32),
            "observation.state": rng.uniform(-1, 1, (*lead, 15)).astype(np.float32),
            "task": "pick up the red ball" if batch is None else ["pick up the red ball"] * batch,
            "robot_type": "panda" if batch is None else ["panda"] * batch}


@pytest.fixture(params=sorted(TINY))
def policy(request):
    torch.manual_seed(0)
    return tiny_policy(request.param)


POLICY_YAMLS = sorted((Path(toyland.__file__).parent / "configs" / "policy").glob("*.yaml"))


@pytest.mark.parametrize("path", POLICY_YAMLS, ids=lambda p: p.stem)
def test_every_policy_option_is_in_its_config_file(path):
    """`policy.X=...` on the command line works only for keys the YAML names (Hydra's struct mode), so
    each config field is there; a key the policy class fixes itself (a lerobot type) is exempt. A
    policy's own file (named as the policy) holds the dataclass's defaults, so a run configured either
    way is the same run; sized variants (`vla_large`) may differ."""
    cfg = yaml.safe_load(path.read_text())
    cls = POLICIES.get(cfg["name"])
    fields = [f for f in dataclasses.fields(cls.config_class) if not getattr(cls, f.name, None)]
    assert [f.name for f in fields if f.name not in cfg] == []
    _, config = policy_config(cfg)  # every value the YAML gives builds
    if path.stem == cfg["name"]:
        assert config == cls.config_class(), f"{path.name} differs from {cls.config_class.__name__}'s defaults"



def test_forward_and_backward_reach_every_trainable_weight(policy):
    policy.train()
    loss, metrics = policy(fake_batch(policy))
    assert loss.ndim == 0 and torch.isfinite(loss) and isinstance(metrics, dict)
    loss.backward()
    trainable = [(n, p) for n, p in policy.named_parameters() if p.requires_grad]
    without = [n for n, p in trainable if p.grad is None or not torch.any(p.grad != 0)]
    assert len(without) <= 0.1 * len(trainable), without  # (ACT's unused positional tables aside)


def test_select_action_shapes_and_queue(policy):
    policy.eval()
    calls = []
    predict = policy.predict_action_chunk
    policy.predict_action_chunk = lambda batch, *a, **k: calls.append(1) or predict(batch, *a, **k)
    policy.reset()
    n = policy.config.n_action_steps
    actions = [policy.select_action(fake_obs(i)) for i in range(n + 1)]
    assert all(a.shape == (7,) and np.all(np.isfinite(a)) for a in actions)
    assert len(calls) == 2  # one chunk per n_action_steps actions
    policy.reset()
    batched = policy.select_action(fake_obs(0, batch=3))
    assert batched.shape == (3, 7)


def test_save_and_load_give_identical_actions(policy, tmp_path):
    policy.eval()
    save_policy(policy, tmp_path / "ckpt")
    loaded = load_policy(tmp_path / "ckpt")
    for p in (policy, loaded):
        p.reset()
    for i in range(3):
        torch.manual_seed(i)
        a = policy.select_action(fake_obs(i))
        torch.manual_seed(i)
        b = loaded.select_action(fake_obs(i))
        np.testing.assert_array_equal(a, b)
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary folder was renamed into place


def test_same_seed_same_actions(policy):
    policy.eval()
    out = []
    for _ in range(2):
        policy.reset()
        torch.manual_seed(7)
        out.append(policy.select_action(fake_obs(1)))
    np.testing.assert_array_equal(out[0], out[1])


def test_a_checkpoint_of_another_config_is_refused(tmp_path):
    policy = make_policy(tiny_config("diffusion"), FEATURES, fake_stats(FEATURES))
    save_policy(policy, tmp_path / "ckpt")
    record = json.loads((tmp_path / "ckpt" / "policy.json").read_text())
    record["config"]["down_dims"] = [32, 64]
    (tmp_path / "ckpt" / "policy.json").write_text(json.dumps(record))
    with pytest.raises(IncompatibleCheckpoint, match="shape mismatch"):
        load_policy(tmp_path / "ckpt")


def test_unknown_policy_and_config_key_are_named():
    with pytest.raises(KeyError, match="diffusion"):
        policy_config({"name": "difusion"})
    with pytest.raises(ValueError, match="horizn"):
        policy_config({"name": "diffusion", "horizn": 8})
    with pytest.raises(ValueError, match="divide"):
        make_policy({"name": "diffusion", "horizon": 10}, FEATURES, None)


def test_missing_normalization_statistics_are_an_error():
    stats = fake_stats(FEATURES)
    del stats[ACTION]
    with pytest.raises(ValueError, match="normalization statistics for 'action'"):
        make_policy(tiny_config("diffusion"), FEATURES, stats)


def test_min_max_normalization_maps_the_range_to_unit_interval():
    policy = make_policy(tiny_config("diffusion"), FEATURES, {
        STATE: {"min": np.arange(15.0), "max": np.arange(15.0) + 2}, ACTION: {"min": -2 * np.ones(7), "max": 2 * np.ones(7)}})
    x = torch.arange(15.0)
    np.testing.assert_allclose(policy.normalizer.normalize(STATE, x).numpy(), -np.ones(15))
    np.testing.assert_allclose(policy.normalizer.normalize(STATE, x + 2).numpy(), np.ones(15))
    a = torch.tensor([0.5] * 7)
    np.testing.assert_allclose(policy.normalizer.unnormalize(ACTION, policy.normalizer.normalize(ACTION, a)).numpy(), a.numpy())


def test_features_check_names_what_an_env_lacks():
    from toyland.sim import make_env

    env = make_env({"task": "lift", "image_size": 32})
    with pytest.raises(FeatureMismatch, match="observation.images.front"):
        FEATURES.check_env(env)
    env.close()
    info = {"fps": 20, "features": {"observation.state": {"shape": [15]}, "action": {"shape": [7]},
                                    "observation.images.front": {"dtype": "image", "shape": [48, 48, 3]}}}
    with pytest.raises(FeatureMismatch, match="observation.images.wrist"):
        PolicyFeatures.from_dataset_info(info, cameras=["wrist"])
    with pytest.raises(FeatureMismatch, match="'depth' modality"):
        PolicyFeatures.from_dataset_info(info, depth=True)
    info["features"]["observation.depth.front"] = {"dtype": "float32", "shape": [48, 48]}
    assert PolicyFeatures.from_dataset_info(info, depth=True).depths == {"observation.depth.front": (48, 48)}
    rgb_only = make_env({"task": "lift", "image_size": 48, "cameras": ["front"]})
    with pytest.raises(FeatureMismatch, match="add the 'depth' modality"):
        WITH_DEPTH.check_env(rgb_only)
    WITH_DEPTH.check_env(make_env({"task": "lift", "image_size": 48, "cameras": ["front:rgb+depth"]}))
    # actions of the same size that mean something else (tool deltas into a pose controller)
    pose_env = make_env({"task": "lift", "image_size": 32, "control_mode": "ee_pose", "cameras": []})
    delta_policy = PolicyFeatures(cameras={}, state_dim=15, action_dim=7, fps=20,
                                  action_names=tuple(make_env({"task": "lift", "cameras": [], "control_mode": "ee_delta"}).unwrapped.action_names))
    with pytest.raises(FeatureMismatch, match="control_mode=ee_pose"):
        delta_policy.check_env(pose_env)
    pose_policy = PolicyFeatures(cameras={}, state_dim=15, action_dim=7, fps=20, action_names=tuple(pose_env.unwrapped.action_names))
    pose_policy.check_env(pose_env)


def test_diffusion_conditions_on_the_instruction_through_minilm():
    torch.manual_seed(0)
    policy = make_policy({**tiny_config("diffusion"), "use_language": True}, FEATURES, fake_stats(FEATURES)).eval()
    batch = fake_batch(policy, batch_size=2)
    loss, _ = policy.train()(batch)
    loss.backward()
    assert policy.language.weight.grad is not None and policy.language.weight.grad.abs().sum() > 0
    policy.eval()
    chunks = []
    for task in ("pick up the red ball", "pick up the blue cube"):
        batch["task"] = [task, task]
        chunks.append(policy.predict_action_chunk(batch, generator=torch.Generator().manual_seed(0)))
    assert not torch.allclose(chunks[0], chunks[1])  # same noise, other instruction: other actions


def test_pixel_coordinates_travel_with_the_random_crop_and_say_where_the_window_was():
    from toyland.policies.vision import crop, with_pixel_coords

    h, w = 20, 30
    # content that names its own pixel: value = row * w + col
    index = torch.arange(h * w, dtype=torch.float32).reshape(1, 1, 1, h, w).expand(6, 2, 1, h, w)
    out = crop(with_pixel_coords(index), 0.8, random=True, generator=torch.Generator().manual_seed(0))
    assert out.shape == (6, 2, 3, 16, 24)
    rows, cols = (out[:, :, 0] // w), (out[:, :, 0] % w)  # where each cropped pixel came from
    torch.testing.assert_close(out[:, :, 1], rows / (h - 1))
    torch.testing.assert_close(out[:, :, 2], cols / (w - 1))
    assert len({float(o) for o in out[:, 0, 2, 0, 0]}) > 1  # the windows differ between samples
    centre = crop(with_pixel_coords(index), 0.8, random=False)
    assert float(centre[0, 0, 1, 0, 0]) == pytest.approx(2 / (h - 1)) and float(centre[0, 0, 2, 0, 0]) == pytest.approx(3 / (w - 1))
    # the option widens the encoder's input by the two channels
    policy = tiny_policy("diffusion-depth")
    assert next(iter(policy.encoders.values())).in_channels == 3 + 1 + 2


def test_channels_last_encoders_compute_the_same_numbers_and_checkpoint_like_contiguous_ones(tmp_path):
    from toyland.policies.vision import ConvEncoder, use_channels_last

    # auto: NHWC only where every stage is wide enough for it to be faster (measured, vision.py)
    assert use_channels_last("auto", (64, 128, 256)) and not use_channels_last("auto", (16, 32, 64))
    assert use_channels_last("channels_last", (16, 32)) and not use_channels_last("contiguous", (64, 128))
    torch.manual_seed(0)
    plain = ConvEncoder((8, 16), image_size=(12, 12), in_channels=4)
    nhwc = ConvEncoder((8, 16), image_size=(12, 12), in_channels=4, channels_last=True)
    nhwc.load_state_dict(plain.state_dict())
    assert nhwc.trunk[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(5, 4, 12, 12)
    out_plain, out_nhwc = plain(x), nhwc(x)
    torch.testing.assert_close(out_nhwc, out_plain, atol=1e-5, rtol=1e-5)
    out_plain.square().sum().backward()
    out_nhwc.square().sum().backward()
    for p, q in zip(plain.parameters(), nhwc.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-4, rtol=1e-4)
    # a policy with NHWC encoders saves (safetensors wants contiguous tensors) and reloads to the same actions
    policy = make_policy({**tiny_config("diffusion"), "memory_format": "channels_last"}, FEATURES, fake_stats(FEATURES)).eval()
    save_policy(policy, tmp_path / "ckpt")
    loaded = load_policy(tmp_path / "ckpt").eval()
    batch = fake_batch(policy)
    torch.testing.assert_close(loaded.predict_action_chunk(batch, torch.Generator().manual_seed(0)),
                               policy.predict_action_chunk(batch, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="memory_format='nchw'; valid: auto, contiguous, channels_last"):
        make_policy({**tiny_config("diffusion"), "memory_format": "nchw"}, FEATURES, fake_stats(FEATURES))


def test_training_augmentations_are_off_when_acting():
    policy = tiny_policy("diffusion-keypoints")
    batch = fake_batch(policy)
    with torch.no_grad():
        policy.train()
        torch.manual_seed(0)
        first = policy.condition(batch)
        assert not torch.allclose(first, policy.condition(batch))  # crop and colours redrawn
        policy.eval()
        torch.manual_seed(0)
        acting = policy.condition(batch)
        torch.manual_seed(1)
        torch.testing.assert_close(policy.condition(batch), acting)
        state_dims = slice(acting.shape[1] - 15, None)  # the state is the last part of the condition
        torch.testing.assert_close(acting[:, state_dims], policy.normalizer.normalize(STATE, batch[STATE]).flatten(1)[:, -15:])


def test_the_depth_channel_reaches_the_encoder_in_metres_up_to_its_range():
    from toyland.policies.features import DEPTH_RANGE

    policy = tiny_policy("diffusion-depth").eval()
    batch = fake_batch(policy)
    with torch.no_grad():
        base = policy.condition(batch)
        nearer = dict(batch, **{"observation.depth.front": batch["observation.depth.front"] * 0.5})
        assert not torch.allclose(policy.condition(nearer), base, atol=1e-4)
        far = dict(batch, **{"observation.depth.front": torch.full_like(batch["observation.depth.front"], DEPTH_RANGE)})
        farther = dict(batch, **{"observation.depth.front": torch.full_like(batch["observation.depth.front"], 5 * DEPTH_RANGE)})
        torch.testing.assert_close(policy.condition(far), policy.condition(farther))  # clipped at the range
    with pytest.raises(FeatureMismatch, match="'depth' modality"):
        make_policy(tiny_config("diffusion-depth"), FEATURES, fake_stats(FEATURES))


@pytest.mark.parametrize("extra", ["mask", "depth"])
def test_each_camera_input_is_read_checked_and_stored_through_one_table(extra):
    from toyland.policies.features import CAMERA_INPUTS, DEPTH_RANGE

    row = {e.modality: e for e in CAMERA_INPUTS}[extra]
    key = row.key("observation.images.front")
    assert key == {"mask": "observation.masks.front", "depth": "observation.depth.front"}[extra]
    info = {"fps": 20, "features": {"observation.state": {"shape": [15]}, "action": {"shape": [7]},
                                    "observation.images.front": {"dtype": "image", "shape": [48, 48, 3]}}}
    wanted = {"masks": extra == "mask", "depth": extra == "depth"}
    with pytest.raises(FeatureMismatch, match=f"'{extra}' modality"):
        PolicyFeatures.from_dataset_info(info, **wanted)
    info["features"][key] = {"dtype": "uint8", "shape": [40, 40]}
    with pytest.raises(FeatureMismatch, match=f"'{key}' is \\(40, 40\\), its image \\(48, 48\\)"):
        PolicyFeatures.from_dataset_info(info, **wanted)
    info["features"][key]["shape"] = [48, 48]
    features = PolicyFeatures.from_dataset_info(info, **wanted)
    assert row.shapes(features) == {key: (48, 48)}
    assert all(other.shapes(features) == {} for other in CAMERA_INPUTS if other is not row)
    row.check(features, "some_option")
    with pytest.raises(FeatureMismatch, match=f"some_option needs the .*'{extra}' modality.*policy.some_option=false"):
        row.check(FEATURES, "some_option")
    # stored in a checkpoint and read back; a record from before this input existed simply lacks it
    assert PolicyFeatures.from_dict(json.loads(json.dumps(features.to_dict()))) == features
    older = features.to_dict()
    del older[row.field]
    assert row.shapes(PolicyFeatures.from_dict(older)) == {}
    # a batch value becomes one channel of the image's size: masks as they are, depth over its range
    images = torch.rand(2, 3, 3, 48, 48)
    value = torch.rand(2, 3, 48, 48) * 3
    channel = row.channel({key: value}, "observation.images.front", images)
    assert channel.shape == (2, 3, 1, 48, 48)
    torch.testing.assert_close(channel[:, :, 0], value if extra == "mask" else (value / DEPTH_RANGE).clamp(0, 1))
    with pytest.raises(ValueError, match="must have the camera image's size"):
        row.channel({key: value[..., :40, :40]}, "observation.images.front", images)


def test_seeded_envs_sample_their_own_streams_whatever_shares_their_batch(policy):
    policy.eval()
    n = policy.config.n_action_steps
    # one env seeded: the same actions as the global generator seeded the same way (old records hold)
    policy.reset()
    torch.manual_seed(11)
    unseeded = [policy.select_action(fake_obs(i)) for i in range(n + 1)]
    policy.reset(seeds=[11])
    torch.manual_seed(0)
    seeded = [policy.select_action(fake_obs(i)) for i in range(n + 1)]
    np.testing.assert_array_equal(np.stack(unseeded), np.stack(seeded))
    # env 2 beside others, or alone in a batch: the same actions up to rounding
    obs = fake_obs(3, batch=3)
    policy.reset(seeds=[5, 6, 7])
    together = policy.select_action(obs)
    policy.reset(num_envs=3)
    policy.reset(env_ids=[2], seeds=[7])
    alone = policy.select_action({k: (v[2:] if k != "task" else v[2:]) for k, v in obs.items()}, env_ids=[2])
    np.testing.assert_allclose(together[2:], alone, atol=1e-4)
    same = {k: (np.stack([v[0]] * 3) if k != "task" else [v[0]] * 3) for k, v in obs.items()}
    policy.reset(seeds=[5, 5, 6])
    rows = policy.select_action(same)
    np.testing.assert_allclose(rows[0], rows[1], atol=1e-4)  # same observation, same seed
    if policy.name in ("diffusion", "lerobot_diffusion") or getattr(policy.config, "head", "") in ("flow", "discrete_diffusion"):
        assert not np.allclose(rows[0], rows[2], atol=1e-3)  # another seed, another sample
    with pytest.raises(ValueError, match="reset\\(num_envs"):
        policy.select_action({k: v[:1] for k, v in obs.items()}, env_ids=[5])
