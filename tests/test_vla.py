"""The VLA beyond the policy contract: action bins, DetPool's invariance, masks, instructions,
and training it through the trainer on collected language-Lift demonstrations."""

import numpy as np
import pytest
import torch

from toyland.policies.features import FeatureMismatch
from toyland.policies.vla.bins import QuantileBins
from test_policies import MASKED, MASKED_DEPTH, TINY, fake_batch, fake_stats, tiny_policy

VLA_CASES = [c for c in TINY if TINY[c].get("name") == "vla"]
TOKEN_CASES = [c for c in VLA_CASES if TINY[c]["head"] != "flow"]  # the heads that work on action bins
LANGUAGE_CASES = [c for c in VLA_CASES if TINY[c].get("use_language", True)]


def test_quantize_dequantize_round_trip_is_within_half_a_bin():
    rng = np.random.default_rng(0)
    data = np.stack([rng.normal(0, 0.3, 4000), rng.uniform(-1, 1, 4000), rng.choice([-1.0, 1.0], 4000)], 1)
    bins = QuantileBins(3, 64)
    bins.fit(data)
    x = torch.from_numpy(data[:500]).float()
    index, clipped = bins.quantize(x)
    assert clipped == 0 and index.min() >= 0 and index.max() < 64
    error = (bins.dequantize(index) - x).abs()
    assert torch.all(error <= bins.width(index) / 2 + 1e-6)
    # quantile edges: the training values spread evenly over the bins of a continuous dimension
    counts = torch.bincount(bins.quantize(torch.from_numpy(data).float())[0][:, 1], minlength=64)
    assert counts.min() >= 0.5 * counts.float().mean()
    # a two-valued dimension (the gripper) comes back exactly, and no decoded value leaves the data's range
    torch.testing.assert_close(bins.dequantize(index)[:, 2], x[:, 2], atol=1e-5, rtol=0)
    every = bins.dequantize(torch.arange(64).repeat(3, 1).T)
    assert torch.all(every >= torch.from_numpy(data.min(0)).float()) and torch.all(every <= torch.from_numpy(data.max(0)).float())


def test_values_outside_the_fitted_range_are_clipped_to_the_edge_bins_and_counted():
    bins = QuantileBins(2, 16)
    bins.fit(np.random.default_rng(0).uniform(-1, 1, (1000, 2)))
    index, clipped = bins.quantize(torch.tensor([[5.0, -7.0], [0.0, 0.0], [-3.0, 0.5]]))
    assert clipped == 3 and bins.clipped_total == 3
    assert index[0].tolist() == [15, 0] and index[2, 0] == 0


def test_unfitted_bins_refuse_to_quantize():
    with pytest.raises(RuntimeError, match="not fitted"):
        QuantileBins(2, 8).quantize(torch.zeros(1, 2))


@pytest.mark.parametrize("case", TOKEN_CASES)
def test_the_trained_bins_travel_with_the_checkpoint(case, tmp_path):
    from toyland.policies.checkpoint import load_policy, save_policy

    policy = tiny_policy(case)
    save_policy(policy, tmp_path / "ckpt")
    loaded = load_policy(tmp_path / "ckpt")
    torch.testing.assert_close(loaded.head.bins.edges, policy.head.bins.edges)
    assert bool(loaded.head.bins.fitted)


def det_pool_policy(det_pool: bool, stem: str = "linear", slots: int = 1, geometry: bool = False, depth: bool = False):
    from toyland.policies import make_policy

    torch.manual_seed(0)
    features = MASKED_DEPTH if depth else MASKED
    return make_policy({**TINY["vla-flow"], "det_pool": det_pool, "stem": stem, "det_pool_slots": slots,
                        "det_pool_geometry": geometry, "depth": depth}, features, fake_stats(features)).eval()


@pytest.mark.parametrize("stem,slots,geometry,depth", [("linear", 1, False, False), ("conv", 1, False, False),
                                                       ("linear", 3, False, False), ("linear", 1, True, True)])
