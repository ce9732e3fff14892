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


def det_pool_policy(det_pool: bool, stem: str = "linear", slots: int = 1, geometry: bool = False, depth: bool = False,
                    **more):
    from toyland.policies import make_policy

    torch.manual_seed(0)
    features = MASKED_DEPTH if depth else MASKED
    return make_policy({**TINY["vla-flow"], "det_pool": det_pool, "stem": stem, "det_pool_slots": slots,
                        "det_pool_geometry": geometry, "depth": depth, **more}, features, fake_stats(features)).eval()


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


def object_batch(policy, seed: int = 0) -> dict:
    """A fake batch whose masks are object-id maps: three 12x12 objects (ids 1-3) on the 48x48 view."""
    batch = fake_batch(policy, batch_size=2, seed=seed)
    ids = torch.zeros_like(batch["observation.masks.front"])
    for k, (r, c) in enumerate([(4, 4), (4, 30), (30, 16)]):
        ids[..., r:r + 12, c:c + 12] = k + 1
    batch["observation.masks.front"] = ids
    return batch


def test_object_masks_make_a_set_of_object_tokens_that_only_the_instruction_can_tell_apart():
    policy = det_pool_policy(True, "conv", slots=2, geometry=True)
    policy.config.det_pool_masks = "objects"
    batch = object_batch(policy)
    ids = batch["observation.masks.front"]
    swapped = dict(batch, **{"observation.masks.front": torch.where(ids == 1, 3, torch.where(ids == 3, 1, ids))})
    outside = dict(batch)
    noise = torch.rand_like(batch["observation.images.front"])
    outside["observation.images.front"] = torch.where((ids == 0)[:, :, None], noise, batch["observation.images.front"])
    with torch.no_grad():
        memory, pad = policy.encode(batch)
        chunks = [policy.predict_action_chunk(b, torch.Generator().manual_seed(1)) for b in (batch, swapped, outside)]
        # the same objects under other ids: the same actions (no token says which id it came from)
        torch.testing.assert_close(chunks[1], chunks[0], rtol=0, atol=1e-5)
        # pixels outside every object change nothing; inside an object they do
        torch.testing.assert_close(chunks[2], chunks[0], rtol=0, atol=1e-5)
        inside = dict(batch, **{"observation.images.front": torch.where((ids == 2)[:, :, None], noise,
                                                                        batch["observation.images.front"])})
        assert not torch.allclose(policy.encode(inside)[0], memory, atol=1e-4)
        # three objects' slots per frame; an object cropped out of view is padded, not a token
        gone = dict(batch, **{"observation.masks.front": torch.where(ids == 3, 0, ids)})
        assert int((~policy.encode(gone)[1]).sum()) == int((~pad).sum()) - 2 * 2  # 2 slots in each of 2 samples
        # which object is the target comes from the instruction alone
        other = dict(batch, task=["pick up the blue ring"] * 2)
        assert not torch.allclose(policy.predict_action_chunk(other, torch.Generator().manual_seed(1)), chunks[0], atol=1e-4)


