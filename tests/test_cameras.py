"""Cameras: any resolution, metric depth, per-object segmentation, and a clear GL error."""

import numpy as np
import pytest

from toyland.sim import gl, make_env
from toyland.sim.cameras import CAMERA_NAMES
from toyland.sim.scene import FIRST_OBJECT_LABEL, LABEL_ARENA, TABLE_TOP_Z

ALL_MODALITIES = ["rgb", "depth", "segmentation", "mask"]


def backproject(model, data, camera: str, depth: np.ndarray) -> np.ndarray:
    """World points of every pixel from metric depth along the camera's -z axis."""
    h, w = depth.shape[:2]
    cam = model.camera(camera).id
    f = 0.5 * h / np.tan(np.deg2rad(model.cam_fovy[cam]) / 2)
    cols, rows = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    z = depth[..., 0]
    local = np.stack([(cols - w / 2) / f * z, -(rows - h / 2) / f * z, -z], axis=-1)
    return data.cam_xpos[cam] + local @ data.cam_xmat[cam].reshape(3, 3).T


@pytest.fixture(scope="module")
def env():
    env = make_env(cameras={c: {"height": 48, "width": 64, "modalities": ALL_MODALITIES} for c in CAMERA_NAMES})
    yield env
    env.close()


@pytest.mark.parametrize("camera", CAMERA_NAMES)
def test_depth_and_segmentation_agree_with_the_scene(env, camera):
    obs, info = env.reset(seed=4)
    scene = env.unwrapped.scene
    rgb = obs[f"observation.images.{camera}"]
    depth = obs[f"observation.depth.{camera}"]
    seg = obs[f"observation.segmentation.{camera}"]
    assert rgb.shape == (48, 64, 3) and depth.shape == (48, 64, 1) and seg.shape == (48, 64)
    assert set(np.unique(seg)) <= set(info["segmentation_labels"])
    points = backproject(scene.model, scene.data, scene.camera_name(camera), depth)
    # table and floor pixels lie at or below the table top
    arena = seg == LABEL_ARENA
    assert arena.any() and points[arena][:, 2].max() < TABLE_TOP_Z + 2e-3
    toy = seg == FIRST_OBJECT_LABEL
    if camera != "wrist":  # the fixed cameras always see the toy on the table
        assert toy.sum() >= 4
    if toy.any():  # the toy's pixels back-project onto the toy (within its bounding sphere)
        centre = scene.data.xpos[scene.object_bodies[0]]
        assert np.linalg.norm(points[toy] - centre, axis=-1).max() < 0.1
        # and the toy's pixels carry its colours, not the table's
        toy_rgb = rgb[toy].astype(float).mean(0)
        assert np.abs(toy_rgb - rgb[arena].astype(float).mean(0)).max() > 10


def test_mask_covers_the_instructed_target_only():
    env = make_env(task="language_lift", cameras=["front:rgb+segmentation+mask"], image_size=48)
    for seed in range(3):
        obs, info = env.reset(seed=seed)
        task = env.unwrapped.task
        assert task.colour_names[task.target_index] in obs["task"]
        seg, mask = obs["observation.segmentation.front"], obs["observation.masks.front"]
        assert "observation.depth.front" not in obs and mask.shape == (48, 48)
        assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
        np.testing.assert_array_equal(mask, seg == FIRST_OBJECT_LABEL + task.target_index)
        distractors = (seg >= FIRST_OBJECT_LABEL) & (seg != FIRST_OBJECT_LABEL + task.target_index)
        assert distractors.any() and not mask[distractors].any()  # visible distractors stay outside the mask
    env.close()


def test_object_masks_label_every_object_under_ids_shuffled_per_episode():
    """masks=objects: a class-agnostic detector's output. Each object's pixels carry one id of 1..n, the
    ids' order is the episode's own draw (so an id never marks the target), and the scene is unchanged."""
    kwargs = dict(task="language_lift", cameras=["front:rgb+segmentation+mask"], image_size=48, placement="exchangeable")
    env, plain = make_env(**kwargs, masks="objects"), make_env(**kwargs)
    target_ids = set()
    for seed in range(8):
        obs, _ = env.reset(seed=seed)
        seg, ids = obs["observation.segmentation.front"], obs["observation.masks.front"]
        n = len(env.unwrapped.scene.object_names)
        assert ids.dtype == np.uint8 and env.observation_space["observation.masks.front"].contains(ids)
        np.testing.assert_array_equal(ids > 0, seg >= FIRST_OBJECT_LABEL)
        drawn = [int(np.unique(ids[seg == FIRST_OBJECT_LABEL + k])[0]) for k in range(n) if (seg == FIRST_OBJECT_LABEL + k).any()]
        assert len(set(drawn)) == len(drawn) and set(drawn) <= set(range(1, n + 1))
        for k in range(n):  # one id per object, the one the env names
            assert set(np.unique(ids[seg == FIRST_OBJECT_LABEL + k]).tolist()) <= {env.unwrapped.object_mask_id(k)}
        assert env.unwrapped.target_mask_id == env.unwrapped.object_mask_id(env.unwrapped.task.target_index)
        target = ids[seg == FIRST_OBJECT_LABEL + env.unwrapped.task.target_index]
        target_ids.update(np.unique(target).tolist())
        other, _ = plain.reset(seed=seed)  # the same scene as with the target's mask
        np.testing.assert_array_equal(other["observation.images.front"], obs["observation.images.front"])
        again, _ = env.reset(seed=seed)
        np.testing.assert_array_equal(again["observation.masks.front"], ids)
    assert len(target_ids) > 1  # the target is not always the same id
    with pytest.raises(ValueError, match="masks='boxes'; valid: target, objects"):
        make_env(**kwargs, masks="boxes")
    with pytest.raises(ValueError, match="set masks=target or drop mask_noise"):
        make_env(**kwargs, masks="objects", mask_noise={"shift": 0.1})
    env.close(), plain.close()


