"""Fine-tuning (``finetune.from``) and the study driver's arms built on other arms: a fine-tune
starts from its parent's weights, keeps or refits the statistics as asked, refuses another policy,
and a study trains a parent, fine-tunes it and merges the two."""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from toyland.policies.checkpoint import IncompatibleCheckpoint
from toyland.study.driver import Study, StudyConfigError
from toyland.train.trainer import train

from test_train import TINY_DIFFUSION, config


@pytest.fixture(scope="module")
def other_demos(tmp_path_factory):
    """Lift episodes from other seeds: the same features, other action statistics."""
    from toyland.data.collect import collect

    root = tmp_path_factory.mktemp("demos") / "other"
    collect({"task": "lift", "image_size": 48}, root, episodes=2, seed=500, workers=1, progress=False)
    return root


@pytest.fixture(scope="module")
def parent(tmp_path_factory, lift_demos, other_demos):
    """Trained on lift_demos, its statistics spanning other_demos too (a source at weight 0)."""
    out = tmp_path_factory.mktemp("parent")
    train(config(out, lift_demos, "steps=4", f"data.sources=[{{path: {lift_demos}}}, {{path: {other_demos}, weight: 0.0}}]"))
    return out


def test_new_actions_beyond_the_kept_statistics_are_refused_with_the_ways_out(tmp_path, lift_demos, other_demos):
    narrow = tmp_path / "narrow"  # statistics of lift_demos alone
    train(config(narrow, lift_demos, "steps=1"))
    with pytest.raises(IncompatibleCheckpoint, match=r"leave the range.*dim \d+: data .* checkpoint .*weight 0.*"
                                                     r"finetune.statistics=data"):
        train(config(tmp_path / "ft", other_demos, "steps=1", f"finetune.from={narrow}"))
    assert not (tmp_path / "ft" / "checkpoints").exists()  # refused before the first step
    train(config(tmp_path / "ft_data", other_demos, "steps=1", f"finetune.from={narrow}", "finetune.statistics=data"))


def _weights(run, name="model"):
    return load_file(sorted((run / "checkpoints").glob("step_*"))[-1] / f"{name}.safetensors")


def test_a_finetune_starts_from_its_parents_weights_and_statistics(tmp_path, other_demos, parent):
    # lr 0: one step that changes nothing, so the saved weights are exactly the starting point
    run = tmp_path / "ft"
    train(config(run, other_demos, "steps=1", "optim.lr=0.0", f"finetune.from={parent}"))
    start, now = _weights(parent, "ema"), _weights(run)
    assert start.keys() == now.keys() and all(torch.equal(start[k], now[k]) for k in start)
    record = json.loads((run / "finetune.json").read_text())
    assert record["statistics"] == "checkpoint" and record["weights"] == "ema.safetensors" and len(record["sha256"]) == 64


def test_statistics_from_the_data_refit_the_buffers_and_keep_the_parameters(tmp_path, other_demos, parent):
    run = tmp_path / "ft"
    cfg = config(run, other_demos, "steps=1", "optim.lr=0.0", f"finetune.from={parent}", "finetune.statistics=data")
    train(cfg)
    scratch = tmp_path / "scratch"
    train(config(scratch, other_demos, "steps=1", "optim.lr=0.0"))
    start, now, fresh = _weights(parent, "ema"), _weights(run), _weights(scratch)
    stats = [k for k in now if k.startswith("normalizer.")]
    assert stats and all(torch.equal(now[k], fresh[k]) for k in stats)  # the new data's units
    assert any(not torch.equal(now[k], start[k]) for k in stats)  # ... which differ from the parent's
    params = [k for k in now if not k.startswith("normalizer.")]
    assert all(torch.equal(now[k], start[k]) for k in params)


