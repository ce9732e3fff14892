"""The evaluation harness: statistics, paired cells, determinism, shortcut rate, resume, reports."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from toyland.eval.actors import ExpertActor
from toyland.eval.harness import cell_env, evaluate_suite
from toyland.eval.records import read_records
from toyland.eval.stats import mcnemar_exact, paired_bootstrap, paired_comparison, paired_ratio, wilson_interval
from toyland.eval.suite import build_suite
from toyland.sim import make_env
from toyland.sim.scenarios import scenario_env_config
from toyland.sim.toy_sets import get_toy_set

SMALL = {"task": "lift", "image_size": 32}
ID_ONLY = {"base": {}}


@pytest.mark.parametrize("k,n,lo,hi", [(0, 10, 0.0, 0.2775), (5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1.0),
                                       (81, 100, 0.7222, 0.8749)])
def test_wilson_interval_matches_published_values(k, n, lo, hi):
    assert wilson_interval(k, n) == pytest.approx((lo, hi), abs=1e-4)


def test_mcnemar_exact_p_values():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact(9, 1) == pytest.approx(2 * 11 / 1024)
    assert mcnemar_exact(3, 3) == 1.0


def test_paired_statistics_see_the_pairing(rng):
    a = rng.random(200) < 0.8
    b = a.copy()
    b[:20] = ~b[:20]  # differs on 20 episodes only
    lo, hi = paired_bootstrap(a, b)
    assert lo <= a.mean() - b.mean() <= hi and hi - lo < 0.2
    cmp = paired_comparison(dict(enumerate(a)), dict(enumerate(a)))
    assert cmp["difference"] == 0 and cmp["mcnemar_p"] == 1.0


def test_the_ratio_to_in_distribution_success_is_paired(rng):
    id_ = dict(enumerate(rng.random(200) < 0.8))
    half = {k: v and k % 2 == 0 for k, v in id_.items()}  # keeps every other success
    out = paired_ratio(half, id_)
    assert out["n"] == 200 and out["ratio"] == pytest.approx(sum(half.values()) / sum(id_.values()))
    assert out["ci95"][0] <= out["ratio"] <= out["ci95"][1] and out["ci95"][1] - out["ci95"][0] < 0.25
    assert paired_ratio(id_, id_)["ci95"] == [1.0, 1.0]  # the pairing: identical outcomes, no spread
    assert paired_ratio(id_, {k: False for k in id_})["ratio"] is None  # nothing to transfer
    assert paired_ratio({1: True}, {2: True})["n"] == 0 and paired_ratio({1: True}, {2: True})["ratio"] is None


def test_suite_cells_and_bad_suites():
    suite = build_suite({"factors": ["lighting"], "levels": ["ood_1", "ood_3"], "toy_sets": ["heldout"],
                         "combinations": [{"factors": ["lighting", "camera_viewpoint"], "level": "ood_2"}]})
    assert suite.names() == ["id", "lighting@ood_1", "lighting@ood_3", "toy_set@heldout", "lighting+camera_viewpoint@ood_2"]
    assert suite.cell("lighting@ood_3").env["factors"] == {"lighting": "ood_3"}
    with pytest.raises(KeyError, match="lighting"):
        build_suite({"factors": ["lightning"]})
    with pytest.raises(ValueError, match="ood_9"):
        build_suite({"factors": ["lighting"], "levels": ["ood_9"]})
    with pytest.raises(KeyError, match="heldout"):
        build_suite({"toy_sets": ["held_out"]})
    with pytest.raises(ValueError, match="factorz"):
        build_suite({"factorz": ["lighting"]})


def test_a_run_on_its_first_toys_is_scored_on_every_object_of_the_sets_its_cells_move_to():
    env_cfg = {**SMALL, "num_toys": 4}  # trained on the first 4 training toys (the toy-count scaling arms)
    suite = build_suite({"toy_sets": ["heldout", "pybullet_household"],
                         "cells": {"household_first_2": {"toy_set": "pybullet_household", "num_toys": 2}}})
    sizes = {}
    for cell in suite.cells:
        env = make_env(cell_env(env_cfg, cell.env), cameras=[])
        sizes[cell.name] = env.unwrapped.toy_set.size
        env.close()
    assert sizes["id"] == 4 and sizes["household_first_2"] == 2
    assert sizes["toy_set@heldout"] == get_toy_set("heldout").size > 4
    assert sizes["toy_set@pybullet_household"] == get_toy_set("pybullet_household").size > 4
    with pytest.raises(ValueError, match="num_toys"):
        get_toy_set("pybullet_household", num_toys=10**6)


def test_cells_share_toys_and_poses_episode_by_episode():
    suite = build_suite({"factors": ["lighting"], "levels": ["ood_2"]})
    infos = []
    for cell in suite.cells:
        env = make_env({**SMALL, **cell.env})
        obs, info = env.reset(seed=1_000_003)
        infos.append((obs["observation.state"], info))
        env.close()
    (state_a, a), (state_b, b) = infos
    assert a["toys"] == b["toys"] and a["factors"].get("lighting") != b["factors"]["lighting"]
    np.testing.assert_allclose(state_a, state_b)


def strip(records):
    return sorted(((r["cell"], r["seed"]), json.dumps(r, sort_keys=True)) for r in records)


def test_identical_seeds_give_identical_outcomes_and_workers_do_not_change_them(tmp_path):
    kwargs = dict(episodes=3, videos=False, progress=False)
    one = evaluate_suite("expert", SMALL, {"factors": ["lighting"], "levels": ["ood_3"]}, tmp_path / "a", workers=1, **kwargs)
    evaluate_suite("expert", SMALL, {"factors": ["lighting"], "levels": ["ood_3"]}, tmp_path / "b", workers=2, **kwargs)
    assert strip(read_records(tmp_path / "a")) == strip(read_records(tmp_path / "b"))
    assert one["cells"]["id"]["episodes"] == 3 and "lighting@ood_3" in one["gaps"]


def test_cue_follower_takes_the_shortcut_and_the_expert_does_not(tmp_path):
    env = {**scenario_env_config("viewpoint_shortcut", "eval"), "image_size": 32}
    rates = {}
    for actor in ("expert", "cue_follower"):
        results = evaluate_suite(actor, env, ID_ONLY, tmp_path / actor, episodes=8, workers=1, videos=False, progress=False)
        rates[actor] = results["cells"]["id"]
    # the scripted grasp itself fails now and then, on the cue's object as on the instructed one
    assert rates["cue_follower"]["shortcut_rate"] >= 5 / 8 and rates["cue_follower"]["success_rate"] <= 1 / 8
    assert rates["expert"]["shortcut_rate"] <= 1 / 8 and rates["expert"]["success_rate"] >= 5 / 8


def test_a_killed_and_resumed_evaluation_gives_the_records_of_an_uninterrupted_one(tmp_path):
    cmd = [sys.executable, "-m", "toyland.cli", "eval", "actor=expert", "suite=id_only", "episodes=6", "workers=1",
           "videos=false", "env.image_size=32", f"output_dir={tmp_path / 'killed'}", f"hydra.run.dir={tmp_path / 'h'}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if len(read_records(tmp_path / "killed")) >= 2:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    partial = len(read_records(tmp_path / "killed"))
    assert 2 <= partial < 6
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    reference = evaluate_suite("expert", {**SMALL, "embodiment": "panda"}, ID_ONLY, tmp_path / "straight", episodes=6,
                               workers=1, videos=False, progress=False)
    assert reference["cells"]["id"]["episodes"] == 6
    assert strip(read_records(tmp_path / "killed")) == strip(read_records(tmp_path / "straight"))
    assert (tmp_path / "killed" / "report.md").is_file() and "success" in proc.stdout


def test_a_worker_killed_mid_evaluation_costs_its_chunk_only_and_ray_gives_the_same_records(tmp_path):
    import threading

    import psutil

    straight = evaluate_suite("expert", SMALL, ID_ONLY, tmp_path / "straight", episodes=15, workers=1, videos=False,
                              progress=False)
    killed = []

    def kill_a_worker():  # once the first chunk is written, SIGKILL a worker busy with another
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            workers = [p for p in psutil.Process().children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]
            if workers and len(read_records(tmp_path / "killed")) >= 5:
                workers[0].send_signal(signal.SIGKILL)
                killed.append(workers[0].pid)
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_a_worker)
    watcher.start()
    with pytest.warns(RuntimeWarning, match="worker process died"):
        results = evaluate_suite("expert", SMALL, ID_ONLY, tmp_path / "killed", episodes=15, workers=2, videos=False,
                                 progress=False)
    watcher.join()
    assert killed and results["cells"]["id"]["episodes"] == 15
    assert strip(read_records(tmp_path / "killed")) == strip(read_records(tmp_path / "straight"))  # each episode once
    pytest.importorskip("ray")
    evaluate_suite("expert", SMALL, ID_ONLY, tmp_path / "ray", episodes=15, workers=2, videos=False, progress=False,
                   launcher="ray")
    assert strip(read_records(tmp_path / "ray")) == strip(read_records(tmp_path / "straight"))
    assert straight["cells"]["id"]["episodes"] == 15


def tiny_checkpoint(folder, camera: str, size: int) -> str:
    """An untrained diffusion policy (8-step chunks, 4 executed) saved as a checkpoint."""
    import torch

    from toyland.policies import make_policy
    from toyland.policies.checkpoint import save_policy
    from toyland.policies.features import PolicyFeatures

    features = PolicyFeatures(cameras={f"observation.images.{camera}": (3, size, size)}, state_dim=15, action_dim=7, fps=20)
    stats = {"observation.state": {"min": -np.ones(15), "max": np.ones(15)}, "action": {"min": -np.ones(7), "max": np.ones(7)}}
    torch.manual_seed(0)
    policy = make_policy({"name": "diffusion", "channels": [8, 16], "down_dims": [16, 32], "horizon": 8, "n_action_steps": 4},
                         features, stats)
    save_policy(policy, folder)
    return str(folder)


def test_envs_stepped_in_lockstep_give_each_episode_its_own_record(tmp_path):
    suite = {"factors": ["lighting"], "levels": ["ood_3"]}
    kwargs = dict(episodes=4, videos=False, progress=False)
    # a scripted actor acts the same beside others: records identical to one env at a time
    one = evaluate_suite("expert", SMALL, suite, tmp_path / "e1", workers=1, **kwargs)
    evaluate_suite("expert", SMALL, suite, tmp_path / "e3", workers=1, envs_per_worker=3, **kwargs)
    assert strip(read_records(tmp_path / "e1")) == strip(read_records(tmp_path / "e3"))
    assert one["cells"]["id"]["successes"] >= 3
    # a policy: batched records are the same for any number of workers
    ckpt = tiny_checkpoint(tmp_path / "ckpt", "front", 32)
    env = {**SMALL, "max_episode_steps": 30}
    for workers in (1, 2):
        evaluate_suite(ckpt, env, ID_ONLY, tmp_path / f"p{workers}", workers=workers, envs_per_worker=3, **kwargs)
    assert strip(read_records(tmp_path / "p1")) == strip(read_records(tmp_path / "p2"))
    with pytest.raises(ValueError, match="different \\['envs_per_worker'\\]"):  # never mixed with unbatched records
        evaluate_suite(ckpt, env, ID_ONLY, tmp_path / "p1", workers=1, envs_per_worker=1, **kwargs)


def test_a_policy_that_cannot_act_in_the_env_fails_before_any_episode(tmp_path):
    from toyland.policies.features import FeatureMismatch

    tiny_checkpoint(tmp_path / "ckpt", "wrist", 48)
    with pytest.raises(FeatureMismatch, match="observation.images.wrist"):
        evaluate_suite(str(tmp_path / "ckpt"), SMALL, ID_ONLY, tmp_path / "run", episodes=2, workers=1, progress=False)
    assert not read_records(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="cue_follower"):
        evaluate_suite("experd", SMALL, ID_ONLY, tmp_path / "run2", episodes=2, workers=1, progress=False)


def test_report_compares_runs_and_plots(tmp_path):
    suite = {"factors": ["lighting"], "levels": ["ood_1", "ood_3"]}
    evaluate_suite("expert", SMALL, suite, tmp_path / "expert", episodes=2, workers=1, videos=True, progress=False)
    evaluate_suite("cue_follower", SMALL, suite, tmp_path / "cue", episodes=2, workers=1, videos=False, progress=False)
    videos = list((tmp_path / "expert" / "videos").glob("*.mp4"))
    assert videos and all(v.stat().st_size > 0 for v in videos)
    proc = subprocess.run([sys.executable, "-m", "toyland.cli", "report", str(tmp_path / "expert"), str(tmp_path / "cue"),
                           "--out", str(tmp_path / "both")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "both" / "report.md").read_text()
    assert "Paired comparison against expert" in text and "lighting@ood_3" in text
    assert (tmp_path / "both" / "plots" / "factors.png").stat().st_size > 1000
    assert (tmp_path / "both" / "plots" / "heatmap.png").stat().st_size > 1000
    proc = subprocess.run([sys.executable, "-m", "toyland.cli", "report", str(tmp_path / "nothing")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "not a toyland evaluation run" in proc.stderr


def test_a_lerobot_pretrained_folder_is_evaluated_with_its_own_processors(tmp_path):
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.factory import get_policy_class, make_policy_config, make_pre_post_processors

    from toyland.policies.features import FeatureMismatch

    config = make_policy_config(
        "act", device="cpu", pretrained_backbone_weights=None, dim_model=32, dim_feedforward=64, n_heads=2,
        n_encoder_layers=1, latent_dim=8, chunk_size=8, n_action_steps=4,
        input_features={"observation.images.front": PolicyFeature(FeatureType.VISUAL, (3, 32, 32)),
                        "observation.state": PolicyFeature(FeatureType.STATE, (15,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (7,))})
    policy = get_policy_class("act")(config)
    stats = {"observation.images.front": {"mean": np.full((3, 1, 1), 0.5), "std": np.full((3, 1, 1), 0.25)},
             "observation.state": {"mean": np.zeros(15), "std": np.ones(15)},
             "action": {"mean": np.zeros(7), "std": np.full(7, 0.5)}}
    pre, post = make_pre_post_processors(config, dataset_stats=stats)
    folder = tmp_path / "lerobot_act"
    for part in (policy, pre, post):
        part.save_pretrained(folder)
    results = evaluate_suite(str(folder), SMALL, ID_ONLY, tmp_path / "run", episodes=1, workers=1, videos=False,
                             progress=False)
    assert results["cells"]["id"]["episodes"] == 1 and results["actor"].startswith("lerobot act")
    from toyland.eval.actors import make_actor

    assert make_actor(str(folder), n_action_steps=8).policy.config.n_action_steps == 8  # the whole chunk
    with pytest.raises(ValueError, match="envs_per_worker=1"):
        evaluate_suite(str(folder), SMALL, ID_ONLY, tmp_path / "run3", episodes=1, workers=1, envs_per_worker=3)
    # nothing was written: the corrected call uses the same folder
    evaluate_suite(str(folder), SMALL, ID_ONLY, tmp_path / "run3", episodes=1, workers=1, videos=False, progress=False)
    with pytest.raises(ValueError, match=r"n_action_steps=9 must lie in \[1, 8\]"):
        make_actor(str(folder), n_action_steps=9)
    with pytest.raises(FeatureMismatch, match="observation.images.front"):
        evaluate_suite(str(folder), {**SMALL, "image_size": 48}, ID_ONLY, tmp_path / "run48", episodes=1, workers=1,
                       progress=False)


class DropsIt(ExpertActor):
    """The expert's grasp, let go of as soon as the lift starts."""

    def act(self, obs):
        action = self.expert.act(obs)
        if self.expert.phase == "lift" and self.expert.phase_steps > 2:
            action[-1] = -1.0
        return action