def test_any_resolution_and_cameras_follow_the_gripper():
    env = make_env(cameras={"wrist": {"height": 40, "width": 72}, "side": {"height": 17, "width": 23}}, control_mode="ee_delta")
    obs, _ = env.reset(seed=0)
    assert obs["observation.images.wrist"].shape == (40, 72, 3)
    assert obs["observation.images.side"].shape == (17, 23, 3)
    before_wrist, before_side = obs["observation.images.wrist"], obs["observation.images.side"]
    for _ in range(4):
        obs, *_ = env.step(np.array([0, 0, 1, 0, 0, 1, -1], np.float32))
    # moving up and turning changes what the wrist camera sees far more than the side view
    wrist_change = np.abs(obs["observation.images.wrist"].astype(int) - before_wrist).mean()
    side_change = np.abs(obs["observation.images.side"].astype(int) - before_side).mean()
    assert wrist_change > 5 * side_change
    env.close()


def test_camera_shorthand_sets_sizes_and_modalities_and_names_a_bad_size():
    from toyland.sim.cameras import parse_cameras

    front, wrist, side = parse_cameras(["front", "wrist@96", "side@48x64:rgb+depth"], image_size=32)
    assert (front.height, front.width, front.modalities) == (32, 32, ("rgb",))
    assert (wrist.height, wrist.width) == (96, 96)
    assert (side.height, side.width, side.modalities) == (48, 64, ("rgb", "depth"))
    for bad in ("wrist@", "wrist@9x", "wrist@0", "wrist@1x2x3"):
        with pytest.raises(ValueError, match="size after '@'"):
            parse_cameras([bad])


def test_missing_gl_raises_an_error_naming_the_packages(monkeypatch):
    class BrokenContext:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("eglInitialize failed")

    monkeypatch.setattr(gl, "context_class", lambda: BrokenContext)
    env = make_env(cameras=["front"])
    with pytest.raises(gl.GLUnavailableError) as err:
        env.reset(seed=0)
    for package in ("libegl1", "libegl-mesa0", "libgl1-mesa-dri", "libosmesa6"):
        assert package in str(err.value)
    env.close()


def test_physics_runs_without_any_camera():
    env = make_env(cameras=[])
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"observation.state", "task"}
    env.close()


def test_rendering_works_when_mujoco_was_imported_before_toyland(tmp_path):
    import subprocess
    import sys

    code = (
        "import mujoco, gymnasium\n"
        "import toyland\n"
        "from toyland.sim import make_env\n"
        "obs, _ = make_env(cameras=['front'], image_size=16).reset(seed=0)\n"
        "print(obs['observation.images.front'].std() > 0)\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "True", proc.stderr[-2000:]


def test_an_env_renders_the_same_while_another_in_the_process_resets_mid_episode():
    cfg = {"task": "lift", "image_size": 32, "cameras": ["front:rgb+depth", "wrist:rgb+depth"]}
    actions = np.random.default_rng(0).uniform(-0.3, 0.3, (4, 7)).astype(np.float32)

    def run(interleave: bool):
        a = make_env(cfg)
        b = make_env(cfg) if interleave else None
        a.reset(seed=0)
        if b is not None:
            b.reset(seed=1)
        frames = []
        for i, action in enumerate(actions):
            obs = a.step(action)[0]  # `a` rendered last: its GL context is the current one
            frames.append(obs)
            if b is not None:
                b.reset(seed=2 + i)  # drops b's model-bound GL objects while a's context is current
        for env in (a, b):
            if env is not None:
                env.close()
        return frames

    alone, beside = run(False), run(True)
    for x, y in zip(alone, beside):
        for key in x:
            if key.startswith("observation.depth"):
                assert np.all(np.isfinite(y[key]))
            if key != "task":
                np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_a_kept_render_context_draws_what_a_new_one_does():
    """Between models with the same textures and meshes (the robot and arena, primitive toys) the
    renderer keeps its MjrContext; what it draws equals a freshly made context's, and a mesh object
    gets a context of its own."""
    cameras = ["front:rgb+depth+segmentation", "wrist"]
    kept = make_env(task="language_lift", cameras=cameras, image_size=48)
    fresh = make_env(task="language_lift", cameras=cameras, image_size=48)
    try:
        kept.reset(seed=0)
        context = kept.unwrapped.renderers._context
        for seed in (1, 2, 3):
            a, _ = kept.reset(seed=seed)
            fresh.unwrapped.renderers._release()  # a new context for every model
            b, _ = fresh.reset(seed=seed)
            assert kept.unwrapped.renderers._context is context
            for key in a:
                if key != "task":
                    np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    finally:
        kept.close()
        fresh.close()
    env = make_env(task="lift", toy_set="pybullet_household", cameras=["front"], image_size=48)
    try:
        env.reset(seed=0)
        first = env.unwrapped.renderers._context
        env.reset(seed=1)  # another mesh: other vertices
        assert env.unwrapped.renderers._context is not first
    finally:
        env.close()
