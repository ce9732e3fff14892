"""The detector-noise model on target masks (issue 27): each error happens at its configured rate,
the noise is a function of the seed, and the env's eval-time noise leaves the scene alone."""

import numpy as np
import pytest
import torch

from toyland.augment import MissingInputError, build_augmentation
from toyland.augment.mask_noise import MaskNoiseConfig, noisy_masks

N, H, W = 4000, 24, 24
OFF = dict(wrong_object=0.0, morph=0.0, fragment=0.0, shift=0.0, miss=0.0)


def frames():
    """A 6x6 target at rows/cols 8..13 (label 3) and another object at 2..5 (label 4) in every frame."""
    labels = torch.ones(N, H, W, dtype=torch.int64)
    labels[:, 8:14, 8:14] = 3
    labels[:, 2:6, 2:6] = 4
    return (labels == 3).to(torch.uint8), labels


def noisy(seed=0, **rates):
    masks, labels = frames()
    return masks, labels, noisy_masks(masks, labels, MaskNoiseConfig(**{**OFF, **rates}), torch.Generator().manual_seed(seed))


def share(flags: torch.Tensor) -> float:
    return float(flags.float().mean())


@pytest.mark.parametrize("rate", [0.1, 0.4])
def test_each_error_happens_at_its_configured_rate(rate):
    masks, labels, out = noisy(miss=rate)
    assert abs(share(out.sum((1, 2)) == 0) - rate) < 0.03
    _, _, out = noisy(wrong_object=rate)
    assert abs(share((out.bool() == (labels == 4)).all(2).all(1)) - rate) < 0.03
    _, _, out = noisy(morph=rate, max_radius=2)
    area = out.sum((1, 2))
    assert abs(share(area != 36) - rate) < 0.03 and abs(share(area > 36) - rate / 2) < 0.03  # half dilated
    _, _, out = noisy(fragment=rate, fragments=1, fragment_size=4)
    assert abs(share(out.sum((1, 2)) < 36) - rate) < 0.03
    _, _, out = noisy(fragment=1.0, fragments=1, fragment_size=4)
    assert set((36 - out.sum((1, 2))).tolist()) <= {16, 12, 8, 9, 6, 4}  # a 4x4 block, clipped at the 6x6 toy's edge
    assert share(out.sum((1, 2)) == 20) > 0.2  # the whole block inside the toy: 16 pixels cut
    _, _, out = noisy(shift=rate, max_shift=3)
    assert abs(share((out != masks).any(2).any(1)) - rate) < 0.03  # a shift always moves the mask


def test_erosions_and_fragments_never_remove_the_whole_toy():
    masks = torch.zeros(N, H, W, dtype=torch.uint8)
    masks[:, 10:13, 10:13] = 1  # 3x3: any erosion of radius 2, or one 4x4 block, could empty it
    out = noisy_masks(masks, None, MaskNoiseConfig(**{**OFF, "morph": 1.0, "max_radius": 2}), torch.Generator().manual_seed(0))
    assert set(out.sum((1, 2)).tolist()) == {1, 25, 49}  # eroded to its centre; dilated by 1 or 2
    out = noisy_masks(masks, None, MaskNoiseConfig(**{**OFF, "fragment": 1.0, "fragments": 2, "fragment_size": 4}),
                      torch.Generator().manual_seed(0))
    area = out.sum((1, 2))
    assert (area > 0).all() and (area < 9).any()  # cut where a block leaves some, never to nothing


def test_no_noise_at_zero_strength_and_seeded_draws():
    masks, _, out = noisy(strength=0.0, wrong_object=0.5, morph=1.0, fragment=1.0, shift=1.0, miss=1.0)
    assert torch.equal(out, masks) and out.dtype == masks.dtype
    rates = dict(wrong_object=0.2, morph=0.3, fragment=0.2, shift=0.3, miss=0.1)
    assert torch.equal(noisy(5, **rates)[2], noisy(5, **rates)[2]) and not torch.equal(noisy(5, **rates)[2], noisy(6, **rates)[2])


def test_a_frames_noise_does_not_depend_on_the_other_frames():
    masks, labels = frames()
    config = MaskNoiseConfig(wrong_object=0.3, morph=0.5, fragment=0.5, shift=0.5, miss=0.1)
    whole = noisy_masks(masks[:8], labels[:8], config, torch.Generator().manual_seed(1))
    other = labels[:8].clone()
    other[4:, 16:20, 16:20] = 5  # other frames change; the first four stay
    part = noisy_masks(masks[:8], other, config, torch.Generator().manual_seed(1))
    assert torch.equal(whole[:4], part[:4])


def test_wrong_object_needs_the_segmentation():
    batch = {"observation.images.front": torch.rand(2, 3, 8, 8), "observation.masks.front": torch.zeros(2, 8, 8, dtype=torch.uint8)}
    with pytest.raises(MissingInputError, match="segmentation"):
        build_augmentation({"name": "mask_noise", "wrong_object": 0.1})(batch, torch.Generator())
    with pytest.raises(ValueError, match="max_shift"):
        MaskNoiseConfig(max_shift=2.5)


def test_the_envs_detector_noise_changes_masks_only_and_repeats_with_the_seed():
    from toyland.sim import make_env

    cams = ["front:rgb+mask", "wrist:rgb+mask"]
    clean = make_env({"task": "lift", "image_size": 32, "cameras": cams})
    noise = {"miss": 0.5, "shift": 0.5, "morph": 0.0, "fragment": 0.0}
    detected = [make_env({"task": "lift", "image_size": 32, "cameras": cams, "mask_noise": noise}) for _ in range(2)]
    empty, total = 0, 0
    for seed in range(3):
        a, _ = clean.reset(seed=seed)
        b, _ = detected[0].reset(seed=seed)
        c, _ = detected[1].reset(seed=seed)
        for step in range(6):
            assert np.array_equal(a["observation.images.front"], b["observation.images.front"])  # the same scene
            assert all(np.array_equal(b[k], c[k]) for k in b if k != "task")  # the same noise
            empty += int(b["observation.masks.front"].sum() == 0)
            total += 1
            action = np.zeros(clean.action_space.shape, np.float32)
            a, *_ = clean.step(action)
            b, *_ = detected[0].step(action)
            c, *_ = detected[1].step(action)
    assert 0.25 < empty / total < 0.75
    with pytest.raises(ValueError, match="no camera has the mask modality"):
        make_env({"task": "lift", "image_size": 32, "cameras": ["front"], "mask_noise": noise})
