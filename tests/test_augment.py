"""The augment module: a contract every registered augmentation keeps, E0's viewpoint warp against
the camera_viewpoint factor's geometry, and the errors a bad config or batch gets."""

import math

import numpy as np
import pytest
import torch

from toyland.augment import AUGMENTATIONS, MissingInputError, build_augmentation, build_augmentations
from toyland.augment import camera_geometry as geo
from toyland.augment.viewpoint import HOLES_KEY, OFFSET_KEY, ViewpointWarp, ViewpointWarpConfig, nominal_camera

B, T, H, W = 4, 2, 24, 32
IMAGE, DEPTH = "observation.images.front", "observation.depth.front"
SEG, MASK = "observation.segmentation.front", "observation.masks.front"


def synthetic_batch(seed: int = 0, depth: bool = True) -> dict:
    """A batch in the BatchSampler's layout: a textured front image, a tilted table's depth, labels."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.linspace(0.6, 1.4, H)[:, None].expand(H, W)  # nearer at the bottom, like the table
    labels = torch.randint(0, 6, (B, T, H, W), generator=g, dtype=torch.uint8)
    batch = {
        IMAGE: torch.rand(B, T, 3, H, W, generator=g),
        SEG: labels,
        MASK: (labels == 3).to(torch.uint8),
        "observation.state": torch.randn(B, T, 5, generator=g),
        "task": ["lift"] * B,
    }
    if depth:
        batch[DEPTH] = (rows.flip(0) * (1 + 0.05 * torch.rand(B, T, H, W, generator=g))).float()
    return batch


def clone(batch: dict) -> dict:
    return {k: v.clone() if torch.is_tensor(v) else v for k, v in batch.items()}


def changed(a: dict, b: dict) -> list[str]:
    """The tensor keys whose values differ between two batches."""
    return [k for k in a if torch.is_tensor(a[k]) and k in b and not torch.equal(a[k], b[k])]


def run(name: str, batch: dict, seed: int = 0, **config):
    return build_augmentation({"name": name, **config})(batch, torch.Generator().manual_seed(seed))


# --- the contract every registered augmentation keeps ------------------------------------------


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_shapes_dtypes_kept_and_input_untouched(name):
    batch = synthetic_batch()
    before = clone(batch)
    out = run(name, batch)
    for key, value in before.items():
        assert torch.equal(batch[key], value) if torch.is_tensor(value) else batch[key] == value  # input untouched
        if torch.is_tensor(value):
            assert out[key].shape == value.shape and out[key].dtype == value.dtype and out[key].device == value.device
    assert changed(out, before)  # it did something (to images, or to masks)


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_deterministic_for_a_generator_seed(name):
    batch = synthetic_batch()
    a, b, c = run(name, batch, seed=3), run(name, batch, seed=3), run(name, batch, seed=4)
    for key in a:
        if torch.is_tensor(a[key]):
            assert torch.equal(a[key], b[key]), key
    assert changed(a, c)


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_identity_at_zero_strength(name):
    batch = synthetic_batch()
    out = run(name, batch, strength=0.0)
    torch.testing.assert_close(out[IMAGE], batch[IMAGE], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[DEPTH], batch[DEPTH], atol=1e-5, rtol=1e-5)
    assert torch.equal(out[SEG], batch[SEG]) and torch.equal(out[MASK], batch[MASK])


@pytest.fixture(scope="module")
def lift_store(lift_demos):
    from toyland.data.frames import FrameStore

    return FrameStore.load(lift_demos)


@pytest.fixture(scope="module")
def lift_segmentation_store(tmp_path_factory):
    """Two Lift episodes with the front camera's segmentation and target mask, for augmentations that need them."""
    from toyland.data.collect import collect
    from toyland.data.frames import FrameStore

    root = tmp_path_factory.mktemp("demos") / "lift_segmentation"
    env = {"task": "lift", "image_size": 48, "cameras": {"front": {"modalities": ["rgb", "segmentation", "mask"]}}}
    collect(env, root, episodes=2, seed=0, workers=1, progress=False)
    return FrameStore.load(root)


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_runs_on_a_collected_dataset_through_the_sampler_hook(name, request):
    from toyland.data.batches import BatchSampler, Source

    deltas = {IMAGE: [-0.05, 0.0], "action": [0.0, 0.05]}
    for key in build_augmentations([name]).batch_keys(["front"]):  # what the trainer adds for it
        deltas.setdefault(key, deltas[IMAGE])
    plain_keys = {IMAGE, "action"}
    lift_store = request.getfixturevalue("lift_store" if set(deltas) == plain_keys else "lift_segmentation_store")
    plain = BatchSampler([Source("lift", lift_store)], deltas, 6, seed=1)
    augmented = BatchSampler([Source("lift", lift_store)], deltas, 6, seed=1, transform=build_augmentations([name]))
    a, b, again = plain.sample(2), augmented.sample(2), augmented.sample(2)
    assert b[IMAGE].shape == a[IMAGE].shape == (6, 2, 3, 48, 48) and b[IMAGE].dtype == torch.float32
    assert torch.equal(a["action"], b["action"]) and torch.equal(a["index"], b["index"])  # only observations change
    assert changed(a, b) and all(k.startswith("observation.") or k.startswith("augment.") for k in changed(a, b))
    assert not changed(b, again)  # seeded by (seed, step)
    assert 0 <= float(b[IMAGE].min()) and float(b[IMAGE].max()) <= 1


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [{"name": "mask_noise"},
                                    {"name": "segment_recolour", "regions": ["arena", "distractors", "target"]}])
