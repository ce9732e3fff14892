"""The one runner and the study driver: the trainer's evaluation equals ``toyland eval``, worker
errors arrive as themselves, every registered study is valid, and a study runs, skips what is done
and refuses a changed arm."""

import json
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from toyland.eval.harness import evaluate_suite
from toyland.eval.records import read_records
from toyland.study.driver import Study, StudyConfigError, study_names
from toyland.study.driver import main as study_main
from toyland.train.trainer import train

TINY = ["policy.channels=[4,8]", "policy.down_dims=[8,16]", "policy.image_feature_dim=8", "policy.horizon=8",
        "policy.n_action_steps=4", "policy.inference_steps=2"]


def strip(records):
    """Records without the cell-independent bookkeeping, in seed order."""
    return sorted(records, key=lambda r: (r["cell"], r["seed"]))


def test_the_trainers_evaluation_and_toyland_eval_give_identical_records(tmp_path, lift_demos):
    with initialize_config_module("toyland.configs", version_base="1.3"):
        cfg = compose("train", overrides=[f"output_dir={tmp_path / 'run'}", f"data.sources=[{{path: {lift_demos}}}]",
                                          "env.image_size=48", "env.max_episode_steps=30", "batch_size=4", "steps=4",
                                          "save_every=2", "eval.every=0", "eval.final_episodes=3", "eval.workers=1",
                                          "eval.videos=false", *TINY])
    cfg = OmegaConf.to_container(cfg, resolve=True)
    cfg.pop("experiment", None)
    result = train(cfg)
    trainer_records = read_records(tmp_path / "run" / result.final_eval["eval_dir"])
    assert len(trainer_records) == 3 and result.final_eval["episodes"] == 3
    # toyland eval of the run folder (its newest checkpoint), on two workers instead of one
    evaluate_suite(str(tmp_path / "run"), cfg["env"], {"base": {}}, tmp_path / "eval", episodes=3, workers=2,
                   videos=False, progress=False)
    assert strip(read_records(tmp_path / "eval")) == strip(trainer_records)


def test_an_error_in_a_worker_reaches_the_caller_as_that_error():
    from toyland.parallel import WorkerError, worker_pool
    from toyland.sim.toy_sets import get_toy_set

    with worker_pool(1, get_toy_set, "no_such_toy_set") as pool:  # the worker's object cannot be built
        with pytest.raises(KeyError, match="unknown toy set 'no_such_toy_set'"):
            pool.submit("toy", 0).result()
    with worker_pool(1, get_toy_set, "train") as pool:  # built, then a call fails
        with pytest.raises(ValueError, match="toy seed -1 is not in toy set 'train'"):
            pool.submit("toy", -1).result()
    assert issubclass(WorkerError, RuntimeError)


@pytest.mark.parametrize("name", study_names())
def test_every_study_config_composes(name, tmp_path):
    from toyland.eval.suite import build_suite
    from toyland.policies import policy_config
    from toyland.sim import resolved_env_config

    study = Study.load(name, out=tmp_path)
    assert study.cfg.get("description"), f"study {name} needs a description for its report"
    for dataset in study.cfg["datasets"]:
        resolved_env_config(study.dataset_env(dataset))
    configs = {}  # one Hydra composition per arm
    for arm in study.arms:
        seeds = study.cfg["arms"][arm]["seeds"]
        assert len(seeds) >= 2, f"arm {arm}: report intervals over at least two training seeds"
        cfg = configs[arm] = study.train_config(arm, seeds[0])
        policy_config(cfg["policy"])
        assert cfg["eval"]["final_episodes"] == 0  # the suites evaluate, once
    for suite in study.cfg["suites"]:
        evaluated = [a for a in study.arms if suite in study.suites_of(a)]
        assert evaluated, f"suite {suite} evaluates no arm"
        cells, episodes, env = study.suite_config(suite)
        assert build_suite(cells).cells and episodes >= 1
        for arm in evaluated:
            resolved_env_config({**configs[arm]["env"], **env})


def write_study(tmp_path, steps=4) -> str:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({
        "description": "a tiny study",
        "workers": 1,
        "datasets": {"demos": {"episodes": 2, "overrides": ["env.image_size=32", "workers=1"]}},
        "arms": {"small": {"data": ["demos"], "seeds": [0, 1],
                           "overrides": [f"steps={steps}", "batch_size=4", "save_every=2", *TINY]},
                 "one_frame": {"data": "demos", "seeds": [0, 1],
                               "overrides": [f"steps={steps}", "batch_size=4", "save_every=2", "policy.n_obs_steps=1", *TINY]}},
        "suites": {"id": {"suite": "id_only", "episodes": 2}},
    }))
    return str(path)