def test_det_pool_ignores_every_pixel_outside_the_target_mask(stem, slots, geometry, depth):
    policy = det_pool_policy(True, stem, slots, geometry, depth)
    batch = fake_batch(policy, batch_size=3)
    mask = batch["observation.masks.front"]
    mask[2] = 0  # one sample whose target is out of view: its token is the learned "absent" token
    changed = dict(batch)
    noise = torch.rand_like(batch["observation.images.front"])
    outside = (mask[:, :, None] == 0).expand_as(noise)
    changed["observation.images.front"] = torch.where(outside, noise, batch["observation.images.front"])
    if depth:  # the depth outside the mask cannot reach the tokens either
        far = batch["observation.depth.front"] + 0.5
        changed["observation.depth.front"] = torch.where(mask == 0, far, batch["observation.depth.front"])
    with torch.no_grad():
        a, _ = policy.encode(batch)
        b, _ = policy.encode(changed)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # pixels inside the mask do change it, and without DetPool so do the ones outside
    inside = dict(batch)
    inside["observation.images.front"] = torch.where(~outside, noise, batch["observation.images.front"])
    with torch.no_grad():
        assert not torch.allclose(policy.encode(inside)[0][:2], a[:2], atol=1e-4)
        plain = det_pool_policy(False, stem, depth=depth)
        assert not torch.allclose(plain.encode(batch)[0], plain.encode(changed)[0], atol=1e-4)


def test_mask_geometry_reads_place_extent_and_principal_axis():
    from toyland.policies.vla.vision import mask_geometry

    mask = torch.zeros(3, 9, 9)
    mask[0, 4, 1:8] = 1  # a horizontal bar through the centre
    mask[1, 0:3, 0:3] = 1  # a square in the top-left corner
    g = mask_geometry(mask)
    present, size, cx, cy, x0, x1, y0, y1, spread, cross, total = g.T
    assert present.tolist() == [1.0, 1.0, 0.0] and torch.all(g[2] == 0)  # the empty mask: all zeros
    torch.testing.assert_close(torch.stack([cx[0], cy[0]]), torch.zeros(2))
    torch.testing.assert_close(torch.stack([x0[1], x1[1], y0[1], y1[1]]), torch.tensor([-1.0, -0.5, -1.0, -0.5]))
    assert spread[0] > 0 and abs(cross[0]) < 1e-6  # elongated along x
    assert abs(spread[1]) < 1e-6 and size[1] > size[0]  # a square has no principal axis; 9 pixels beat 7
    turned = mask_geometry(mask[:1].transpose(1, 2))
    assert turned[0, 8] < 0  # the same bar along y


@pytest.mark.parametrize("coords", [False, True])
def test_with_crop_coords_the_mask_geometry_is_measured_on_the_uncropped_mask(coords, monkeypatch):
    from toyland.policies import make_policy
    from toyland.policies.vla import vision

    seen = []
    real = vision.mask_geometry
    monkeypatch.setattr(vision, "mask_geometry", lambda m: seen.append(real(m)) or seen[-1])
    torch.manual_seed(0)
    policy = make_policy({**TINY["vla-flow"], "det_pool_geometry": True, "crop_coords": coords}, MASKED,
                         fake_stats(MASKED)).train()
    batch = fake_batch(policy, batch_size=3)
    with torch.no_grad():
        for _ in range(4):  # four random crops
            policy.encode(batch)
    full = real(batch["observation.masks.front"].flatten(0, 1))
    if coords:  # exact and the same whatever window the crop took
        for g in seen:
            torch.testing.assert_close(g, full)
    else:  # measured in the window: it moves with the crop
        assert any(not torch.allclose(g, seen[0]) for g in seen[1:])


def test_det_pool_geometry_needs_det_pool():
    from toyland.policies import make_policy

    with pytest.raises(ValueError, match="det_pool_geometry=true needs det_pool=true"):
        make_policy({**TINY["vla-flow"], "det_pool": False, "det_pool_geometry": True}, MASKED, fake_stats(MASKED))