def test_augmentations_of_the_target_mask_refuse_object_id_maps(config):
    """Masks collected with env masks=objects hold every object's id and say nothing of the target."""
    batch = synthetic_batch()
    batch[MASK] = batch[SEG].clamp(max=5)  # ids 0..5
    with pytest.raises(ValueError, match="masks=objects"):
        build_augmentation(config)(batch, torch.Generator().manual_seed(0))


def test_unknown_name_lists_the_valid_ones():
    names = ", ".join(AUGMENTATIONS.names())
    assert "colour_jitter" in names and "viewpoint_warp" in names
    with pytest.raises(ValueError, match=f"unknown augmentation 'colour_jiter'; valid names: {names}$"):
        build_augmentations(["colour_jiter"])


def test_unknown_config_key_is_named():
    with pytest.raises(ValueError, match=r"augmentation 'viewpoint_warp': unknown keys \['max_yaw'\]"):
        build_augmentations([{"name": "viewpoint_warp", "max_yaw": 10}])
    with pytest.raises(ValueError, match="hue"):
        build_augmentations([{"name": "colour_jitter", "hue": 0.7}])


def test_missing_depth_names_the_collect_option_before_anything_runs():
    batch = synthetic_batch(depth=False)
    before = clone(batch)
    augmentations = build_augmentations(["colour_jitter", {"name": "viewpoint_warp", "depth_aware": True}])
    assert augmentations.batch_keys(["front"]) == [DEPTH, IMAGE]
    fix = r"no 'observation.depth.front': collect with env.cameras=\[front:rgb\+depth\]"
    with pytest.raises(MissingInputError, match=fix):
        augmentations(batch, torch.Generator().manual_seed(0))
    assert all(torch.equal(batch[k], v) for k, v in before.items() if torch.is_tensor(v))


def test_depth_missing_for_some_samples_of_a_mixture_is_refused():
    batch = synthetic_batch()
    batch[f"{DEPTH}_present"] = torch.tensor([True, False, True, True])
    with pytest.raises(MissingInputError, match="some samples come from a source without 'observation.depth.front'"):
        run("viewpoint_warp", batch, depth_aware=True)


def test_warp_range_beyond_what_the_camera_shows_is_refused_with_the_allowed_range():
    refusal = (r"beyond what camera 'front' can show \(fovy 50.0 deg.*allowed: max_yaw_deg <= \d+\.\d with "
               r"max_pitch_deg=20 or max_pitch_deg <= \d+\.\d with max_yaw_deg=80")
    with pytest.raises(ValueError, match=refusal):
        run("viewpoint_warp", synthetic_batch(), max_yaw_deg=80, max_pitch_deg=20)
    # the camera_viewpoint factor's ood_3 edges (azimuth 50, elevation 20) are within range
    run("viewpoint_warp", synthetic_batch(), max_yaw_deg=50, max_pitch_deg=20)
    # the range scales with the strength, and so does the refusal
    run("viewpoint_warp", synthetic_batch(), max_yaw_deg=80, max_pitch_deg=20, strength=0.5)


def test_a_camera_without_a_known_model_asks_for_it():
    batch = {"observation.images.wrist": torch.rand(2, 1, 3, H, W)}
    with pytest.raises(MissingInputError, match="batch has images of \\['wrist'\\]"):
        run("viewpoint_warp", batch)
    with pytest.raises(MissingInputError, match="intrinsics of camera 'wrist'.*fovy_deg"):
        run("viewpoint_warp", batch, cameras=["wrist"])
    with pytest.raises(ValueError, match="give depth_m"):
        run("viewpoint_warp", batch, cameras=["wrist"], fovy_deg=75.0)
    with pytest.raises(MissingInputError, match="pose of camera 'wrist'.*yaw_axis=camera"):
        run("viewpoint_warp", batch, cameras=["wrist"], fovy_deg=75.0, depth_m=0.15)
    out = run("viewpoint_warp", batch, cameras=["wrist"], fovy_deg=75.0, depth_m=0.15, yaw_axis="camera")
    assert out[OFFSET_KEY + "wrist"].shape == (2, 2)