def test_a_study_runs_skips_what_is_done_and_refuses_a_changed_arm(tmp_path, monkeypatch, capsys):
    from toyland.train import trainer

    out = tmp_path / "out"
    report = Study.load(write_study(tmp_path), out=out).run()
    text = report.read_text()
    assert "| small | id | id | 2 | " in text and "| one_frame | id | id | 2 | " in text
    assert "Paired differences" in text and "Commit: `" in text
    summary = json.loads((out / "report.json").read_text())
    assert {r["episodes"] for r in summary["rows"]} == {4}  # two training seeds x two episodes
    times = {(t["arm"], t["seed"]): t for t in summary["training_time"]}  # from each run's newest checkpoint
    assert set(times) == {(a, k) for a in ("small", "one_frame") for k in (0, 1)}
    assert all(t["step"] == 4 and t["train_s"] > 0 for t in times.values()) and "| small | 1 | 4 | " in text
    records = read_records(out / "arms" / "small" / "seed_1" / "eval" / "id")
    assert len(records) == 2
    # the command line takes its options among the overrides
    capsys.readouterr()
    study_main(["--report-only", write_study(tmp_path), "--only", "small", "workers=1", f"--out={out}"])
    assert capsys.readouterr().out.strip() == f"report: {out / 'report.md'}"
    assert "workers=1 --only small`" in (out / "report.md").read_text()  # the command names its arms

    def no_training(cfg):
        raise AssertionError("a finished arm was trained again")

    monkeypatch.setattr(trainer, "train", no_training)
    Study.load(write_study(tmp_path), out=out).run()  # everything done: nothing runs again
    assert read_records(out / "arms" / "small" / "seed_1" / "eval" / "id") == records
    # a suite of one arm's (its `arms`): evaluated for that arm only, with nothing trained again
    only_small = ["suites.lit={suite: {factors: [lighting], levels: [ood_1]}, episodes: 1, arms: [small]}"]
    report = Study.load(write_study(tmp_path), only_small, out=out).run()
    assert len(read_records(out / "arms" / "small" / "seed_1" / "eval" / "lit")) == 2  # id and lighting@ood_1
    assert not (out / "arms" / "one_frame" / "seed_1" / "eval" / "lit").exists()
    assert "| small | lit | lighting@ood_1 | 2 | " in report.read_text()
    with pytest.raises(StudyConfigError, match="different config"):
        Study.load(write_study(tmp_path, steps=6), out=out).run()
    with pytest.raises(StudyConfigError, match=r"holds an evaluation with a different \['suite'\]"):
        Study.load(write_study(tmp_path), ["suites.id.suite={factors: [lighting], levels: [ood_1]}"], out=out).run()
    with pytest.raises(StudyConfigError, match="trained on other datasets"):  # one more demo: not the same arm
        Study.load(write_study(tmp_path), ["datasets.demos.episodes=3"], out=out).run()


def test_a_study_on_ray_runs_its_arms_as_tasks_with_the_records_of_a_local_run(tmp_path):
    pytest.importorskip("ray")
    path = write_study(tmp_path)
    local = Study.load(path, ["arms.small.seeds=[0]", "arms.one_frame.seeds=[0]", "cpus_per_arm=1"],
                       out=tmp_path / "local")
    for arm in local.arms:  # one torch thread, as a one-CPU Ray task gets
        local.cfg["arms"][arm]["overrides"].append("threads=1")
    local.run()
    on_ray = Study.load(path, ["arms.small.seeds=[0]", "arms.one_frame.seeds=[0]", "launcher=ray", "cpus_per_arm=1"],
                        out=tmp_path / "ray")
    for arm in on_ray.arms:
        on_ray.cfg["arms"][arm]["overrides"].append("threads=1")
    on_ray.run()
    for arm in ("small", "one_frame"):
        a = read_records(tmp_path / "local" / "arms" / arm / "seed_0" / "eval" / "id")
        b = read_records(tmp_path / "ray" / "arms" / arm / "seed_0" / "eval" / "id")
        assert len(a) == 2 and sorted(map(str, a)) == sorted(map(str, b))
    timing = json.loads((tmp_path / "ray" / "timing.json").read_text())
    assert "train small 0" in timing and "eval one_frame 0 id" in timing
    with pytest.raises(StudyConfigError, match="launcher='slurm'"):
        Study.load(path, ["launcher=slurm"], out=tmp_path / "bad")