def test_the_grounding_loss_names_the_instructed_object_and_reaches_the_instruction():
    """grounding_aux: a cross-entropy over each camera's object tokens after the policy layers, whose
    label is the target's id; its gradient reaches the instruction's projection (the grounding it
    teaches is of words to objects), and a camera that does not see the target is left out."""
    from toyland.sim.annotations import TARGET_ANNOTATION

    policy = det_pool_policy(True, "conv", slots=2, geometry=True)
    policy.config.det_pool_masks = "objects"
    policy.grounding = torch.nn.Linear(policy.config.dim, 1)
    policy.train()
    batch = object_batch(policy)
    batch[TARGET_ANNOTATION] = torch.tensor([[[2.0]], [[3.0]]])
    memory, pad, spans, _ = policy._encode(batch)
    loss, accuracy = policy._grounding_loss(memory, pad, spans, batch)
    assert 0.0 < loss.item() < 5.0 and 0.0 <= accuracy <= 1.0
    loss.backward()
    assert policy.language_in.weight.grad.abs().sum() > 0 and policy.grounding.weight.grad.abs().sum() > 0
    # the target out of view (its id nowhere in the map): nothing to learn from that sample
    gone = dict(batch, **{"observation.masks.front": torch.where(batch["observation.masks.front"] == 2, 0,
                                                                 batch["observation.masks.front"])})
    memory, pad, spans, _ = policy._encode(gone)
    only_second, _ = policy._grounding_loss(memory, pad, spans, gone)
    memory, pad, spans, _ = policy._encode({**gone, "task": gone["task"]})
    both, _ = policy._grounding_loss(memory, pad, spans, {**gone, TARGET_ANNOTATION: torch.tensor([[[3.0]], [[3.0]]])})
    assert torch.isfinite(only_second) and not torch.isclose(only_second, both)


def test_the_matcher_marks_the_named_object_and_its_loss_needs_the_instruction():
    """grounding_marker: the instruction is matched to every object before the policy layers and the
    objects carry a marker in proportion; its loss reaches the instruction, and its across-batch part
    (the named object against other samples' instructions) cannot be lowered by remembering targets."""
    from toyland.policies.vla.grounding import grounding_loss
    from toyland.sim.annotations import TARGET_ANNOTATION

    policy = det_pool_policy(True, "conv", slots=2, geometry=True, det_pool_masks="objects", grounding_marker=True,
                             grounding_aux=1.0)
    policy.train()
    batch = object_batch(policy)
    batch["task"] = ["pick up the red ball", "pick up the blue ring"]
    batch[TARGET_ANNOTATION] = torch.tensor([[[2.0]], [[3.0]]])
    _, _, _, match = policy._encode(batch)
    scores = match["scores"][0]
    assert scores.shape == (2, 1, 4) and torch.isfinite(scores).all()  # three objects and "none"
    loss, accuracy = policy._matcher_loss(match, batch)
    assert 0.0 < loss.item() < 10.0 and 0.0 <= accuracy <= 1.0
    loss.backward()
    assert policy.language_in.weight.grad.abs().sum() > 0
    assert policy.matcher.key[1].weight.grad.abs().sum() > 0 and policy.matcher.pool_keys.weight.grad.abs().sum() > 0
    # the swap invariance of object tokens holds with the marker too, and the instruction moves the marker
    with torch.no_grad():
        ids = batch["observation.masks.front"]
        swapped = dict(batch, **{"observation.masks.front": torch.where(ids == 1, 3, torch.where(ids == 3, 1, ids))})
        policy.eval()
        a = policy.predict_action_chunk(batch, torch.Generator().manual_seed(1))
        torch.testing.assert_close(policy.predict_action_chunk(swapped, torch.Generator().manual_seed(1)), a, rtol=0, atol=1e-5)
        other = policy._encode(dict(batch, task=["pick up the blue ring", "pick up the red ball"]))[3]["scores"][0]
        assert not torch.allclose(other, scores.detach(), atol=1e-4)
    # the loss itself: scores that name the target, and keys that match only their own instruction, give ~0;
    # keys equal for every instruction (a score that ignores the words) leave the across-batch part at log B
    query = torch.eye(4)[:3] * 10
    keys = torch.zeros(3, 2, 4)
    keys[torch.arange(3), torch.tensor([0, 1, 0])] = torch.eye(4)[:3] * 10
    right = torch.tensor([[9.0, -9.0, -9.0], [-9.0, 9.0, -9.0], [9.0, -9.0, -9.0]])
    target = torch.tensor([1, 2, 1])
    no_one = torch.zeros(3, 3, dtype=torch.bool)
    low, hits = grounding_loss([right], [keys], query, target, no_one | torch.eye(3, dtype=torch.bool), 1.0)
    assert low.item() < 1e-3 and hits == 1.0
    blind = torch.ones(3, 2, 4) * 10
    high, _ = grounding_loss([right], [blind], query, target, torch.eye(3, dtype=torch.bool), 1.0)
    assert high.item() > 0.9 * np.log(3)
    # two samples with the same instruction are not each other's negatives
    same = torch.tensor([[True, False, True], [False, True, False], [True, False, True]])
    shared, _ = grounding_loss([right], [blind], query, target, same, 1.0)
    assert shared.item() < high.item()