class Overshoots(ExpertActor):
    """The expert's actions, scaled past the action space (a regression head's overshoot)."""

    def act(self, obs):
        return 3.0 * self.expert.act(obs)


class HoldsStill(ExpertActor):
    def act(self, obs):
        return np.array([0, 0, 0, 0, 0, 0, -1], np.float32)


def test_failures_are_split_into_never_grasped_and_grasped_then_lost():
    from toyland.eval.records import summarize
    from toyland.eval.runner import run_episode
    from toyland.eval.suite import build_suite

    env = make_env(task="lift", cameras=[], control_mode="ee_delta")  # holds_still sends zero deltas
    records = [run_episode(env, actor, seed=i)[0] for i, actor in enumerate([ExpertActor(), DropsIt(), HoldsStill()])]
    assert [r["success"] for r in records] == [True, False, False]
    cell = summarize(records, build_suite(ID_ONLY), 3, 0)["cells"]["id"]
    assert cell["failures"] == {"never_grasped": 1, "grasped_not_done": 1}
    assert cell["clipped_episodes"] == 0


def test_actions_outside_the_space_are_clipped_and_counted_not_raised():
    from toyland.eval.runner import run_episode

    env = make_env(task="lift", cameras=[], control_mode="ee_delta")
    with pytest.raises(ValueError, match="outside the action space"):  # the env itself refuses them
        env.reset(seed=0)
        env.step(np.full(7, 3.0, np.float32))
    record, _ = run_episode(env, Overshoots(), seed=0)
    assert 0 < record["clipped_actions"] <= record["steps"]
    record, _ = run_episode(env, ExpertActor(), seed=0)
    assert record["clipped_actions"] == 0