def test_bad_study_configs_are_named(tmp_path):
    path = write_study(tmp_path)
    with pytest.raises(ValueError, match="seedz"):
        Study.load(path, ["arms.small.seedz=[0]"], out=tmp_path)
    with pytest.raises(StudyConfigError, match="not datasets of this study"):
        Study.load(path, ["arms.small.data=[other]"], out=tmp_path)
    with pytest.raises(StudyConfigError, match="no study 'nope'"):
        Study.load("nope")
    with pytest.raises(StudyConfigError, match="no such arm"):
        Study.load(path, out=tmp_path, only=["big"])
    with pytest.raises(StudyConfigError, match=r"arms \['big'\] are not arms of this study"):
        Study.load(path, ["suites.id.arms=[big]"], out=tmp_path)


def test_a_collection_whose_expert_never_succeeds_stops_with_the_reason(tmp_path):
    from toyland.data.collect import ExpertFailing, collect

    with pytest.raises(ExpertFailing, match="succeeded in 0 of 20 episodes.*max_episode_steps"):
        collect({"task": "lift", "image_size": 32, "max_episode_steps": 5}, tmp_path / "d", episodes=2, workers=1,
                progress=False)


def test_a_checkpoint_pointer_left_dangling_by_a_kill_falls_back_to_a_complete_checkpoint(tmp_path):
    from toyland.train.state import latest_checkpoint

    root = tmp_path / "checkpoints"
    for step in (2, 4):
        (root / f"step_000000{step}").mkdir(parents=True)
        (root / f"step_000000{step}" / "policy.json").write_text("{}")
    (root / "last").write_text("step_0000004")
    assert latest_checkpoint(tmp_path) == root / "step_0000004"
    (root / "step_0000004").rename(root / ".step_0000004.old")  # killed between the two renames of a re-save
    assert latest_checkpoint(tmp_path) == root / "step_0000004" and (root / "step_0000004" / "policy.json").is_file()
    (root / "step_0000004" / "policy.json").unlink()  # a folder without its record is not a checkpoint
    assert latest_checkpoint(tmp_path) == root / "step_0000002"


def test_an_evaluation_folder_refuses_records_of_other_weights(tmp_path, lift_demos):
    """Training again into the same folder gives new weights at the same step: their evaluation starts
    afresh instead of reusing the old run's records (and toyland eval refuses to mix them)."""
    with initialize_config_module("toyland.configs", version_base="1.3"):
        base = ["env.image_size=48", "env.max_episode_steps=20", "batch_size=4", "steps=2", "save_every=2",
                "eval.every=0", "eval.final_episodes=1", "eval.workers=1", "eval.videos=false",
                f"output_dir={tmp_path / 'run'}", f"data.sources=[{{path: {lift_demos}}}]", *TINY]
        first = OmegaConf.to_container(compose("train", overrides=[*base, "seed=0"]), resolve=True)
        second = OmegaConf.to_container(compose("train", overrides=[*base, "seed=1"]), resolve=True)
    for cfg in (first, second):
        cfg.pop("experiment", None)
    train(first)
    folder = tmp_path / "run" / "eval" / "step_0000002"
    before = json.loads((folder / "run.json").read_text())["weights_sha256"]
    with pytest.raises(ValueError, match="weights_sha256"):  # other weights into a finished evaluation's folder
        evaluate_suite(str(tmp_path / "run" / "checkpoints" / "step_0000002"), first["env"], {"base": {}}, folder,
                       episodes=1, weights="model", workers=1, videos=False, progress=False)
    train(second)
    assert json.loads((folder / "run.json").read_text())["weights_sha256"] != before


def test_a_study_dataset_can_be_a_re_render_of_an_earlier_one(tmp_path):
    from toyland.data.episode_log import read_episode_log

    path = write_study(tmp_path)
    overrides = ["datasets.lit.from=demos", "datasets.lit.factors.lighting=ood_1", "arms.small.data=[demos,lit]"]
    study = Study.load(path, overrides, out=tmp_path / "out", only=["small"])
    assert study.dataset_env("lit") == study.dataset_env("demos")  # trained and evaluated where the originals were
    study.collect("demos")
    study.collect("lit")
    episodes = read_episode_log(study.data_dir("lit")).episodes
    assert len(episodes) == 2 and all(e["factors"]["lighting"] for e in episodes)
    # an arm that trains on a re-render alone still gets its source, and a swap's colour source, collected first
    swap = Study.load(path, [*overrides, "arms.small.data=[swapped]", "datasets.colours.episodes=2", "datasets.colours.seed=9",
                             "datasets.swapped.from=lit", "datasets.swapped.swap_from=colours"], out=tmp_path / "out2", only=["small"])
    assert swap.needed_datasets() == ["demos", "lit", "colours", "swapped"]
    with pytest.raises(StudyConfigError, match="not a dataset listed before it"):
        Study.load(path, ["datasets.lit.from=later"], out=tmp_path / "out")
    with pytest.raises(ValueError, match="episodes"):  # a re-render has its source's episodes
        Study.load(path, ["datasets.lit.from=demos", "datasets.lit.episodes=3"], out=tmp_path / "out")


