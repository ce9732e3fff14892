"""Collection into LeRobotDataset, the decode-once loader, co-training mixtures and data stats."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from toyland.data.batches import BatchSampler, Phase, Source
from toyland.data.collect import collect
from toyland.data.episode_log import read_episode_log
from toyland.data.frames import DatasetError, FrameStore
from toyland.data.mixture import build_sampler
from toyland.data.stats import dataset_stats, mutual_information
from toyland.data.writer import WriteLock
from toyland.sim import make_env
from toyland.sim.scenarios import scenario_env_config
from toyland.sim.tasks import TASKS

SMALL = {"image_size": 48}
SEG_CAMERAS = {"front": {"modalities": ["rgb", "segmentation"]}}
CHUNK = [i / 20 for i in range(8)]


def scenario_env(name: str, split: str = "train") -> dict:
    return {**scenario_env_config(name, split), **SMALL}


@pytest.fixture(scope="module")
def factors_dataset(tmp_path_factory):
    """Three kept episodes of the `factors` scenario (every factor drawn), with segmentation."""
    root = tmp_path_factory.mktemp("data") / "factors"
    env_cfg = {**scenario_env("factors"), "cameras": SEG_CAMERAS}
    summary = collect(env_cfg, root, episodes=3, seed=0, workers=1, checkpoint_every=2, progress=False)
    return root, env_cfg, summary


@pytest.fixture(scope="module")
def lift_dataset(lift_demos):
    return lift_demos


def test_collected_dataset_round_trips_through_lerobot(factors_dataset):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root, env_cfg, summary = factors_dataset
    log = read_episode_log(root)
    ds = LeRobotDataset("toyland/factors", root=root)
    assert ds.num_episodes == summary.kept == 3 == len(log.episodes)
    assert ds.num_frames == sum(e["length"] for e in log.episodes)
    assert all(e["success"] for e in log.episodes)  # keep=successful
    tried = sorted([e["seed"] for e in log.episodes] + [d["seed"] for d in log.discarded])
    assert tried == list(range(len(tried)))  # every seed tried once, in order
    # frames carry their episode's instruction as the lerobot task
    lengths = np.cumsum([0] + [e["length"] for e in log.episodes])
    for k, episode in enumerate(log.episodes):
        first, last = ds[int(lengths[k])], ds[int(lengths[k + 1]) - 1]
        assert first["task"] == last["task"] == episode["instruction"]
        assert int(first["episode_index"]) == k
    # factor values, toys and the first observation are those of the env reset with that seed
    env = make_env(env_cfg)
    episode = log.episodes[1]
    obs, info = env.reset(seed=episode["seed"])
    assert json.loads(json.dumps(info["factors"])) == episode["factors"]
    assert json.loads(json.dumps(info["toys"])) == episode["toys"]
    assert set(episode["factors"]) == set(env_cfg["factors"])
    frame = ds[int(lengths[1])]
    np.testing.assert_allclose(frame["observation.state"].numpy(), obs["observation.state"], atol=1e-6)
    image = (frame["observation.images.front"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(image, obs["observation.images.front"])  # PNG is lossless
    np.testing.assert_array_equal(frame["observation.segmentation.front"].numpy(), obs["observation.segmentation.front"])
    env.close()


def test_workers_do_not_change_the_dataset(tmp_path, lift_dataset):
    collect({"task": "lift", **SMALL}, tmp_path / "two", episodes=3, seed=0, workers=2, progress=False)
    one, two = FrameStore.load(lift_dataset), FrameStore.load(tmp_path / "two")
    for key in ("action", "observation.state", "observation.images.front"):
        np.testing.assert_array_equal(one.arrays[key], two.arrays[key])
    assert one.tasks == two.tasks


def test_interrupted_collection_keeps_its_episodes_and_resumes_without_duplicates(tmp_path, lift_dataset):
    root = tmp_path / "resumed"
    env = {"task": "lift", "image_size": 48}
    cmd = [sys.executable, "-m", "toyland.cli", "collect", "episodes=3", "workers=1", "checkpoint_every=1",
           f"output_dir={root}", "env.image_size=48", f"hydra.run.dir={tmp_path / 'hydra'}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline:  # interrupt once the first episode is durable
        log = read_episode_log(root) if (root / "meta" / "info.json").exists() else None
        if log is not None and log.episodes or proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=240)
    kept = len(read_episode_log(root).episodes)
    assert 1 <= kept < 3, err  # stopped early, finished episodes kept
    assert proc.returncode == 130 and "resume" in err
    summary = collect(env, root, episodes=3, seed=0, workers=1, progress=False)
    assert summary.kept == 3 and summary.kept_now == 3 - kept
    resumed, fresh = FrameStore.load(root), FrameStore.load(lift_dataset)
    assert [e["seed"] for e in resumed.log.episodes] == [e["seed"] for e in fresh.log.episodes]
    np.testing.assert_array_equal(resumed.episode_index, fresh.episode_index)
    np.testing.assert_array_equal(resumed.arrays["action"], fresh.arrays["action"])
    np.testing.assert_array_equal(resumed.arrays["observation.images.front"], fresh.arrays["observation.images.front"])


def test_resume_refuses_a_different_config(tmp_path, lift_dataset):
    with pytest.raises(ValueError, match="post_success_steps"):
        collect({"task": "lift", **SMALL}, lift_dataset, episodes=4, post_success_steps=3, workers=1, progress=False)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not a LeRobotDataset"):
        collect({"task": "lift", **SMALL}, tmp_path / "junk", episodes=1, workers=1, progress=False)
    # a mode the experts cannot act in is refused before anything is written or any worker starts
    with pytest.raises(ValueError, match="control_mode=ee_pose, ee_delta or lerobot_joint"):
        collect({"task": "lift", **SMALL, "control_mode": "joint_position"}, tmp_path / "joints", episodes=1, workers=2,
                progress=False)
    assert not (tmp_path / "joints").exists()
    WriteLock(tmp_path / "junk").release()  # a refused open let go of its lock (else this would wait forever)


def test_a_second_writer_of_a_collection_waits_for_the_first_and_names_it(tmp_path, caplog):
    root = tmp_path / "demos"
    first, done = WriteLock(root), threading.Event()

    def second():
        WriteLock(root).release()
        done.set()

    threading.Thread(target=second, daemon=True).start()
    assert not done.wait(1.0)  # the first holds it: rolling back now would remove files it is writing
    assert f"{root} is being written by process {os.getpid()}" in caplog.text
    first.release()
    assert done.wait(10)


def test_video_storage_decodes_to_the_same_frames(tmp_path, lift_dataset):
    collect({"task": "lift", **SMALL}, tmp_path / "video", episodes=1, seed=0, workers=1, video=True, progress=False)
    video, png = FrameStore.load(tmp_path / "video"), FrameStore.load(lift_dataset)
    n = len(video)
    assert video.features["observation.images.front"]["dtype"] == "video"
    diff = np.abs(video.arrays["observation.images.front"].astype(int) - png.arrays["observation.images.front"][:n].astype(int))
    assert diff.mean() < 6  # lossy codec, same pictures


def test_frame_store_cache_memory_maps_the_same_arrays(tmp_path, lift_dataset):
    first = FrameStore.load(lift_dataset, cache_dir=tmp_path / "cache")
    second = FrameStore.load(lift_dataset, cache_dir=tmp_path / "cache")
    assert isinstance(second.arrays["observation.images.front"], np.memmap)
    np.testing.assert_array_equal(first.arrays["observation.images.front"], second.arrays["observation.images.front"])


def test_frame_cache_removes_temps_of_dead_decoders_and_keeps_live_ones(tmp_path, lift_dataset):
    FrameStore.load(lift_dataset, cache_dir=tmp_path / "cache")
    folder = next((tmp_path / "cache").iterdir())
    key = "observation.images.front"
    (folder / f"{key}.npy").unlink()  # decoded again on the next load
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    stale, live = folder / f".{key}.{dead}.tmp.npy", folder / f".{key}.{os.getppid()}.tmp.npy"
    stale.write_bytes(b"x" * 1000)
    live.write_bytes(b"x" * 1000)
    FrameStore.load(lift_dataset, cache_dir=tmp_path / "cache")
    assert not stale.exists() and live.exists()
    assert (folder / f"{key}.npy").is_file()


# --- batches ---------------------------------------------------------------------------------


def test_history_and_chunks_are_padded_at_episode_edges(lift_dataset):
    store = FrameStore.load(lift_dataset)
    sampler = BatchSampler([Source("lift", store)], {"observation.state": [-0.1, -0.05, 0.0], "action": CHUNK}, 4)
    start, end = int(store.episode_start[0]), int(store.episode_end[0])
    batch = sampler._assemble(np.zeros(3, dtype=int), np.array([start, start + 1, end - 2]))
    state, action = batch["observation.state"].numpy(), batch["action"].numpy()
    assert batch["observation.state_is_pad"].tolist()[:2] == [[True, True, False], [True, False, False]]
    np.testing.assert_array_equal(state[0, 0], store.arrays["observation.state"][start])  # padded with the first frame
    np.testing.assert_array_equal(state[1, 1], store.arrays["observation.state"][start])
    assert batch["action_is_pad"][2].tolist() == [False, False] + [True] * 6
    np.testing.assert_array_equal(action[2, 1:], np.repeat(store.arrays["action"][end - 1][None], 7, 0))
    np.testing.assert_array_equal(action[0], store.arrays["action"][start : start + 8])


def test_batches_are_a_function_of_seed_and_step(lift_dataset):
    sampler = build_sampler({"sources": [str(lift_dataset)]}, {"observation.images.front": [0.0], "action": CHUNK}, 8, seed=3)
    a, b = sampler.sample(5), sampler.sample(5)
    assert torch.equal(a["observation.images.front"], b["observation.images.front"]) and torch.equal(a["index"], b["index"])
    assert not torch.equal(a["index"], sampler.sample(6)["index"])
    images = a["observation.images.front"]
    assert images.shape == (8, 1, 3, 48, 48) and images.dtype == torch.float32 and 0 <= images.min() and images.max() <= 1
    streamed = [batch["index"] for batch, _ in zip(sampler.batches(start_step=5), range(3))]
    assert all(torch.equal(x, sampler.sample(5 + i)["index"]) for i, x in enumerate(streamed))


def test_prefetch_thread_runs_no_torch_kernel_and_streams_the_sampled_batches(lift_dataset, monkeypatch):
    # A torch kernel on the prefetch thread starts a second OpenMP team that slows the training step
    # (benchmarks/data_loading.py); image conversion and the transform belong on the consuming thread.
    seen = []

    def transform(batch, generator):
        seen.append((threading.current_thread().name, batch["observation.images.front"].dtype))
        batch["noise"] = torch.rand(2, generator=generator)
        return batch

    sampler = build_sampler({"sources": [str(lift_dataset)]}, {"observation.images.front": [0.0], "action": CHUNK}, 4,
                            seed=1, transform=transform)
    drawn, _ = sampler._draw(0)
    assert drawn["observation.images.front"].dtype == torch.uint8
    kernel_threads = []
    original = torch.Tensor.float
    monkeypatch.setattr(torch.Tensor, "float", lambda self, *a, **k: kernel_threads.append(
        threading.current_thread().name) or original(self, *a, **k))
    streamed = [b for b, _ in zip(sampler.batches(start_step=2), range(3))]
    monkeypatch.undo()
    assert kernel_threads and set(kernel_threads) == {threading.main_thread().name}
    assert all(name == threading.main_thread().name and dtype == torch.float32 for name, dtype in seen)
    for i, batch in enumerate(streamed):
        again = sampler.sample(2 + i)
        assert torch.equal(batch["observation.images.front"], again["observation.images.front"])
        assert torch.equal(batch["noise"], again["noise"])  # the transform's seed travels with the batch

def test_mixture_samples_each_source_at_its_weight(lift_dataset, factors_dataset):
    cfg = {"sources": [{"name": "lift", "path": str(lift_dataset), "weight": 4},
                       {"name": "factors", "path": str(factors_dataset[0]), "weight": 1}]}
    sampler = build_sampler(cfg, {"action": CHUNK}, 64, seed=0)
    picks = torch.cat([sampler.sample(step)["source"] for step in range(100)])
    share = (picks == 0).float().mean().item()
    # 6400 draws at p = 0.8: standard deviation 0.005; four of them is the tolerance
    assert abs(share - 0.8) < 0.02


def test_mixture_phases_switch_weights(lift_dataset, factors_dataset):
    cfg = {"sources": [{"name": "lift", "path": str(lift_dataset)}, {"name": "factors", "path": str(factors_dataset[0])}],
           "phases": [{"steps": 10, "weights": {"lift": 1.0}}, {"weights": {"lift": 0.0, "factors": 1.0}}]}
    sampler = build_sampler(cfg, {"action": CHUNK}, 32, seed=0)
    assert sampler.sample(9)["source"].eq(0).all() and sampler.sample(10)["source"].eq(1).all()


def test_mixture_masks_missing_cameras_and_state_dimensions(lift_dataset):
    full = FrameStore.load(lift_dataset)
    arm_stats = {k: (v[:9] if k != "count" else v) for k, v in full.stats["observation.state"].items()}
    arm_only = dataclasses.replace(full, arrays={"observation.state": full.arrays["observation.state"][:, :9].copy(),
                                                 "action": full.arrays["action"]},
                                   stats={**full.stats, "observation.state": arm_stats})
    deltas = {"observation.images.front": [0.0], "observation.state": [0.0], "action": CHUNK}
    sampler = BatchSampler([Source("full", full), Source("arm", arm_only)], deltas, 64, phases=[Phase({"full": 1, "arm": 1})])
    batch = sampler.sample(0)
    from_arm = batch["source"] == 1
    assert 0 < from_arm.sum() < 64
    assert torch.equal(batch["observation.images.front_present"], ~from_arm)
    assert batch["observation.images.front"][from_arm].abs().sum() == 0
    mask = batch["observation.state_dim_mask"]
    assert mask[from_arm][:, 9:].any() == False and mask[from_arm][:, :9].all() and mask[~from_arm].all()  # noqa: E712
    assert batch["observation.state"][from_arm][..., 9:].abs().sum() == 0
    assert "action_dim_mask" not in batch and "action_present" not in batch  # nothing differs
    stats = sampler.stats()["observation.state"]
    assert stats["mean"].shape == (15,)
    np.testing.assert_allclose(stats["mean"][9:], full.stats["observation.state"]["mean"][9:], rtol=1e-5)


def test_bad_data_input_is_named(tmp_path, lift_dataset):
    with pytest.raises(DatasetError, match="does not exist"):
        FrameStore.load(tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    with pytest.raises(DatasetError, match="not a LeRobotDataset"):
        FrameStore.load(tmp_path / "plain")
    with pytest.raises(DatasetError, match="observation.images.wrist"):
        build_sampler({"sources": [str(lift_dataset)]}, {"observation.images.wrist": [0.0]}, 4)
    with pytest.raises(ValueError, match="wieghts"):
        build_sampler({"sources": [str(lift_dataset)], "wieghts": 1}, {"action": CHUNK}, 4)
    for weight, message in ((-1.0, "non-negative"), (0.0, "sum to zero"), (float("nan"), "finite")):
        with pytest.raises(DatasetError, match=message):
            build_sampler({"sources": [{"path": str(lift_dataset), "weight": weight}]}, {"action": CHUNK}, 4)
    with pytest.raises(DatasetError, match="unknown sources"):
        build_sampler({"sources": [str(lift_dataset)], "phases": [{"weights": {"real": 1.0}}]}, {"action": CHUNK}, 4)
    with pytest.raises(DatasetError, match="multiples of 1/20"):
        build_sampler({"sources": [str(lift_dataset)]}, {"action": [0.0, 0.03]}, 4)


# --- data stats ------------------------------------------------------------------------------


def fake_collection(root, records):
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps({"total_episodes": len(records), "total_frames": 10 * len(records)}))
    log = {"version": 1, "config": {"seed": 0}, "episodes": records, "discarded": []}
    (root / "meta" / "toyland_episodes.json").write_text(json.dumps(log))
    return root


def shortcut_records(rng, n, correlated: bool):
    records = []
    for i in range(n):
        target = i % 2
        side = target if correlated else int(rng.integers(2))
        records.append({"seed": i, "instruction": "x", "colours": ["red", "blue"], "target_index": target,
                        "factors": {"camera_viewpoint": {"azimuth": [-35.0, 35.0][side], "elevation": float(rng.uniform(-3, 3)),
                                                         "radius": 0.0, "roll": 0.0, "fov": 0.0}}})
    return records


def test_data_stats_flags_a_factor_that_predicts_the_task(tmp_path, rng):
    correlated = fake_collection(tmp_path / "correlated", shortcut_records(rng, 60, True))
    independent = fake_collection(tmp_path / "independent", shortcut_records(rng, 60, False))
    report = dataset_stats([correlated, independent])
    cue = report["datasets"]["correlated"]["task_vs_factor"]["camera_viewpoint.azimuth"]
    assert cue["normalized_mi"] == pytest.approx(1.0) and cue["p_value"] < 0.01
    free = report["datasets"]["independent"]["task_vs_factor"]["camera_viewpoint.azimuth"]
    assert free["excess_bits"] < 0.1 and free["p_value"] > 0.01
    assert report["pairwise_js"]["correlated | independent"]["camera_viewpoint.elevation"] < 0.2


def test_data_stats_sees_disjoint_sub_datasets(tmp_path, rng):
    left = [r for r in shortcut_records(rng, 40, True) if r["target_index"] == 0]
    right = [r for r in shortcut_records(rng, 40, True) if r["target_index"] == 1]
    report = dataset_stats([fake_collection(tmp_path / "left", left), fake_collection(tmp_path / "right", right)])
    assert report["pairwise_js"]["left | right"]["camera_viewpoint.azimuth"] == pytest.approx(1.0)
    assert report["dataset_vs_factor"]["camera_viewpoint.azimuth"]["mi_bits"] == pytest.approx(1.0)
    # each half alone has one task, so nothing within it predicts the task; pooled, the viewpoint does
    assert report["task_vs_factor"]["camera_viewpoint.azimuth"]["normalized_mi"] == pytest.approx(1.0)


def test_mutual_information_of_independent_labels_is_near_its_null(rng):
    a, b = rng.integers(4, size=400).tolist(), rng.integers(4, size=400).tolist()
    mi = mutual_information(a, b)
    assert mi["mi_bits"] < 0.05 and mi["p_value"] > 0.01
    assert mutual_information(a, a)["mi_bits"] == pytest.approx(2.0, abs=0.05)


def test_data_stats_on_a_collected_dataset_lists_every_drawn_factor(factors_dataset):
    root, env_cfg, _ = factors_dataset
    report = dataset_stats([root])
    axes = report["datasets"][root.name]["diversity"]
    assert {key.split(".")[0] for key in axes} == set(env_cfg["factors"])
    assert all(0 < d["coverage"] <= 1 for d in axes.values())


def test_data_stats_cli_names_a_bad_path(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "toyland.cli", "data", "stats", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_mixture_refuses_actions_that_mean_different_things(lift_dataset):
    full = FrameStore.load(lift_dataset)
    assert full.features["action"]["names"][:3] == ["x", "y", "z"]  # collected in the default ee_pose mode
    deltas_named = {**full.features, "action": {**full.features["action"],
                                                 "names": ["dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"]}}
    other = dataclasses.replace(full, features=deltas_named)
    keys = {"observation.state": [0.0], "action": CHUNK}
    with pytest.raises(DatasetError, match="control_mode"):
        BatchSampler([Source("pose", full), Source("delta", other)], keys, 8)
    BatchSampler([Source("pose", full), Source("again", full)], keys, 8)  # same meaning mixes


def test_dart_noise_perturbs_executed_arm_actions_and_records_the_experts(monkeypatch):
    from toyland.data.collect import EpisodeRecorder

    def run(std):
        recorder = EpisodeRecorder({"task": "lift", "cameras": []}, 10, action_noise=std)
        executed, step = [], recorder.env.step
        monkeypatch.setattr(recorder.env, "step", lambda a: (executed.append(np.array(a)), step(a))[1])
        episode = recorder(3)
        return np.stack([f["action"] for f in episode.frames]), np.stack(executed)

    recorded, executed = run(0.02)
    again, _ = run(0.02)
    np.testing.assert_array_equal(recorded, again)  # the seed fixes the noise
    noise = executed - recorded
    assert np.all(noise[:, -1] == 0)  # the gripper is never perturbed
    assert 0.015 < noise[:, :-1].std() < 0.025
    clean, clean_executed = run(0.0)
    np.testing.assert_array_equal(clean, clean_executed)
    # the recorded labels are the expert's answers to the perturbed states: corrections, not a replay
    assert not np.allclose(recorded[:20], clean[:20])
    with pytest.raises(ValueError, match="action_noise"):
        collect({"task": "lift", **SMALL}, "unused", episodes=1, action_noise=2.0, progress=False)


def test_correlated_noise_holds_its_offset_and_gated_noise_acts_only_where_the_expert_allows(monkeypatch):
    from toyland.data.collect import ActionNoise, EpisodeRecorder

    draws = ActionNoise(0.05, correlation=0.9).draws(np.random.default_rng(0), (4000,))
    a, b = next(draws), next(draws)
    assert 0.85 < np.corrcoef(a, b)[0, 1] < 0.95  # one step to the next: the offset is held
    assert 0.045 < b.std() < 0.055  # the stationary std is the std asked for

    noise = ActionNoise(0.04, correlation=0.9, entries=("x", "y"), gated=True)
    recorder = EpisodeRecorder({"task": "lift", "cameras": []}, 10, action_noise=noise)
    executed, phases, misses, step = [], [], [], recorder.env.step

    def record_step(a):
        tcp, _ = recorder.env.unwrapped.scene.tcp_pose()
        misses.append(np.linalg.norm(tcp[:2] - recorder.actor.expert.grasp.pos[:2]))
        executed.append(np.array(a))
        phases.append(recorder.actor.expert.phase)
        return step(a)

    monkeypatch.setattr(recorder.env, "step", record_step)
    episode = recorder(1)
    offset = np.stack(executed)[: len(episode.frames)] - np.stack([f["action"] for f in episode.frames])
    phases = np.array(phases[: len(episode.frames)])
    assert np.all(offset[:, 2:] == 0)  # only x and y
    assert np.all(offset[phases != "descend"] == 0)  # the Lift expert takes it over its descent only
    assert np.abs(offset[phases == "descend", :2]).max() > 0.01
    descent = np.flatnonzero(phases == "descend")
    # the tool was knocked off to the side on the way down, and the expert put it right before closing
    assert max(misses[i] for i in descent) > 0.01 and misses[descent[-1] + 1] < 0.006
    assert episode.success
    assert recorder.env.unwrapped.action_names[:2] == ["x", "y"]
    with pytest.raises(ValueError, match="noise_entries"):
        EpisodeRecorder({"task": "lift", "cameras": []}, 10, action_noise=ActionNoise(0.02, entries=("gripper",)))
    with pytest.raises(ValueError, match="noise_correlation"):
        ActionNoise(0.02, correlation=1.0)


@pytest.mark.parametrize("task", TASKS.names())
def test_demo_frames_record_the_grasp_the_expert_is_executing(task):
    from toyland.data.collect import EpisodeRecorder
    from toyland.sim.annotations import GRASP_ANNOTATION

    recorder = EpisodeRecorder({"task": task, "cameras": []}, 10)
    names = recorder.env.unwrapped.state_names
    tcp = [names.index(f"tcp.{axis}") for axis in "xyz"]
    episode = recorder(0)
    assert episode.success
    if GRASP_ANNOTATION not in recorder.actor.expert.annotation_features():  # a skill without a grasp (push)
        assert all(GRASP_ANNOTATION not in f for f in episode.frames)
        return
    grasps = np.stack([f[GRASP_ANNOTATION] for f in episode.frames])
    states = np.stack([f["observation.state"] for f in episode.frames])
    closing = int(np.argmax([f["action"][-1] > 0 for f in episode.frames]))  # the first closed-jaw command
    assert closing > 0
    # where the jaw closes is where the label said it would, from the first frame on (no re-plan here)
    np.testing.assert_allclose(states[closing, tcp], grasps[closing, :3], atol=0.012)
    np.testing.assert_allclose(grasps[0], grasps[closing], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(grasps[:, 3:], axis=1), 1.0, atol=1e-5)  # (cos, sin) of twice the yaw


@pytest.mark.parametrize("task", TASKS.names())
def test_demo_frames_record_the_phase_the_expert_is_in(task, monkeypatch):
    from toyland.data.collect import EpisodeRecorder
    from toyland.sim.annotations import PHASE_ANNOTATION, PHASES

    recorder = EpisodeRecorder({"task": task, "cameras": []}, 10)
    seen = []
    act = recorder.actor.act
    monkeypatch.setattr(recorder.actor, "act", lambda obs: (a := act(obs), seen.append(recorder.actor.expert.phase))[0])
    episode = recorder(0)
    expert = recorder.actor.expert
    assert episode.success
    assert expert.PHASES and set(expert.PHASES) <= set(PHASES) and set(seen) <= set(expert.PHASES)
    assert expert.annotation_features()[PHASE_ANNOTATION]["names"] == list(PHASES)
    labels = np.stack([f[PHASE_ANNOTATION] for f in episode.frames])
    assert np.all(labels.sum(1) == 1) and set(np.unique(labels)) == {0.0, 1.0}  # one phase per frame
    # each frame's label is the phase the expert was in when it chose that frame's action
    assert [PHASES[i] for i in labels.argmax(1)] == seen[: len(episode.frames)]
    assert seen[0] == "approach" and len(set(seen)) >= 3  # the skill passes through phases


# --- local datasets, damage and repair (issue 31) ----------------------------------------------


def copy_dataset(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_local_dataset_is_read_without_the_network_and_broken_metadata_is_named(tmp_path, lift_dataset,
                                                                                network_attempts):
    import huggingface_hub.constants
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from toyland.data.frames import hub_offline

    assert FrameStore.load(lift_dataset).num_episodes == 3
    assert not network_attempts
    broken = copy_dataset(lift_dataset, tmp_path / "no_tasks")
    (broken / "meta" / "tasks.parquet").unlink()
    # lerobot on its own goes looking for the dataset on the hub ...
    with pytest.raises(Exception):
        LeRobotDataset("toyland/no_tasks", root=broken)
    assert network_attempts
    network_attempts.clear()
    # ... toyland names the file and says what to do, offline
    with pytest.raises(DatasetError, match=r"meta/tasks.parquet is missing.*--repair.*delete"):
        FrameStore.load(broken)
    torn = copy_dataset(lift_dataset, tmp_path / "torn")
    episodes = torn / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    episodes.write_bytes(episodes.read_bytes()[:-100])  # a footer cut off by a kill
    with pytest.raises(DatasetError, match=r"meta/episodes/chunk-000/file-000.parquet is not a complete parquet"):
        FrameStore.load(torn)
    (torn / "meta" / "info.json").write_text('{"total_episodes": 3, "total_fr')
    with pytest.raises(DatasetError, match=r"meta/info.json is not a readable lerobot info file"):
        FrameStore.load(torn)
    assert not network_attempts
    with hub_offline():  # the switch is on inside and off again after
        assert huggingface_hub.constants.HF_HUB_OFFLINE and os.environ["HF_HUB_OFFLINE"] == "1"
    assert not huggingface_hub.constants.HF_HUB_OFFLINE and "HF_HUB_OFFLINE" not in os.environ


def test_data_check_finds_what_a_kill_leaves_and_repair_rolls_it_back(tmp_path, lift_dataset, capsys,
                                                                      network_attempts):
    from toyland.cli import main
    from toyland.data.check import check_dataset, repair_dataset

    assert check_dataset(lift_dataset).ok
    root = copy_dataset(lift_dataset, tmp_path / "damaged")
    frames = sorted((root / "data").glob("*/*.parquet"))[0]
    (root / "data" / "chunk-000" / "file-009.parquet").write_bytes(frames.read_bytes()[:1000])  # no footer
    (root / "meta" / "info.json").write_text((root / "meta" / "info.json").read_text()[:50])  # torn in place
    (root / "meta" / "stats.json").unlink()
    (root / "images" / "observation.images.front" / "episode-000003").mkdir(parents=True)
    (root / "images" / "observation.images.front" / "episode-000003" / "frame-000000.png").write_bytes(b"png")
    problems = "\n".join(check_dataset(root).problems)
    assert "info.json is not a readable" in problems and "file-009.parquet" in problems
    with pytest.raises(SystemExit) as stop:
        main(["data", "check", str(root)])
    assert stop.value.code == 1 and "--repair" in capsys.readouterr().out
    writing = WriteLock(root)  # a collection still writing here: repairing now would remove its new files
    with pytest.raises(DatasetError, match=f"being written by process {os.getpid()}"):
        repair_dataset(root)
    writing.release()
    with pytest.raises(SystemExit) as stop:
        main(["data", "check", str(root), "--repair"])
    out = capsys.readouterr().out
    assert stop.value.code == 0, out
    for line in ("removed data/chunk-000/file-009.parquet", "restored meta/info.json", "restored meta/stats.json",
                 "removed images/", "ok, 3 episodes"):
        assert line in out, out
    repaired, original = FrameStore.load(root), FrameStore.load(lift_dataset)
    for key in ("action", "observation.images.front"):
        np.testing.assert_array_equal(repaired.arrays[key], original.arrays[key])
    # a file the checkpoint made durable, changed: no rollback can recover it, and it says so
    frames.write_bytes(frames.read_bytes()[:-10])
    with pytest.raises(DatasetError, match=r"file-000.parquet has .* bytes but checkpoint .* delete .* collect it again"):
        repair_dataset(root)
    assert not network_attempts


def test_collection_from_before_checkpoint_records_is_adopted_on_resume(tmp_path, lift_dataset):
    import shutil

    root = copy_dataset(lift_dataset, tmp_path / "old")
    log = json.loads((root / "meta" / "toyland_episodes.json").read_text())
    log.update(version=1)
    del log["checkpoint"]
    (root / "meta" / "toyland_episodes.json").write_text(json.dumps(log))
    shutil.rmtree(root / "meta" / "toyland_checkpoint")
    summary = collect({"task": "lift", **SMALL}, root, episodes=3, seed=0, workers=1, progress=False)
    assert summary.kept == 3 and summary.kept_now == 0
    record = read_episode_log(root).checkpoint
    assert record is not None and record.episodes == 3


def test_resuming_a_collection_of_an_older_toyland_says_so(tmp_path, monkeypatch):
    from toyland.data import collect as collect_module
    from toyland.data.collect import collect

    root = tmp_path / "d"
    env = {"task": "lift", "image_size": 32}
    collect(env, root, episodes=1, seed=0, workers=1, progress=False)
    real = collect_module.env_features

    def newer(*args, **kwargs):  # a toyland that records one feature more than the one that started the dataset
        return {**real(*args, **kwargs), "camera.newer.front": {"dtype": "float32", "shape": (3,), "names": None}}

    monkeypatch.setattr(collect_module, "env_features", newer)
    with pytest.raises(ValueError, match=r"camera.newer.front.*older toyland.*collect into a new folder"):
        collect(env, root, episodes=2, seed=0, workers=1, progress=False)