# --- the viewpoint warp's geometry -----------------------------------------------------------------


@pytest.mark.parametrize("cam", ["front", "side"])
@pytest.mark.parametrize("azimuth, elevation", [(30.0, 0.0), (0.0, 15.0), (-40.0, -10.0), (50.0, 20.0)])
def test_the_orbit_is_the_camera_viewpoint_factors(cam, azimuth, elevation):
    """The warp's move of a world camera, put back in the world, is the factor's spherical_camera."""
    from toyland.sim.cameras import WORLD_CAMERAS
    from toyland.sim.factors import spherical_camera
    from toyland.sim.geometry import quat_to_mat

    pos, target, _ = WORLD_CAMERAS[cam]
    _, distance, cam_to_world = nominal_camera(cam)
    rot, centre = geo.orbit(torch.tensor([math.radians(azimuth)], dtype=torch.float64),
                            torch.tensor([math.radians(elevation)], dtype=torch.float64),
                            geo.world_up_in_camera(cam_to_world)[None], torch.tensor([distance], dtype=torch.float64))
    opencv_to_world = cam_to_world @ geo.MUJOCO_TO_OPENCV
    want_pos, want_quat = spherical_camera(pos, target, azimuth, elevation, 0.0, 0.0)
    np.testing.assert_allclose(np.add(pos, opencv_to_world @ centre[0].numpy()), want_pos, atol=1e-12)
    want_axes = quat_to_mat(want_quat) @ geo.MUJOCO_TO_OPENCV
    np.testing.assert_allclose(opencv_to_world @ rot[0].numpy(), want_axes, atol=1e-12)


def test_depth_aware_warp_lands_on_a_recorded_plane_exactly():
    """A tilted plane (the table) recorded in the depth map: three depth reads put every pixel where the
    moved camera's ray meets it (two where the plane's first guess reads on the image), where the
    fixed-depth plane does not."""
    K = geo.fovy_intrinsics(50.0, H, W)[None]
    normal, offset = torch.tensor([0.0, -0.8, -0.6], dtype=torch.float64), -0.7  # n . X = offset
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    rays = torch.einsum("ij,hwj->hwi", torch.linalg.inv(K[0]), torch.stack([u, v, torch.ones_like(u)], -1))
    depth = offset / (rays @ normal)  # z-depth of the plane at each source pixel
    d0 = torch.tensor([0.9], dtype=torch.float64)
    rot, centre = geo.orbit(torch.tensor([0.3]).double(), torch.tensor([0.15]).double(),
                            torch.tensor([[0.0, -0.83, -0.55]], dtype=torch.float64), d0)
    uv, ok = geo.source_pixels(K, rot, centre, H, W, d0, depth[None], iterations=3)
    two, _ = geo.source_pixels(K, rot, centre, H, W, d0, depth[None], iterations=2)
    fixed, _ = geo.source_pixels(K, rot, centre, H, W, d0)
    # truth: cut each target ray with the plane, project into the source camera
    target = rays @ rot[0].T  # the moved camera's pixel rays, in the source frame
    t = (offset - centre[0] @ normal) / (target @ normal)
    point = centre[0] + t[..., None] * target
    want = (point @ K[0].T)[..., :2] / point[..., 2:]
    assert ok.float().mean() > 0.5
    assert float((uv[0] - want)[ok[0]].abs().max()) < 1e-9
    assert float((two[0] - want)[ok[0]].abs().amax(-1).median()) < 1e-9
    assert float((fixed[0] - want)[ok[0]].abs().max()) > 1.0


def test_holes_are_zero_counted_and_offsets_exposed():
    batch = synthetic_batch()
    out = run("viewpoint_warp", batch, max_yaw_deg=40, max_pitch_deg=15)
    warp = ViewpointWarp(ViewpointWarpConfig(max_yaw_deg=40, max_pitch_deg=15))
    (_, model, _), = warp.camera_models(batch)
    yaw, pitch = out[OFFSET_KEY + "front"].double().unbind(-1)
    holes = ~warp.warp(clone(batch), "front", model, yaw, pitch).reshape(B, T, H, W)
    assert out[OFFSET_KEY + "front"].shape == (B, 2) and out[OFFSET_KEY + "front"].dtype == torch.float32
    assert (yaw.abs() <= math.radians(40)).all() and (pitch.abs() <= math.radians(15)).all()
    assert holes.any()
    torch.testing.assert_close(out[HOLES_KEY], holes.float().mean(dim=(1, 2, 3)))
    torch.testing.assert_close(out[HOLES_KEY + ".front"], out[HOLES_KEY])
    assert (out[IMAGE].permute(0, 1, 3, 4, 2)[holes] == 0).all()
    assert (out[SEG][holes] == 0).all() and (out[MASK][holes] == 0).all() and (out[DEPTH][holes] == 0).all()
    assert (out[DEPTH][~holes] > 0).all()
    assert set(out[SEG].unique().tolist()) <= set(batch[SEG].unique().tolist()) | {0}  # labels read, never blended