def test_grounding_select_reads_only_the_chosen_object_through_the_target_mask_path():
    """grounding_select: the matcher chooses, and the policy reads the chosen object's pixels as the
    target-mask recipe reads the target's own mask; the expert's target in training, the matcher's when
    acting; a swap of object ids changes nothing."""
    from toyland.policies.vla.policy import VLAPolicy
    from toyland.sim.annotations import TARGET_ANNOTATION

    policy = det_pool_policy(True, "conv", slots=2, geometry=True, det_pool_masks="objects", grounding_aux=1.0,
                             grounding_select=True)
    batch = object_batch(policy)
    batch["task"] = ["pick up the red ball", "pick up the blue ring"]
    batch[TARGET_ANNOTATION] = torch.tensor([[[2.0]], [[3.0]]])
    key, ids = "observation.images.front", batch["observation.masks.front"]
    chosen = torch.tensor([2, 3])
    with torch.no_grad():
        picked, _, _ = policy._camera_tokens(0, key, batch, chosen=chosen)
        own = torch.stack([(ids[i] == chosen[i]).to(ids.dtype) for i in range(2)])
        policy.config.det_pool_masks = "target"  # the same weights on the chosen object's own mask
        alone, _, _ = policy._camera_tokens(0, key, dict(batch, **{"observation.masks.front": own}))
        policy.config.det_pool_masks = "objects"
    torch.testing.assert_close(picked, alone)
    # training: the policy learns on the expert's target, and the loss reaches the matcher and the words
    policy.train()
    _, _, _, match = policy._encode(batch)
    assert match["chosen"].tolist() == [2, 3]
    loss, _ = policy(batch)
    loss.backward()
    assert policy.matcher.key[1].weight.grad.abs().sum() > 0 and policy.language_in.weight.grad.abs().sum() > 0
    assert policy.grounding is None and policy.matcher.marker.grad is None  # the marker is the other use
    # acting: the matcher's choice, whatever the annotation says
    policy.eval()
    with torch.no_grad():
        _, _, _, match = policy._encode(batch)
        assert torch.equal(match["chosen"], VLAPolicy.choose(match["scores"]))
        swapped = dict(batch, **{"observation.masks.front": torch.where(ids == 1, 3, torch.where(ids == 3, 1, ids))})
        a = policy.predict_action_chunk(batch, torch.Generator().manual_seed(1))
        torch.testing.assert_close(policy.predict_action_chunk(swapped, torch.Generator().manual_seed(1)), a, rtol=0, atol=1e-5)
        policy.choose = lambda scores: torch.tensor([1, 1])
        b = policy.predict_action_chunk(batch, torch.Generator().manual_seed(1))
        policy.choose = lambda scores: torch.tensor([3, 3])
        assert not torch.allclose(policy.predict_action_chunk(batch, torch.Generator().manual_seed(1)), b, atol=1e-4)
    # the choice sums each camera's probabilities; a camera that sees fewer objects gives the others nothing
    inf = float("-inf")
    front = torch.tensor([[[2.0, 1.9, 0.0, -5.0]]])  # objects 1-3 and none
    wrist = torch.tensor([[[inf, 3.0, -5.0]]])  # sees objects 1-2 (1 out of view) and none
    assert VLAPolicy.choose([front]).tolist() == [1] and VLAPolicy.choose([front, wrist]).tolist() == [2]


