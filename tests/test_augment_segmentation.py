"""segment_recolour: which pixels change (regions from the recorded segmentation, the target from its
mask), the instruction's colour word following the target's new colour, shading kept, textures, and
the errors a bad config or batch gets."""

import numpy as np
import pytest
import torch

from toyland.augment import MissingInputError, build_augmentation
from toyland.augment.segmentation import TARGET_KEY
from toyland.sim.scene import FIRST_OBJECT_LABEL, LABEL_ARENA, LABEL_BACKGROUND, LABEL_ROBOT
from toyland.sim.tasks.base import COLOURS

IMAGE, SEG, MASK = "observation.images.front", "observation.segmentation.front", "observation.masks.front"
ALL = ["background", "arena", "robot", "distractors", "target"]


def render_batch(task: str, seeds) -> tuple[dict, list]:
    """Frames [B, 1, ...] as the sampler gives them, and each episode's scene geom names per pixel."""
    import mujoco

    from toyland.sim import make_env

    env = make_env({"task": task, "image_size": 48, "cameras": ["front:rgb+segmentation+mask"]})
    frames, geoms = [], []
    try:
        for seed in seeds:
            obs, _ = env.reset(seed=seed)
            frames.append(obs)
            scene = env.unwrapped.scene
            ids = env.unwrapped.renderers.render(scene.data, "front", 48, 48, "segmentation")
            ids = np.where(ids[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM), ids[..., 0], -1)
            geoms.append(np.array([scene.model.geom(i).name if i >= 0 else "" for i in ids.ravel()]).reshape(48, 48))
    finally:
        env.close()
    batch = {IMAGE: torch.from_numpy(np.stack([f[IMAGE] for f in frames])).permute(0, 3, 1, 2)[:, None].float() / 255,
             SEG: torch.from_numpy(np.stack([f[SEG] for f in frames]).astype(np.uint8))[:, None],
             MASK: torch.from_numpy(np.stack([f[MASK] for f in frames]))[:, None],
             "task": [f["task"] for f in frames]}
    return batch, geoms


@pytest.fixture(scope="module")
def language_lift():
    return render_batch("language_lift", range(4))


@pytest.fixture(scope="module")
def lift():
    return render_batch("lift", range(2))


def run(batch, seed=0, **config):
    return build_augmentation({"name": "segment_recolour", **config})(batch, torch.Generator().manual_seed(seed))


def pixels(images, where):
    """[N, 3] colours of the pixels of ``where`` [B, T, H, W] in images [B, T, 3, H, W]."""
    return images.permute(0, 1, 3, 4, 2)[where]


def direction(rgb):
    return rgb / rgb.norm(dim=-1, keepdim=True)


def test_kept_regions_are_untouched_and_recoloured_ones_change(language_lift):
    batch, _ = language_lift
    labels, mask = batch[SEG].long(), batch[MASK].bool()
    out = run(batch, regions=["background", "arena", "distractors"])
    for kept in (labels == LABEL_ROBOT, mask):  # the robot and the target
        assert kept.any() and torch.equal(pixels(out[IMAGE], kept), pixels(batch[IMAGE], kept))
    for changed in (labels == LABEL_ARENA, labels == LABEL_BACKGROUND, (labels >= FIRST_OBJECT_LABEL) & ~mask):
        for b in range(len(labels)):  # every sample's mean colour moved (strength 1: every sample recoloured)
            before, after = pixels(batch[IMAGE][b:b + 1], changed[b:b + 1]), pixels(out[IMAGE][b:b + 1], changed[b:b + 1])
            assert (before.mean(0) - after.mean(0)).abs().max() > 0.02
    assert out["task"] == batch["task"] and not out[TARGET_KEY].any()