def test_the_execution_horizon_is_chosen_at_evaluation(tmp_path):
    """``n_action_steps`` at evaluation: the policy replans that often, the run records it (a resume
    with another value is refused), and values a chunk cannot hold or a scripted actor are refused."""
    from toyland.eval.actors import make_actor

    tiny_checkpoint(tmp_path / "ckpt", "front", 32)
    env = make_env(**SMALL, cameras=["front"])
    obs, _ = env.reset(seed=0)
    for n, chunks in ((None, 3), (2, 5), (8, 2)):  # 10 steps
        actor = make_actor(str(tmp_path / "ckpt"), n_action_steps=n)
        calls = []
        predict = actor.policy.predict_action_chunk
        actor.policy.predict_action_chunk = lambda batch, *a, **k: calls.append(1) or predict(batch, *a, **k)
        actor.reset(env, 0)
        for _ in range(10):
            actor.act(obs)
        assert len(calls) == chunks, n
    with pytest.raises(ValueError, match=r"n_action_steps=9 must lie in \[1, horizon=8\]"):
        make_actor(str(tmp_path / "ckpt"), n_action_steps=9)
    with pytest.raises(ValueError, match="scripted actor 'expert'"):
        make_actor("expert", n_action_steps=4)
    evaluate_suite(str(tmp_path / "ckpt"), {**SMALL, "cameras": ["front"]}, ID_ONLY, tmp_path / "run", episodes=1,
                   workers=1, videos=False, progress=False, n_action_steps=2)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["n_action_steps"] == 2
    with pytest.raises(ValueError, match="n_action_steps"):
        evaluate_suite(str(tmp_path / "ckpt"), {**SMALL, "cameras": ["front"]}, ID_ONLY, tmp_path / "run", episodes=2,
                       workers=1, videos=False, progress=False, n_action_steps=4)