def test_an_arm_trained_before_an_option_was_removed_while_off_is_still_the_same_arm(tmp_path):
    out = tmp_path / "out"
    study = Study.load(write_study(tmp_path), out=out, only=["small"])
    cfg = study.train_config("small", 0)
    run = study.run_dir("small", 0)
    run.mkdir(parents=True)
    old = {**cfg, "policy": {**cfg["policy"], "colour_jitter": [0.0, 0.0, 0.0, 0.0], "state_noise": 0.0}}
    (run / "config.json").write_text(json.dumps(old))
    (run / "data.json").write_text(json.dumps({"demos": 0}))
    from toyland.study.driver import current_form

    assert current_form(old, run) == json.loads(json.dumps(cfg))  # what a checkpoint of that run loads as
    with pytest.raises(StudyConfigError, match="no longer has.*state_noise"):
        current_form({**cfg, "policy": {**cfg["policy"], "state_noise": 0.1}}, run)


def test_an_arm_trained_before_newer_train_keys_and_env_options_is_still_the_same_arm(tmp_path):
    from toyland.study.driver import added_since

    study = Study.load(write_study(tmp_path), out=tmp_path / "out", only=["small"])
    cfg = study.train_config("small", 0)
    assert "finetune" in cfg and "placement" in cfg["env"]
    old = {k: v for k, v in cfg.items() if k != "finetune"}
    old["env"] = {k: v for k, v in cfg["env"].items() if k != "placement"}
    a, b = added_since(old, cfg)
    assert a == b  # added since, at their defaults: what the run had
    tuned = {**cfg, "finetune": {**cfg["finetune"], "from": "somewhere"}}
    a, b = added_since(old, tuned)
    assert a.get("finetune") != b["finetune"]  # a run from scratch is not this fine-tune
    a, b = added_since(old, {**cfg, "env": {**cfg["env"], "placement": "exchangeable"}})
    assert a["env"]["placement"] == "target_first" != b["env"]["placement"]
    # a policy option added since is filled from that policy's own defaults, not train.yaml's default policy's
    from toyland.study.driver import policy_defaults

    vla = {**cfg, "policy": policy_defaults("vla", None)}
    assert vla["policy"]["det_pool"] is True and "det_pool" not in policy_defaults("diffusion", None)
    before = {**vla, "policy": {k: v for k, v in vla["policy"].items() if k not in ("det_pool", "viewpoint_embedding")}}
    a, b = added_since(before, vla)
    assert a == b
    a, b = added_since(before, {**vla, "policy": {**vla["policy"], "det_pool": False}})
    assert "det_pool" not in a["policy"] and a != b  # not at the default: another arm


def write_outcomes(study, arm: str, suite: str, cells: dict, episodes: int = 40) -> None:
    """Records of training seed 0's evaluation on ``suite``: cell -> (episode seed -> success)."""
    from toyland.eval.records import RECORDS, RUN

    folder = study.run_dir(arm, 0) / "eval" / suite
    folder.mkdir(parents=True)
    (folder / RUN).write_text(json.dumps({"seed_start": 0, "episodes": episodes}))
    with open(folder / RECORDS, "w") as f:
        for i in range(episodes):
            for cell, success in cells.items():
                f.write(json.dumps({"cell": cell, "seed": i, "success": success(i), "outcome": {}}) + "\n")


def test_the_report_gives_each_cell_as_a_share_of_in_distribution_success(tmp_path):
    """Paired by training seed and episode seed: 30 of 40 in distribution, 15 of those 30 kept under
    lighting (and none of the 10 failures turned into successes), so exactly half transfers."""
    from toyland.study.report import summarize_study, write_study_report

    study = Study.load("cotraining", out=tmp_path)
    write_outcomes(study, "target_only", "lift", {"id": lambda i: i < 30, "lighting@ood_1": lambda i: i < 15})
    rows = {r["cell"]: r for r in summarize_study(study)["rows"]}
    assert "of_id" not in rows["id"]
    share = rows["lighting@ood_1"]["of_id"]
    assert share["n"] == 40 and share["ratio"] == pytest.approx(0.5)
    assert share["ci95"][0] < 0.5 < share["ci95"][1]
    line = [x for x in write_study_report(study).read_text().splitlines() if x.startswith("| target_only | lift | lighting")]
    assert line and "15/40" in line[0] and "| 0.50 (" in line[0]


