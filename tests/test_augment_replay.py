"""Camera geometry and simulator state recorded at collection, and `toyland augment`'s re-rendered
counterfactual datasets (issue 25 items 2 and 4, item 5's colour swap)."""

import json
import shutil

import numpy as np
import pytest

from toyland.data.episode_log import read_episode_log
from toyland.data.frames import FrameStore
from toyland.data.replay import ReplayError
from toyland.data.rerender import Rerenderer, augment, draw_factor, is_complete
from toyland.sim.factors import FACTORS

ENV = {"task": "lift", "image_size": 32, "cameras": {"front": {"modalities": ["rgb", "depth", "segmentation", "mask"]},
                                                     "wrist": {}}}
RENDERED = ("observation.images.", "observation.depth.", "observation.segmentation.", "observation.masks.", "camera.")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Two kept Lift episodes at 32x32: front RGB, depth, segmentation and mask; wrist RGB."""
    from toyland.data.collect import collect

    root = tmp_path_factory.mktemp("augment") / "lift"
    collect(ENV, root, episodes=2, seed=0, workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def viewpoint(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("augment") / "viewpoint"
    augment(source, out, {"camera_viewpoint": "ood_1", "lighting": "ood_1"}, seed=0, workers=1, progress=False)
    return out


def arrays(root):
    return FrameStore.load(root).arrays


def test_collection_records_every_cameras_geometry_per_frame(source):
    from toyland.sim.cameras import WORLD_CAMERAS

    a = arrays(source)
    K = a["camera.intrinsics.front"]
    f = 32 / (2 * np.tan(np.deg2rad(50.0) / 2))
    np.testing.assert_allclose(K[0], [[f, 0, 15.5], [0, f, 15.5], [0, 0, 1]], rtol=1e-6)
    pose = a["camera.pose.front"]
    assert pose.shape[1:] == (4, 4) and pose.dtype == np.float32
    eye, target, _ = WORLD_CAMERAS["front"]
    np.testing.assert_allclose(pose[0, :3, 3], eye, atol=1e-6)  # no factors: the nominal camera
    view = -pose[0, :3, 2]  # MuJoCo's camera looks along its -z
    np.testing.assert_allclose(view, (np.subtract(target, eye)) / np.linalg.norm(np.subtract(target, eye)), atol=1e-6)
    wrist = a["camera.pose.wrist"]
    assert np.abs(wrist[1:, :3, 3] - wrist[:-1, :3, 3]).max() > 1e-3  # moves with the hand


def test_the_batch_sampler_carries_camera_geometry(source):
    from toyland.data.batches import BatchSampler, Source

    sampler = BatchSampler([Source("lift", FrameStore.load(source))],
                           {"camera.pose.front": [0.0], "camera.intrinsics.wrist": [0.0]}, batch_size=3)
    batch = sampler.sample(0)
    assert batch["camera.pose.front"].shape == (3, 1, 4, 4) and batch["camera.intrinsics.wrist"].shape == (3, 1, 3, 3)


def test_replay_at_the_episodes_own_factors_gives_its_recorded_frames_back(source, tmp_path):
    out = tmp_path / "same"
    summary = augment(source, out, {}, workers=1, progress=False)
    assert summary.complete and is_complete(out)
    a, b = arrays(source), arrays(out)
    assert a.keys() == b.keys()
    for key in a:
        if key.startswith("observation.images."):
            assert np.abs(a[key].astype(int) - b[key].astype(int)).max() <= 1, key  # within one grey level
        else:
            np.testing.assert_allclose(b[key], a[key], atol=1e-6, err_msg=key)


def test_new_factors_keep_states_and_actions_and_change_the_images(source, viewpoint):
    a, b = arrays(source), arrays(viewpoint)
    for key in a:
        if not key.startswith(RENDERED):
            np.testing.assert_array_equal(b[key], a[key], err_msg=key)
    assert np.abs(a["observation.images.front"].astype(int) - b["observation.images.front"].astype(int)).mean() > 5
    assert not np.array_equal(a["observation.segmentation.front"], b["observation.segmentation.front"])
    assert np.abs(a["camera.pose.front"] - b["camera.pose.front"]).max() > 0.05  # the recorded pose moved
    np.testing.assert_array_equal(a["camera.pose.wrist"], b["camera.pose.wrist"])  # the factor moves world cameras
    # lighting changes the wrist view (same pose), so only its pixels differ
    assert not np.array_equal(a["observation.images.wrist"], b["observation.images.wrist"])


def test_the_new_factor_values_are_in_the_episode_metadata(source, viewpoint):
    src, log = read_episode_log(source), read_episode_log(viewpoint)
    assert log.config["augment"]["factors"] == {"camera_viewpoint": "ood_1", "lighting": "ood_1"}
    assert log.config["env"]["factors"]["camera_viewpoint"] == "ood_1"
    for k, (old, new) in enumerate(zip(src.episodes, log.episodes)):
        values = new["factors"]["camera_viewpoint"]
        assert values == draw_factor("camera_viewpoint", "ood_1", old["episode_seed"], 0)
        assert FACTORS.get("camera_viewpoint").axes["azimuth"].contains("ood_1", values["azimuth"])
        assert new["augment"] == {"source_episode": k, "factors": {n: new["factors"][n] for n in ("camera_viewpoint", "lighting")}}
        assert {key: old[key] for key in ("seed", "episode_seed", "toys", "instruction")} == \
            {key: new[key] for key in ("seed", "episode_seed", "toys", "instruction")}


def test_the_augment_seed_draws_the_new_values():
    a, b = draw_factor("camera_viewpoint", "ood_2", 123, 0), draw_factor("camera_viewpoint", "ood_2", 123, 1)
    assert a == draw_factor("camera_viewpoint", "ood_2", 123, 0) and a != b
    assert a != draw_factor("camera_viewpoint", "ood_2", 124, 0)  # per episode


@pytest.mark.parametrize("factors, named", [
    ({"object_physics": "ood_1"}, "object_physics"),
    ({"distractors": "train", "lighting": "ood_1"}, "distractors"),
    ({"target_appearance": "ood_1"}, "size"),
    ({"target_appearance": {"hue": 0.2, "size": 0.2}}, "size"),
])
def test_a_factor_that_is_not_appearance_is_refused_before_anything_is_written(source, tmp_path, factors, named):
    with pytest.raises(ValueError, match=named) as err:
        augment(source, tmp_path / "out", factors, workers=1, progress=False)
    if named != "size":
        assert "camera_viewpoint" in str(err.value) and "lighting" in str(err.value)  # the allowed ones
    assert not (tmp_path / "out").exists()


def test_a_dataset_without_recorded_simulator_state_is_refused_with_the_fix(source, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(source, old)
    shutil.rmtree(old / "sim")
    with pytest.raises(ReplayError, match=r"episode 0 .*no recorded simulator state.*recollect"):
        augment(old, tmp_path / "out", {"lighting": "ood_1"}, workers=1, progress=False)
    assert not (tmp_path / "out").exists()


def test_a_start_that_differs_from_the_recorded_one_is_refused_naming_the_episode(source, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(source, bad)
    path = bad / "sim" / "episode_000001.npz"
    with np.load(path) as z:
        sim = {k: z[k] for k in z.files}
    nq = sim["render_qpos"].shape[1]
    sim["state"][0, 1 + nq - 7] += 0.01  # the toy's recorded start 1 cm off (state: time, qpos, ...; toy's x)
    np.savez_compressed(path, **sim)
    with pytest.raises(ReplayError, match=r"episode 1 of .*differs from the recorded first frame"):
        augment(bad, tmp_path / "out", {}, workers=1, progress=False)
    assert not is_complete(tmp_path / "out")


def test_workers_and_an_interruption_do_not_change_the_output(source, viewpoint, tmp_path, monkeypatch):
    two = tmp_path / "two"
    augment(source, two, {"camera_viewpoint": "ood_1", "lighting": "ood_1"}, seed=0, workers=2, progress=False)
    a, b = arrays(viewpoint), arrays(two)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert read_episode_log(viewpoint).episodes == read_episode_log(two).episodes

    call = Rerenderer.__call__

    def crash_at_second(self, k):
        if k == 1:
            raise KeyboardInterrupt  # a crash after the first episode
        return call(self, k)

    resumed = tmp_path / "resumed"
    monkeypatch.setattr(Rerenderer, "__call__", crash_at_second)
    with pytest.raises(KeyboardInterrupt):
        augment(source, resumed, {"camera_viewpoint": "ood_1", "lighting": "ood_1"}, workers=1, progress=False)
    assert not is_complete(resumed) and len(read_episode_log(resumed).episodes) == 1
    monkeypatch.setattr(Rerenderer, "__call__", call)
    augment(source, resumed, {"camera_viewpoint": "ood_1", "lighting": "ood_1"}, workers=1, progress=False)
    assert is_complete(resumed)
    c = arrays(resumed)
    for key in a:
        np.testing.assert_array_equal(a[key], c[key], err_msg=key)


def test_swap_from_gives_each_episode_the_object_colours_of_the_others(source, tmp_path):
    from toyland.data.collect import collect

    other = tmp_path / "other"
    collect(ENV, other, episodes=2, seed=5, workers=1, progress=False)
    out = tmp_path / "swapped"
    augment(source, out, {}, swap_from=other, workers=1, progress=False)
    src, theirs, log = read_episode_log(source), read_episode_log(other), read_episode_log(out)
    a, b = arrays(source), arrays(out)
    for key in ("observation.state", "action", "observation.segmentation.front"):
        np.testing.assert_array_equal(a[key], b[key])  # same states, same geometry: only colours change
    for k, (mine, new) in enumerate(zip(src.episodes, log.episodes)):
        their_parts = theirs.episodes[k]["toys"][0]["parts"]
        new_parts = new["toys"][0]["parts"]
        assert [p["rgba"] for p in new_parts] == [their_parts[i % len(their_parts)]["rgba"] for i in range(len(new_parts))]
        assert [p["size"] for p in new_parts] == [p["size"] for p in mine["toys"][0]["parts"]]  # the same toy
        assert new["swap"] == {"from": str(other), "episode": k}
    target = a["observation.masks.front"].astype(bool)
    diff = np.abs(a["observation.images.front"].astype(int) - b["observation.images.front"].astype(int)).sum(-1)
    assert diff[target].mean() > 20 and diff[~target].mean() < diff[target].mean() / 5
    json.dumps(log.episodes)


def test_a_replay_gives_every_objects_mask_back_under_the_same_ids(tmp_path):
    """env masks=objects: the ids are drawn from the episode's own stream, so a re-render keeps each
    object's id (the VLA's object tokens stay the same objects), at its own factors and under new ones."""
    from toyland.data.collect import collect

    env = {"task": "language_lift", "image_size": 32, "cameras": ["front:rgb+segmentation+mask"], "masks": "objects",
           "placement": "exchangeable"}
    collect(env, tmp_path / "src", episodes=1, seed=0, workers=1, progress=False)
    augment(tmp_path / "src", tmp_path / "same", {}, workers=1, progress=False)
    augment(tmp_path / "src", tmp_path / "moved", {"camera_viewpoint": "ood_1"}, workers=1, progress=False)
    a, same, moved = arrays(tmp_path / "src"), arrays(tmp_path / "same"), arrays(tmp_path / "moved")
    ids, labels = a["observation.masks.front"], a["observation.segmentation.front"]
    assert ids.max() == 3
    np.testing.assert_array_equal(same["observation.masks.front"], ids)
    id_of = {int(label): int(np.unique(ids[labels == label])[0]) for label in np.unique(labels) if label >= 3}
    for label, object_id in id_of.items():
        seen = moved["observation.masks.front"][moved["observation.segmentation.front"] == label]
        assert seen.size and set(np.unique(seen).tolist()) == {object_id}