def test_the_target_gets_another_named_colour_and_the_instruction_says_it(language_lift):
    batch, _ = language_lift
    labels, mask = batch[SEG].long(), batch[MASK].bool()
    out = run(batch, seed=1, regions=["distractors", "target"], keep_shading=False)
    assert out[TARGET_KEY].all()
    for b, (before, after) in enumerate(zip(batch["task"], out["task"])):
        old = next(c for c in COLOURS if f" {c} " in f" {before} ")
        new = next(c for c in COLOURS if f" {c} " in f" {after} ")
        assert new != old and after == before.replace(old, new)
        # the target's pixels show the new colour (a palette colour times a brightness: same direction) ...
        target = pixels(out[IMAGE][b:b + 1], mask[b:b + 1])
        want = direction(torch.tensor(COLOURS[new][:3]))
        torch.testing.assert_close(direction(target), want.expand_as(target), atol=1e-5, rtol=0)
        # ... and no distractor shows it, so the instruction still singles out the target
        distractors = (labels[b:b + 1] >= FIRST_OBJECT_LABEL) & ~mask[b:b + 1]
        assert distractors.any()
        assert (direction(pixels(out[IMAGE][b:b + 1], distractors)) @ want).max() < 0.999
    assert torch.equal(pixels(out[IMAGE], labels < FIRST_OBJECT_LABEL), pixels(batch[IMAGE], labels < FIRST_OBJECT_LABEL))


def test_a_recoloured_named_target_recolours_its_distractors_too(language_lift):
    batch, _ = language_lift
    out = run(batch, seed=2, regions=["distractors", "target"], strength=0.5)
    labels, mask = batch[SEG].long(), batch[MASK].bool()
    distractors = (labels >= FIRST_OBJECT_LABEL) & ~mask
    for b in range(len(labels)):
        if bool(out[TARGET_KEY][b]):
            assert not torch.equal(pixels(out[IMAGE][b:b + 1], distractors[b:b + 1]),
                                   pixels(batch[IMAGE][b:b + 1], distractors[b:b + 1]))
        else:
            assert out["task"][b] == batch["task"][b]
            assert torch.equal(pixels(out[IMAGE][b:b + 1], mask[b:b + 1]), pixels(batch[IMAGE][b:b + 1], mask[b:b + 1]))


def test_a_target_without_a_colour_word_changes_colour_and_keeps_its_instruction(lift):
    batch, _ = lift
    assert not any(c in task.split() for task in batch["task"] for c in COLOURS)
    out = run(batch, regions=["distractors", "target"])
    assert out["task"] == batch["task"] and out[TARGET_KEY].all()
    mask = batch[MASK].bool()
    assert (pixels(out[IMAGE], mask).mean(0) - pixels(batch[IMAGE], mask).mean(0)).abs().max() > 0.02


def test_table_and_floor_are_one_arena_label_recoloured_together(lift):
    """toyland's scenes (and every dataset recorded so far) label the table and the floor 'arena' alike."""
    batch, geoms = lift
    out = run(batch, regions=["arena"], textures=["plain"], keep_shading=False)
    for b, names in enumerate(geoms):
        table, floor = torch.from_numpy(names == "table"), torch.from_numpy(names == "floor")
        assert table.any() and floor.any()
        assert (batch[SEG][b, 0][table] == LABEL_ARENA).all() and (batch[SEG][b, 0][floor] == LABEL_ARENA).all()
        colours = out[IMAGE][b, 0].permute(1, 2, 0)
        assert torch.unique(colours[table | floor], dim=0).shape[0] == 1  # one new colour on both
        assert not torch.allclose(colours[table][0], batch[IMAGE][b, 0].permute(1, 2, 0)[table].mean(0), atol=0.02)
    with pytest.raises(ValueError, match="the table and the floor share the segmentation label 'arena'"):
        run(batch, regions=["table", "background"])


def test_keep_shading_keeps_each_pixels_luminance_relative_to_its_region(lift):
    batch, _ = lift
    out = run(batch, regions=["arena"], textures=["plain"])
    arena = batch[SEG].long() == LABEL_ARENA
    luma = torch.tensor([0.299, 0.587, 0.114])
    for b in range(len(arena)):
        before, after = pixels(batch[IMAGE][b:b + 1], arena[b:b + 1]), pixels(out[IMAGE][b:b + 1], arena[b:b + 1])
        unclipped = (after < 1).all(-1) & (after > 0).all(-1)
        ratio = after[unclipped] / (before[unclipped] @ luma)[:, None]  # one albedo over the region's mean
        torch.testing.assert_close(ratio, ratio[:1].expand_as(ratio), atol=1e-4, rtol=1e-4)
        assert (before @ luma).std() > 0.01  # there was shading to keep