def test_a_suites_contrasts_pair_each_cell_with_its_twin_within_an_arm(tmp_path):
    """The detector suite's noisy household cell against its clean twin: 20 of 40 lost, none gained."""
    from toyland.study.report import summarize_study, write_study_report

    study = Study.load("toys_transfer", out=tmp_path)
    write_outcomes(study, "vla_detpool", "detector", {"id": lambda i: i < 30, "household": lambda i: i < 30,
                                                      "household_noise_full": lambda i: i < 10})
    found = [c for c in summarize_study(study)["contrasts"] if c["cell"] == "household_noise_full"]
    assert len(found) == 1 and found[0]["reference"] == "household" and found[0]["arm"] == "vla_detpool"
    assert found[0]["difference"] == pytest.approx(-0.5) and (found[0]["a_only"], found[0]["b_only"]) == (0, 20)
    assert found[0]["mcnemar_p"] < 1e-5 and found[0]["per_seed"] == {0: pytest.approx(-0.5)}
    assert "| vla_detpool | detector | household_noise_full | household | 40 | -0.50" in write_study_report(study).read_text()
    with pytest.raises(StudyConfigError, match=r"cells \['glare'\] are not in the suite"):
        Study.load("toys_transfer", ["suites.detector.contrasts.glare=id"], out=tmp_path)
    cfg = study.cfg
    cfg["suites"]["detector"]["contrasts"] = ["id"]
    with pytest.raises(StudyConfigError, match="mapping of cell -> reference cell"):
        Study("toys_transfer", cfg, tmp_path).validate()


def test_a_contrast_may_pair_a_cell_with_its_twin_in_another_suite(tmp_path):
    """coloured_meshes' household cell against transfer's grey one, on the same episodes: 10 of 40 gained."""
    from toyland.study.report import summarize_study

    study = Study.load("toys_transfer", out=tmp_path)
    write_outcomes(study, "diffusion", "transfer", {"toy_set@pybullet_household": lambda i: i < 10})
    write_outcomes(study, "diffusion", "coloured_meshes", {"toy_set@pybullet_household_coloured": lambda i: i < 20})
    found = [c for c in summarize_study(study)["contrasts"] if c["cell"] == "toy_set@pybullet_household_coloured"]
    assert len(found) == 1 and found[0]["reference"] == "transfer/toy_set@pybullet_household"
    assert found[0]["difference"] == pytest.approx(0.25) and (found[0]["a_only"], found[0]["b_only"]) == (10, 0)
    with pytest.raises(StudyConfigError, match="names suite 'nowhere'"):
        Study.load("toys_transfer", ["suites.coloured_meshes.contrasts.id=nowhere/id"], out=tmp_path)
    with pytest.raises(StudyConfigError, match=r"cells \['glare'\] are not in the suite 'transfer'"):
        Study.load("toys_transfer", ["suites.coloured_meshes.contrasts.id=transfer/glare"], out=tmp_path)


def test_the_reports_commit_is_known_in_a_checkout_and_in_a_git_archive_of_it(tmp_path):
    import subprocess
    import tarfile
    from pathlib import Path

    from toyland.study.report import commit

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    assert commit().split("+")[0] == head
    archive = tmp_path / "toyland.tar"
    subprocess.run(["git", "-C", str(root), "archive", "-o", str(archive), "HEAD", "toyland"], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "copy", filter="data")
    code = "from toyland.study.report import commit; print(commit())"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "copy", capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == head + "+archive"


def _add_timings(out: str, key: str, times: int, start) -> None:
    study = Study.load("toys_transfer", out=Path(out))
    start.wait()  # both loaded: the additions overlap
    for _ in range(times):
        study._add_timing({key: 1.0, "shared": 1.0})


def test_two_processes_adding_timings_at_once_lose_no_entry(tmp_path, run_at_once):
    """Two `--only` runs of one study write timing.json together: every addition of both is kept."""
    run_at_once(_add_timings, [(str(tmp_path), key, 500) for key in ("a", "b")])
    timing = json.loads((tmp_path / "timing.json").read_text())
    assert timing == {"a": 500.0, "b": 500.0, "shared": 1000.0}