def test_grounding_vision_own_keeps_the_matcher_loss_out_of_the_policy_encoders():
    """grounding_vision=own: the matcher's loss trains only its own encoders and pool, the action loss only
    the policy's; the chosen object still reaches the actions."""
    from toyland.sim.annotations import TARGET_ANNOTATION

    policy = det_pool_policy(True, "conv", slots=2, geometry=True, det_pool_masks="objects", grounding_aux=1.0,
                             grounding_select=True, grounding_vision="own")
    batch = object_batch(policy)
    batch["task"] = ["pick up the red ball", "pick up the blue ring"]
    batch[TARGET_ANNOTATION] = torch.tensor([[[2.0]], [[3.0]]])
    policy.train()

    def grads(loss) -> dict:
        policy.zero_grad()
        loss.backward()
        return {part: sum(p.grad.abs().sum().item() for p in module.parameters() if p.grad is not None)
                for part, module in (("policy", policy.vision), ("matcher", policy.match_vision))}

    matcher = grads(policy._matcher_loss(policy._encode(batch)[3], batch)[0])
    memory, pad = policy.encode(batch)
    actions = grads(policy.head.loss(memory, pad, policy.normalizer.normalize("action", batch["action"]))[0])
    assert matcher["matcher"] > 0 and matcher["policy"] == 0
    assert actions["policy"] > 0 and actions["matcher"] == 0
    policy.eval()
    with torch.no_grad():
        policy.choose = lambda scores: torch.tensor([1, 1])
        a = policy.predict_action_chunk(batch, torch.Generator().manual_seed(1))
        policy.choose = lambda scores: torch.tensor([3, 3])
        assert not torch.allclose(policy.predict_action_chunk(batch, torch.Generator().manual_seed(1)), a, atol=1e-4)
    from toyland.policies import make_policy

    with pytest.raises(ValueError, match="set grounding_select=true, or grounding_vision=shared"):
        make_policy({**TINY["vla-flow"], "det_pool_masks": "objects", "grounding_aux": 1.0, "grounding_vision": "own"},
                    MASKED, fake_stats(MASKED))
    with pytest.raises(ValueError, match="valid: shared, own"):
        make_policy({**TINY["vla-flow"], "grounding_vision": "mine"}, MASKED, fake_stats(MASKED))


def test_grounding_aux_is_validated_and_needs_the_annotation():
    from toyland.policies import make_policy
    from toyland.sim.annotations import TARGET_ANNOTATION

    with pytest.raises(ValueError, match="needs det_pool=true and det_pool_masks=objects"):
        make_policy({**TINY["vla-flow"], "grounding_aux": 1.0}, MASKED, fake_stats(MASKED))
    with pytest.raises(ValueError, match="set use_language=true or grounding_aux=0"):
        make_policy({**TINY["vla-flow"], "det_pool_masks": "objects", "grounding_aux": 1.0, "use_language": False},
                    MASKED, fake_stats(MASKED))
    with pytest.raises(ValueError, match="grounding_marker matches the instruction"):
        make_policy({**TINY["vla-flow"], "grounding_marker": True}, MASKED, fake_stats(MASKED))
    with pytest.raises(ValueError, match="grounding_select chooses among every object"):
        make_policy({**TINY["vla-flow"], "det_pool_masks": "objects", "grounding_select": True}, MASKED, fake_stats(MASKED))
    with pytest.raises(ValueError, match="set one of them false"):
        make_policy({**TINY["vla-flow"], "det_pool_masks": "objects", "grounding_aux": 1.0, "grounding_select": True,
                     "grounding_marker": True}, MASKED, fake_stats(MASKED))
    stats = {k: v for k, v in fake_stats(MASKED).items() if k != TARGET_ANNOTATION}
    with pytest.raises(FeatureMismatch, match="collect it again with env.masks=objects"):
        make_policy({**TINY["vla-flow"], "det_pool_masks": "objects", "grounding_aux": 1.0}, MASKED, stats)


def test_a_target_mask_policy_refuses_object_id_maps_and_names_the_option():
    policy = det_pool_policy(True)
    with pytest.raises(ValueError, match="det_pool_masks=objects"):
        policy.encode(object_batch(policy))


