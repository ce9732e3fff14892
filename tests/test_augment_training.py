"""Augmentations in training: the trainer applies the configured list through the sampler's hook,
fails before the first step on what a dataset lacks, and evaluation never sees an augmentation; the
policies' offset embedding (E0) is a no-op for an unwarped image."""

import json

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from test_train import config
from toyland.augment import MissingInputError, build_augmentations
from toyland.policies.features import viewpoint_offset_key
from toyland.train import trainer
from toyland.train.trainer import add_augment_keys, train


def scalars(run) -> dict:
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_training_applies_the_augmentations_and_logs_their_share(tmp_path, lift_demos, monkeypatch):
    seen = []
    real = trainer.AugmentStep.__call__

    def spy(self, batch, generator):
        out = real(self, batch, generator)
        seen.append((batch["observation.images.front"].clone(), out["observation.images.front"]))
        return out

    monkeypatch.setattr(trainer.AugmentStep, "__call__", spy)
    cfg = config(tmp_path, lift_demos, "augment=[colour_jitter,viewpoint_warp]", "steps=3")
    train(cfg)
    assert len(seen) >= 3 and all(not torch.equal(before, after) for before, after in seen)
    logged = scalars(tmp_path)
    assert "train/augment_share" in logged and all(0 < s < 1 for s in logged["train/augment_share"])
    assert "train/warp_holes" in logged
    assert json.loads((tmp_path / "config.json").read_text())["augment"] == ["colour_jitter", "viewpoint_warp"]


def test_an_augmented_run_is_a_function_of_its_seed(tmp_path, lift_demos):
    runs = []
    for name in ("a", "b"):
        train(config(tmp_path / name, lift_demos, "augment=[colour_jitter,viewpoint_warp]", "steps=2"))
        runs.append((tmp_path / name / "train_log.jsonl").exists())
        from safetensors.torch import load_file

        from toyland.train.state import latest_checkpoint
        runs[-1] = load_file(str(latest_checkpoint(tmp_path / name) / "model.safetensors"))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_a_bad_augmentation_fails_before_any_data_is_read(tmp_path):
    cfg = config(tmp_path, tmp_path / "no_such_dataset", "augment=[colour_jiter]")
    with pytest.raises(ValueError, match="colour_jitter"):
        train(cfg)


def test_depth_aware_warp_on_data_without_depth_fails_before_the_first_step(tmp_path, lift_demos, monkeypatch):
    steps = []
    monkeypatch.setattr(trainer, "save_training", lambda *a, **k: steps.append(a))
    cfg = config(tmp_path, lift_demos, "augment=[{name: viewpoint_warp, depth_aware: true}]")
    with pytest.raises(MissingInputError, match=r"rgb\+depth"):
        train(cfg)
    assert not steps


def test_the_policies_own_colour_jitter_is_gone_and_old_checkpoints_drop_it():
    from toyland.policies.checkpoint import migrate

    record = {"format_version": 2, "name": "diffusion", "config": {"colour_jitter": [0.2, 0.2, 0.2, 0.05]}, "features": {}}
    assert migrate(record)["config"] == {"viewpoint_embedding": False}


def test_colour_jitter_is_one_draw_per_sample_and_keeps_grey_grey():
    images = torch.rand(4, 2, 3, 12, 12)  # [B, T, C, H, W]

    def jitter(x, seed, **fields):
        return build_augmentations([{"name": "colour_jitter", **fields}])({"observation.images.front": x},
                                                                         torch.Generator().manual_seed(seed))["observation.images.front"]

    out = jitter(images, 0, brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1)
    assert out.min() >= 0 and out.max() <= 1 and not torch.allclose(out, images, atol=1e-3)
    # every history frame of a sample gets its sample's draw, and the samples of a batch different ones
    torch.testing.assert_close(jitter(images.flip(1), 0, brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1),
                               out.flip(1))
    same = jitter(images[:1].expand(4, -1, -1, -1, -1), 0, brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1)
    assert not torch.allclose(same[0], same[1], atol=1e-3)
    # saturation and hue move colours around grey: a grey image stays grey
    grey = torch.rand(4, 1, 1, 12, 12).expand(-1, -1, 3, -1, -1)
    torch.testing.assert_close(jitter(grey, 1, brightness=0.0, contrast=0.0, saturation=0.5, hue=0.5), grey,
                               atol=1e-5, rtol=0)


def test_the_sampler_is_asked_for_what_the_warp_needs_and_the_dataset_has():
    deltas = {"observation.images.front": [0.0], "observation.images.front_is_pad": [0.0], "action": [0.0, 0.1]}
    info = {"features": {"observation.depth.front": {}, "camera.pose.front": {}}}
    add_augment_keys(deltas, build_augmentations([{"name": "viewpoint_warp", "depth_aware": True}]), info)
    assert deltas["observation.depth.front"] == [0.0] and deltas["camera.pose.front"] == [0.0]
    assert "camera.intrinsics.front" not in deltas  # not in the dataset: the warp falls back to the field of view


@pytest.mark.parametrize("name", ["diffusion", "vla"])
def test_the_offset_embedding_adds_nothing_for_the_nominal_view(name, lift_demos, language_lift_demos):
    from toyland.data.mixture import build_sampler
    from toyland.policies import policy_config
    from toyland.policies.features import PolicyFeatures

    data = lift_demos if name == "diffusion" else language_lift_demos
    overrides = {"viewpoint_embedding": True, **({"channels": [8, 16], "down_dims": [16, 32], "image_feature_dim": 16,
                                                  "horizon": 8, "n_action_steps": 4} if name == "diffusion" else
                                                 {"dim": 32, "heads": 2, "horizon": 8, "n_action_steps": 4, "patch_size": 6})}
    cls, pconfig = policy_config({"name": name, **overrides})
    info = json.loads((data / "meta" / "info.json").read_text())
    features = PolicyFeatures.from_dataset_info(info, None, masks=pconfig.needs_masks, depth=pconfig.needs_depth)
    sampler = build_sampler({"sources": [{"path": str(data)}]}, cls(pconfig, features, None).delta_timestamps(), 2)
    torch.manual_seed(0)
    policy = cls(pconfig, features, sampler.stats()).eval()
    batch = sampler.sample(0)
    key = viewpoint_offset_key(next(iter(features.cameras)))

    def loss(b):
        torch.manual_seed(1)
        return policy(b)[0]

    plain = loss(batch)
    assert torch.equal(plain, loss({**batch, key: torch.zeros(2, 2)}))  # evaluation: no offset, no change
    assert not torch.equal(plain, loss({**batch, key: torch.full((2, 2), 0.3)}))