def test_folders_written_before_an_env_option_existed_still_resume(tmp_path):
    """Env options added later (mask_noise, instruction) are absent from older run.json and collection
    logs; they ran at their defaults, so they resume instead of being refused as another config."""
    import json

    from toyland.data.collect import collect
    from toyland.data.episode_log import LOG_PATH

    evaluate_suite("expert", SMALL, {}, tmp_path / "eval", episodes=1, videos=False, progress=False, workers=1)
    run = json.loads((tmp_path / "eval" / "run.json").read_text())
    for key in ("mask_noise", "instruction", "instruction_picture_size"):
        del run["env"][key]
    (tmp_path / "eval" / "run.json").write_text(json.dumps(run))
    assert evaluate_suite("expert", SMALL, {}, tmp_path / "eval", episodes=2, videos=False, progress=False,
                          workers=1)["cells"]["id"]["episodes"] == 2
    collect({"task": "lift", "image_size": 32}, tmp_path / "data", episodes=1, workers=1, progress=False)
    log = json.loads((tmp_path / "data" / LOG_PATH).read_text())
    for key in ("mask_noise", "instruction", "instruction_picture_size"):
        del log["config"]["env"][key]
    (tmp_path / "data" / LOG_PATH).write_text(json.dumps(log))
    collect({"task": "lift", "image_size": 32}, tmp_path / "data", episodes=2, workers=1, progress=False)
    assert len(json.loads((tmp_path / "data" / LOG_PATH).read_text())["episodes"]) == 2
    # a re-render of that older source carries the source's env as recorded, on both sides of a resume
    from toyland.data.rerender import augment

    log = json.loads((tmp_path / "data" / LOG_PATH).read_text())
    for key in ("mask_noise", "instruction", "instruction_picture_size"):
        log["config"]["env"].pop(key, None)
    (tmp_path / "data" / LOG_PATH).write_text(json.dumps(log))
    augment(tmp_path / "data", tmp_path / "lit", {"lighting": "ood_1"}, workers=1, progress=False)
    assert augment(tmp_path / "data", tmp_path / "lit", {"lighting": "ood_1"}, workers=1, progress=False).complete