@pytest.mark.parametrize("change, message", [
    (["policy.down_dims=[16,64]"], r"down_dims \(config \[16, 64\], checkpoint \[16, 32\]\)"),
    (["policy=vla", "policy.det_pool=false", "policy.det_pool_geometry=false"], "the config builds 'vla', the checkpoint is 'diffusion'"),
])
def test_another_policy_is_refused_by_name(tmp_path, lift_demos, parent, change, message):
    policy = [] if change[0] == "policy=vla" else TINY_DIFFUSION
    with pytest.raises(IncompatibleCheckpoint, match=message):
        train(config(tmp_path, lift_demos, "steps=1", f"finetune.from={parent}", *change, policy=policy))


def test_data_with_other_features_is_refused_by_name(tmp_path, parent):
    from toyland.data.collect import collect

    collect({"task": "lift", "image_size": 32}, tmp_path / "small", episodes=1, seed=0, workers=1, progress=False)
    with pytest.raises(IncompatibleCheckpoint, match=r"features differ: cameras: data .*32, 32.*checkpoint .*48, 48"):
        train(config(tmp_path / "run", tmp_path / "small", "steps=1", "env.image_size=32", f"finetune.from={parent}"))


def test_acting_options_may_differ_and_bad_finetune_settings_are_named(tmp_path, lift_demos, parent):
    train(config(tmp_path / "a", lift_demos, "steps=1", f"finetune.from={parent}", "policy.inference_steps=2"))
    for setting, message in ((f"finetune.from={tmp_path / 'nope'}", "does not exist"),
                             ("finetune.weights=raw", "finetune.weights='raw'"),
                             ("finetune.statistics=mean", "finetune.statistics='mean'")):
        with pytest.raises((FileNotFoundError, ValueError), match=message):
            train(config(tmp_path / "b", lift_demos, "steps=1", f"finetune.from={parent}", setting))
    with pytest.raises(IncompatibleCheckpoint, match="started from other weights"):  # resuming from another parent
        train(config(tmp_path / "a", lift_demos, "steps=2", "resume=true", f"finetune.from={tmp_path / 'a'}"))


TINY_STUDY = ["steps=2", "batch_size=4", "save_every=2", *TINY_DIFFUSION]


def write_study(tmp_path, arms: dict) -> str:
    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump({
        "description": "a parent, its fine-tune and their merge",
        "workers": 1,
        "datasets": {"demos": {"episodes": 2, "overrides": ["env.image_size=32", "workers=1"]}},
        "arms": arms,
        "suites": {"id": {"suite": "id_only", "episodes": 2}},
    }, sort_keys=False))  # arms in the order given: a parent comes before the arms built on it
    return str(path)


CHAIN = {"base": {"data": ["demos"], "seeds": [0], "overrides": TINY_STUDY},
         "tuned": {"data": ["demos"], "seeds": [0], "init_from": "base", "overrides": TINY_STUDY},
         "merged": {"seeds": [0], "merge": {"base": "base", "finetuned": "tuned", "alpha": 0.5}}}


def test_a_study_fine_tunes_one_arm_from_another_and_merges_them(tmp_path):
    out = tmp_path / "out"
    path = write_study(tmp_path, CHAIN)
    with pytest.raises(StudyConfigError, match="builds on arm base seed 0, which has not finished"):
        Study.load(path, out=out, only=["tuned"]).run()
    text = Study.load(path, out=out).run().read_text()
    for arm in CHAIN:
        assert f"| {arm} | id | id | 1 | " in text
    tuned = Study.load(path, out=out).run_dir("tuned", 0)
    assert json.loads((tuned / "finetune.json").read_text())["from"].endswith("base/seed_0/checkpoints/step_0000002")
    merged = out / "arms" / "merged" / "seed_0" / "merged"
    record = json.loads((merged / "policy.json").read_text())["merge"]
    assert record["alphas"] == {"vision": 0.5, "trunk": 0.5, "head": 0.5}
    assert json.loads((out / "arms" / "merged" / "seed_0" / "eval" / "id" / "run.json").read_text())["actor"] == str(merged)
    Study.load(path, out=out).run()  # done: merging again gives the same weights, so its evaluation stands