@pytest.mark.parametrize("depth_aware", [False, True])
def test_the_pivot_stays_at_the_principal_point_and_depth(depth_aware):
    h, w, d0 = 25, 33, 0.9013878  # odd sizes: the principal point is a pixel centre
    batch = {IMAGE: torch.rand(3, 1, 3, h, w), DEPTH: torch.full((3, 1, h, w), d0)}
    out = run("viewpoint_warp", batch, max_yaw_deg=40, max_pitch_deg=15, depth_aware=depth_aware)
    torch.testing.assert_close(out[IMAGE][..., 12, 16], batch[IMAGE][..., 12, 16], atol=1e-4, rtol=0)
    torch.testing.assert_close(out[DEPTH][..., 12, 16], batch[DEPTH][..., 12, 16], atol=1e-5, rtol=0)
    assert not torch.allclose(out[IMAGE], batch[IMAGE], atol=1e-2)


def test_every_history_frame_of_a_sample_gets_its_offset():
    batch = synthetic_batch()
    batch[IMAGE][:, 1] = batch[IMAGE][:, 0]
    out = run("viewpoint_warp", batch)
    assert torch.equal(out[IMAGE][:, 0], out[IMAGE][:, 1])
    assert not torch.equal(out[IMAGE][0, 0], out[IMAGE][1, 0])  # samples differ


def test_recorded_intrinsics_are_used_before_the_nominal_field_of_view():
    batch = synthetic_batch()
    nominal = run("viewpoint_warp", batch)
    batch["camera.intrinsics.front"] = geo.fovy_intrinsics(50.0, H, W).float()
    torch.testing.assert_close(run("viewpoint_warp", batch)[IMAGE], nominal[IMAGE], atol=1e-5, rtol=0)
    batch["camera.intrinsics.front"] = geo.fovy_intrinsics(40.0, H, W).float().expand(B, T, 3, 3)
    assert not torch.allclose(run("viewpoint_warp", batch)[IMAGE], nominal[IMAGE], atol=1e-3)


def test_depth_aware_warp_on_a_real_render():
    """A Lift frame with depth, segmentation and the target's mask, as the env renders them."""
    from toyland.sim import make_env

    env = make_env({"task": "lift", "image_size": 32, "cameras": ["front:rgb+depth+segmentation+mask"]})
    try:
        obs, _ = env.reset(seed=0)
    finally:
        env.close()
    batch = {IMAGE: torch.from_numpy(obs[IMAGE]).permute(2, 0, 1)[None, None].float().div(255).repeat(3, 1, 1, 1, 1),
             DEPTH: torch.from_numpy(obs[DEPTH][..., 0])[None, None].repeat(3, 1, 1, 1),
             SEG: torch.from_numpy(obs[SEG].astype(np.uint8))[None, None].repeat(3, 1, 1, 1),
             MASK: torch.from_numpy(obs[MASK])[None, None].repeat(3, 1, 1, 1)}
    out = run("viewpoint_warp", batch, depth_aware=True, max_yaw_deg=35, max_pitch_deg=15)
    assert out[MASK].max() <= 1 and set(out[SEG].unique().tolist()) <= set(batch[SEG].unique().tolist()) | {0}
    torch.testing.assert_close((out[DEPTH] == 0).float().mean(dim=(1, 2, 3)), out[HOLES_KEY])
    assert (0 < out[HOLES_KEY]).all() and (out[HOLES_KEY] < 0.6).all()


def test_a_camera_model_is_range_checked_once_and_a_bad_one_always_refused(monkeypatch):
    warp = build_augmentation({"name": "viewpoint_warp", "max_yaw_deg": 20})
    calls = []
    real = ViewpointWarp._check_range
    monkeypatch.setattr(ViewpointWarp, "_check_range", lambda self, *a: (calls.append(a[0]), real(self, *a))[1])
    batch = synthetic_batch()
    for seed in range(3):
        warp(batch, torch.Generator().manual_seed(seed))
    assert calls == ["front"]
    wide = build_augmentation({"name": "viewpoint_warp", "max_yaw_deg": 85, "max_pitch_deg": 60})
    for _ in range(2):
        with pytest.raises(ValueError, match="beyond what camera 'front' can show"):
            wide(batch, torch.Generator().manual_seed(0))