def test_det_pool_masks_is_validated():
    from toyland.policies import make_policy

    with pytest.raises(ValueError, match="det_pool_masks='boxes'; valid: target, objects"):
        make_policy({**TINY["vla-flow"], "det_pool_masks": "boxes"}, MASKED, fake_stats(MASKED))
    with pytest.raises(ValueError, match="det_pool_masks=objects needs det_pool=true"):
        make_policy({**TINY["vla-flow"], "det_pool": False, "det_pool_geometry": False, "det_pool_masks": "objects"},
                    MASKED, fake_stats(MASKED))


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
        loss, info = policy(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        # the head's own loss: a grounding loss on fake id maps (targets absent from them) has little to fit
        losses.append(loss.item() - policy.config.grounding_aux * info.get("grounding_ce", 0.0))
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


def test_a_vla_on_every_objects_mask_trains_and_acts_through_the_trainer(tmp_path):
    """The instructions study's policy end to end: demonstrations with every object's mask (env
    masks=objects), DetPool over each object, the final evaluation in an env that gives the same maps."""
    from test_train import config
    from toyland.data.collect import collect
    from toyland.train.trainer import train

    env = {"task": "language_lift", "image_size": 48, "cameras": ["front:rgb+mask"], "masks": "objects",
           "placement": "exchangeable"}
    collect({**env, "cameras": ["front:rgb+mask+segmentation"]}, tmp_path / "demos", episodes=1, seed=0, workers=1,
            progress=False)
    # the expert records the target's id in the masks: the id on the target's pixels
    from toyland.data.frames import FrameStore
    from toyland.sim.annotations import TARGET_ANNOTATION
    from toyland.sim.scene import FIRST_OBJECT_LABEL

    store = FrameStore.load(tmp_path / "demos")
    ids, labels = store.arrays["observation.masks.front"], store.arrays["observation.segmentation.front"]
    target_ids = store.arrays[TARGET_ANNOTATION][:, 0]
    seen = labels == FIRST_OBJECT_LABEL  # the target is object 0 of a Language Lift scene
    for i in range(len(ids)):
        if seen[i].any():
            assert set(np.unique(ids[i][seen[i]]).tolist()) == {int(target_ids[i])}
    overrides = ["env.task=language_lift", "env.cameras=[front:rgb+mask]", "env.masks=objects",
                 "env.placement=exchangeable", "eval.final_episodes=1", "eval.videos=0"]
    result = train(config(tmp_path / "run", tmp_path / "demos", *overrides,
                          policy=[*TINY_VLA_OVERRIDES, "policy.det_pool_masks=objects", "policy.grounding_aux=1.0"]))
    assert result.final_eval["episodes"] == 1
    from test_augment_training import scalars

    assert "train/grounding_ce" in scalars(tmp_path / "run") and "train/grounding_accuracy" in scalars(tmp_path / "run")
    # evaluated where the env gives the target's own mask (which would tell it the target), it refuses
    from test_eval import ID_ONLY
    from toyland.eval.harness import evaluate_suite

    with pytest.raises(FeatureMismatch, match="set env.masks=objects"):
        evaluate_suite(str(tmp_path / "run"), {**env, "masks": "target"}, ID_ONLY, tmp_path / "eval", episodes=1,
                       workers=1, videos=False, progress=False)
    # a target-mask policy refuses these maps: before training where it would be evaluated, else on the first batch
    with pytest.raises(FeatureMismatch, match="set env.masks=target"):
        train(config(tmp_path / "target", tmp_path / "demos", *overrides, policy=TINY_VLA_OVERRIDES))
    with pytest.raises(ValueError, match="det_pool_masks=objects"):
        train(config(tmp_path / "target2", tmp_path / "demos", *overrides[:-2], "eval.final_episodes=0",
                     policy=TINY_VLA_OVERRIDES))