@pytest.mark.parametrize("arms, message", [
    ({"tuned": {**CHAIN["tuned"]}, "base": CHAIN["base"]}, "builds on 'base', which is not an arm listed before"),
    ({"base": CHAIN["base"], "tuned": {**CHAIN["tuned"], "seeds": [0, 1]}}, r"seeds \[1\] are not seeds of its parent"),
    ({**CHAIN, "merged": {**CHAIN["merged"], "data": ["demos"]}}, "data"),
    ({**CHAIN, "merged": {"seeds": [0], "merge": {"base": "base", "finetuned": "tuned", "alfa": 0.5}}}, "alfa"),
    ({**CHAIN, "again": {**CHAIN["tuned"], "init_from": "merged"}}, "builds on 'merged', a merged arm"),
    ({**CHAIN, "again": {"seeds": [0], "merge": {"base": "base", "finetuned": "merged"}}}, "builds on 'merged', a merged arm"),
    ({**CHAIN, "merged": {"seeds": [0], "merge": {"base": "base", "finetuned": "tuned", "alpha": 1.5}}}, r"\[0, 1\]"),
    ({**CHAIN, "merged": {"seeds": [0], "merge": {"base": "base", "finetuned": "tuned", "alphas": {"unet": 0.5}}}},
     r"unknown groups \['unet'\]"),
    ({**CHAIN, "merged": {"seeds": [0], "merge": {"base": "base", "finetuned": "tuned", "weights": "model"}}},
     "weights='model'; valid: ema, raw"),
])
def test_bad_arm_chains_are_named(tmp_path, arms, message):
    with pytest.raises((StudyConfigError, ValueError), match=message):
        Study.load(write_study(tmp_path, arms), out=tmp_path / "out")


def test_the_loss_path_runs_from_each_parents_own_loss_and_leaves_torchs_generator_alone(tmp_path, lift_demos,
                                                                                         other_demos, parent):
    from toyland.data.mixture import build_sampler
    from toyland.policies.checkpoint import load_policy
    from toyland.policies.merge_path import barrier, loss_along_path
    from toyland.train.state import checkpoint_of

    ft = tmp_path / "ft"
    train(config(ft, other_demos, "steps=3", "optim.lr=1.0e-2", f"finetune.from={parent}"))
    data = {"lift": lift_demos, "other": other_demos}
    before = torch.random.get_rng_state()
    curves = loss_along_path(parent, ft, data, alphas=(0.0, 0.5, 1.0), weights="raw", batches=2, batch_size=4, seed=3)
    assert torch.equal(torch.random.get_rng_state(), before)

    def own_loss(run, name):  # the parent alone, on the same batches with the same noise
        policy = load_policy(checkpoint_of(run, "parent"), weights="model")
        sampler = build_sampler({"sources": [{"name": name, "path": str(data[name])}]}, policy.delta_timestamps(), 4, seed=3)
        losses = []
        for i in range(2):
            torch.manual_seed(3 * 1_000_003 + i)
            with torch.no_grad():
                losses.append(float(policy(sampler.sample(i))[0]))
        return sum(losses) / 2

    for name in data:
        assert curves[name][0.0] == pytest.approx(own_loss(parent, name), rel=1e-6)
        assert curves[name][1.0] == pytest.approx(own_loss(ft, name), rel=1e-6)
        assert curves[name][0.5] != curves[name][0.0] and barrier(curves[name]) >= 0.0
    # the trunk held at the fine-tuned end while the rest sweeps: a group alpha reaches the merge
    held = loss_along_path(parent, ft, data, alphas=(0.0,), group_alphas={"trunk": 1.0}, weights="raw", batches=2,
                           batch_size=4, seed=3)
    assert held["lift"][0.0] != curves["lift"][0.0]
    with pytest.raises(ValueError, match="NAME=PATH"):
        loss_along_path(parent, ft, {})


def test_barrier_is_the_rise_above_the_chord():
    from toyland.policies.merge_path import barrier

    assert barrier({0.0: 1.0, 0.5: 0.5, 1.0: 0.0}) == 0.0
    assert barrier({0.0: 1.0, 0.5: 0.2, 1.0: 0.0}) == 0.0
    assert barrier({0.0: 1.0, 0.5: 0.9, 1.0: 0.0}) == pytest.approx(0.4)