def test_a_mask_that_is_not_the_image_size_is_an_error():
    policy = det_pool_policy(True)
    batch = fake_batch(policy, batch_size=2)
    batch["observation.masks.front"] = batch["observation.masks.front"][..., :40, :40]
    with pytest.raises(ValueError, match="must have the camera image's size"):
        policy.encode(batch)


def test_det_pool_without_masks_names_the_mask_modality():
    from toyland.policies import make_policy
    from test_policies import FEATURES

    with pytest.raises(FeatureMismatch, match="'mask' modality"):
        make_policy(TINY["vla-flow"], FEATURES, fake_stats(FEATURES))


def test_a_long_instruction_is_truncated_with_a_warning():
    from toyland.policies.language import MAX_TOKENS

    policy = det_pool_policy(True)
    batch = fake_batch(policy, batch_size=1)
    batch["task"] = ["pick up the red ball " * 40]
    with pytest.warns(UserWarning, match=f"truncated to {MAX_TOKENS}"):
        memory, pad = policy.encode(batch)
    assert (~pad).sum() <= MAX_TOKENS + 2 and torch.isfinite(memory).all()


@pytest.mark.parametrize("case", LANGUAGE_CASES)
def test_the_instruction_changes_the_actions_and_other_seeds_other_samples(case):
    policy = tiny_policy(case).eval()
    batch = fake_batch(policy, batch_size=1)
    chunks = {}
    for task in ("pick up the red ball", "pick up the blue cube"):
        batch["task"] = [task]
        chunks[task] = policy.predict_action_chunk(batch, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(*chunks.values())
    if TINY[case]["head"] != "autoregressive":  # sampling heads: the noise matters
        samples = [policy.predict_action_chunk(batch, generator=torch.Generator().manual_seed(s)) for s in range(4)]
        assert any(not torch.allclose(samples[0], other) for other in samples[1:])


@pytest.mark.parametrize("case", VLA_CASES)
def test_each_head_fits_a_fixed_batch(case):
    torch.manual_seed(0)
    policy = tiny_policy(case).train()
    batch = fake_batch(policy, batch_size=8)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    losses = []
    for _ in range(80):
        torch.manual_seed(len(losses))
        loss, _ = policy(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5]), losses


TINY_VLA_OVERRIDES = ["policy=vla", "policy.dim=32", "policy.heads=2", "policy.vision_layers=1", "policy.policy_layers=1",
                      "policy.head_layers=1", "policy.patch_size=6", "policy.bins=16", "policy.horizon=8",
                      "policy.n_action_steps=4", "policy.head=discrete_diffusion", "policy.inference_steps=2"]


def test_the_vla_trains_and_acts_through_the_trainer(tmp_path, language_lift_demos, lift_demos):
    from test_train import config
    from toyland.policies.checkpoint import load_policy
    from toyland.train.trainer import train

    env = ["env.task=language_lift", "env.cameras=[front:rgb+mask]", "eval.final_episodes=1",
           "eval.videos=0"]
    result = train(config(tmp_path / "run", language_lift_demos, *env, policy=TINY_VLA_OVERRIDES))
    assert result.steps == 6 and result.final_eval["episodes"] == 1
    policy = load_policy(tmp_path / "run" / "checkpoints" / "step_0000006")
    edges = policy.head.bins.edges  # fitted on the demonstrations' actions before the first step
    assert bool(policy.head.bins.fitted) and torch.all(edges[:, 1:] > edges[:, :-1])
    assert edges[:, 0].min() >= -1.0 - 1e-4 and edges[:, -1].max() <= 1.0 + 1e-4  # actions lie in [-1, 1]
    # a dataset without masks cannot feed DetPool, and the error says how to collect one
    with pytest.raises(FeatureMismatch, match="'mask' modality"):
        train(config(tmp_path / "nomask", lift_demos, policy=TINY_VLA_OVERRIDES))