def test_checker_texture_has_two_colours_shared_by_history_frames_and_cameras():
    g = torch.Generator().manual_seed(0)
    labels = torch.full((3, 2, 40, 40), LABEL_ARENA, dtype=torch.uint8)
    labels[:, :, 10:20, 10:20] = FIRST_OBJECT_LABEL + 1
    batch = {IMAGE: torch.rand(3, 2, 3, 40, 40, generator=g), SEG: labels, MASK: torch.zeros_like(labels),
             "observation.images.side": torch.rand(3, 2, 3, 40, 40, generator=g),
             "observation.segmentation.side": labels.clone(), "observation.masks.side": torch.zeros_like(labels)}
    out = run(batch, regions=["arena", "distractors"], textures=["checker"], keep_shading=False)
    arena = labels[0, 0] == LABEL_ARENA
    for b in range(3):
        assert torch.unique(out[IMAGE][b, 0].permute(1, 2, 0)[arena], dim=0).shape[0] == 2
        assert torch.equal(out[IMAGE][b, 0], out[IMAGE][b, 1])  # history frames share the sample's draw
        # an object has one colour in every camera
        torch.testing.assert_close(out[IMAGE][b, 0, :, 15, 15], out["observation.images.side"][b, 0, :, 15, 15])


def test_strength_is_the_share_of_samples_recoloured():
    g = torch.Generator().manual_seed(0)
    labels = torch.full((200, 1, 8, 8), LABEL_ARENA, dtype=torch.uint8)
    batch = {IMAGE: torch.rand(200, 1, 3, 8, 8, generator=g), SEG: labels}
    changed = (run(batch, regions=["arena"], strength=0.3)[IMAGE] != batch[IMAGE]).flatten(1).any(1).float().mean()
    assert 0.2 < float(changed) < 0.4


def test_objects_need_the_target_mask_and_say_how_to_collect_it(lift):
    batch, _ = lift
    no_mask = {k: v for k, v in batch.items() if k != MASK}
    run(no_mask)  # surfaces need segmentation only
    with pytest.raises(MissingInputError, match=r"no 'observation.masks.front': collect with env.cameras=\[front:rgb\+mask\]"):
        run(no_mask, regions=["arena", "distractors"])
    with pytest.raises(MissingInputError, match=r"collect with env.cameras=\[front:rgb\+segmentation\]"):
        run({IMAGE: batch[IMAGE]})


@pytest.mark.parametrize("regions, message", [
    (["target"], "'target' needs 'distractors' too"),
    (["arena", "sky"], "give distinct names out of background, arena, robot, distractors, target"),
    (["arena", "arena"], "give distinct names"),
])
def test_bad_regions_are_refused(regions, message):
    with pytest.raises(ValueError, match=message):
        build_augmentation({"name": "segment_recolour", "regions": regions})


def test_an_instruction_naming_two_colours_is_refused_before_anything_changes(language_lift):
    batch, _ = language_lift
    batch = {**batch, "task": ["put the red ball in the blue bowl"] + batch["task"][1:]}
    with pytest.raises(ValueError, match="names several colours \\['blue', 'red'\\]"):
        run(batch, regions=ALL)
    run(batch, regions=["arena"])  # the instruction does not matter when no object is recoloured


@pytest.mark.parametrize("regions", [["distractors"], ["distractors", "target"]])
def test_distractors_never_take_the_colour_the_instruction_names(regions):
    """Over many samples, with the target kept or recoloured: no distractor shows the named colour."""
    n, names = 300, list(COLOURS)
    g = torch.Generator().manual_seed(0)
    labels = torch.full((n, 1, 6, 6), LABEL_ARENA, dtype=torch.uint8)
    for k in range(4):  # object k + 3 in column k; object 3 the target
        labels[:, :, :, k] = FIRST_OBJECT_LABEL + k
    words = [names[int(i)] for i in torch.randint(len(names), (n,), generator=g)]
    batch = {IMAGE: torch.rand(n, 1, 3, 6, 6, generator=g), SEG: labels,
             MASK: (labels == FIRST_OBJECT_LABEL).to(torch.uint8), "task": [f"lift the {w} toy" for w in words]}
    out = run(batch, regions=regions, keep_shading=False)
    palette = direction(torch.tensor([COLOURS[c][:3] for c in names]))
    for b in range(n):
        named = out["task"][b].split()[2]
        assert named in COLOURS and (named != words[b]) == ("target" in regions)
        shown = palette @ direction(out[IMAGE][b, 0, :, 0, 1:4].T).T  # [palette, distractor]
        assert shown.max(0).values.min() > 0.9999  # each distractor shows a palette colour ...
        assert (shown.argmax(0) != names.index(named)).all()  # ... never the named one
