"""The trainer: exact resume, NaN handling, device errors, and the whole loop from the CLI."""

import json
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from safetensors.torch import load_file

from toyland.train import trainer
from toyland.train.trainer import NonFiniteLoss, compile_backend, lr_factor, resolve_device, train

TINY_DIFFUSION = ["policy.channels=[8,16]", "policy.down_dims=[16,32]", "policy.keypoints=8",
                  "policy.image_feature_dim=16", "policy.horizon=8", "policy.n_action_steps=4", "policy.inference_steps=3"]


def config(tmp_path, data, *overrides, policy: list[str] = TINY_DIFFUSION) -> dict:
    with initialize_config_module("toyland.configs", version_base="1.3"):
        cfg = compose("train", overrides=[
            f"output_dir={tmp_path}", f"data.sources=[{{path: {data}}}]", "env.image_size=48", "batch_size=4",
            "steps=6", "save_every=3", "log_every=1", "eval.final_episodes=0", "optim.warmup_steps=2", *policy,
            *overrides])
    cfg = OmegaConf.to_container(cfg, resolve=True)
    cfg.pop("experiment", None)
    return cfg


class Interrupt(Exception):
    pass


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, lift_demos, monkeypatch):
    straight = train(config(tmp_path / "straight", lift_demos))
    save = trainer.save_training

    def save_then_die(out, step, *args):
        save(out, step, *args)
        if step == 3:
            raise Interrupt

    monkeypatch.setattr(trainer, "save_training", save_then_die)
    with pytest.raises(Interrupt):
        train(config(tmp_path / "resumed", lift_demos))
    monkeypatch.setattr(trainer, "save_training", save)
    # the optimization clock carries over: the first run's time, stored in its checkpoint, plus the rest
    record_path = tmp_path / "resumed" / "checkpoints" / "step_0000003" / "policy.json"
    record = json.loads(record_path.read_text())
    assert record["train_state"]["train_s"] >= 0
    record["train_state"]["train_s"] = 1000.0
    record_path.write_text(json.dumps(record))
    resumed = train(config(tmp_path / "resumed", lift_demos, "resume=true"))
    assert straight.steps == resumed.steps == 6
    final = json.loads((tmp_path / "resumed" / "checkpoints" / "step_0000006" / "policy.json").read_text())
    assert 1000.0 < final["train_state"]["train_s"] < 1000.0 + 600
    for name in ("model", "ema"):
        a = load_file(tmp_path / "straight" / "checkpoints" / "step_0000006" / f"{name}.safetensors")
        b = load_file(tmp_path / "resumed" / "checkpoints" / "step_0000006" / f"{name}.safetensors")
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_a_resume_with_another_policy_config_is_refused(tmp_path, lift_demos):
    train(config(tmp_path, lift_demos, "steps=3"))
    with pytest.raises(ValueError, match="different policy"):
        train(config(tmp_path, lift_demos, "steps=6", "resume=true", "policy.keypoints=4"))


def test_nan_loss_stops_with_step_and_batch_statistics_and_keeps_the_last_checkpoint(tmp_path, lift_demos, monkeypatch):
    from toyland.policies.diffusion.policy import DiffusionPolicy

    forward, calls = DiffusionPolicy.forward, []

    def poisoned(self, batch):
        loss, metrics = forward(self, batch)
        calls.append(1)
        return (loss * float("nan") if len(calls) == 5 else loss), metrics

    monkeypatch.setattr(DiffusionPolicy, "forward", poisoned)
    with pytest.raises(NonFiniteLoss, match=r"at step 4.*observation.state.*step_0000003"):
        train(config(tmp_path, lift_demos, "save_every=3"))
    assert (tmp_path / "checkpoints" / "step_0000003" / "model.safetensors").is_file()
    assert not (tmp_path / "checkpoints" / "step_0000004").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has CUDA")
def test_asking_for_cuda_without_one_is_an_error():
    with pytest.raises(RuntimeError, match="device=cpu"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


# aot_eager: dynamo's trace and AOTAutograd's joint graph, what toyland's checkpoints and losses meet,
# without inductor's kernel generation (a minute of C++ builds, torch's own to test; the benchmark runs it)
@pytest.mark.parametrize("option", ["precision=bf16", "compile=aot_eager"])
def test_bf16_and_compiled_training_learn_and_save_ordinary_checkpoints(tmp_path, lift_demos, option):
    from toyland.policies.checkpoint import load_policy

    reference = train(config(tmp_path / "fp32", lift_demos))
    result = train(config(tmp_path / "run", lift_demos, option))
    assert result.steps == 6
    a = load_file(tmp_path / "fp32" / "checkpoints" / "step_0000006" / "model.safetensors")
    b = load_file(tmp_path / "run" / "checkpoints" / "step_0000006" / "model.safetensors")
    assert a.keys() == b.keys()  # no compiled-module prefixes: any toyland command loads it
    earlier = load_file(tmp_path / "fp32" / "checkpoints" / "step_0000003" / "model.safetensors")
    norm = lambda d: sum(float((t.float() ** 2).sum()) for t in d.values()) ** 0.5
    apart = norm({k: a[k].float() - b[k].float() for k in a})
    moved = norm({k: a[k].float() - earlier[k].float() for k in a})
    if "bf16" in option:  # the same run up to bf16's rounding: much closer than the run moved in 3 steps
        assert apart < 0.6 * moved
    else:  # aot_eager runs eager's kernels from the traced graph: the same run, bit for bit
        assert apart == 0 < moved
    load_policy(tmp_path / "run" / "checkpoints" / "step_0000006")
    with pytest.raises(ValueError, match="precision='fp8'"):
        train(config(tmp_path / "bad", lift_demos, "precision=fp8"))
    with pytest.raises(ValueError, match="compile='inductr'.*aot_eager"):
        train(config(tmp_path / "bad", lift_demos, "compile=inductr"))
    assert compile_backend(True) == compile_backend("true") == "inductor" and compile_backend(False) is None


def test_learning_rate_warms_up_then_decays_to_zero():
    assert lr_factor(0, 10, 100) == pytest.approx(0.1) and lr_factor(9, 10, 100) == pytest.approx(1.0)
    assert lr_factor(55, 10, 100) == pytest.approx(0.5) and lr_factor(100, 10, 100) == pytest.approx(0.0)


def test_bad_train_config_keys_are_named(tmp_path, lift_demos):
    cfg = config(tmp_path, lift_demos)
    cfg["optim"]["lrr"] = 1.0
    with pytest.raises(ValueError, match="lrr"):
        train(cfg)


def test_collect_train_evaluate_from_the_command_line(tmp_path):
    run = [sys.executable, "-m", "toyland.cli"]
    data = tmp_path / "demos"
    proc = subprocess.run([*run, "collect", "episodes=2", "workers=1", "env.image_size=48", f"output_dir={data}",
                           "action_noise=0.03", "noise_correlation=0.9", "noise_entries=[x,y]", "noise_gated=true",
                           f"hydra.run.dir={tmp_path / 'h1'}"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "2 episodes kept" in proc.stdout
    recorded = json.loads((data / "meta" / "toyland_episodes.json").read_text())["config"]
    assert {k: recorded[k] for k in recorded if "noise" in k} == {
        "action_noise": 0.03, "noise_correlation": 0.9, "noise_entries": ["x", "y"], "noise_gated": True}
    proc = subprocess.run([*run, "train", "steps=4", "batch_size=4", "env.image_size=48", "eval.final_episodes=1",
                           "eval.videos=0", f"data.sources=[{{path: {data}}}]", f"hydra.run.dir={tmp_path / 'h2'}",
                           *TINY_DIFFUSION], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "diffusion after 4 steps: success" in proc.stdout
    proc = subprocess.run([*run, "train", "steps=4", "optim.lrr=1", f"data.sources=[{{path: {data}}}]",
                           f"hydra.run.dir={tmp_path / 'h3'}"], capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "lrr" in proc.stderr
    proc = subprocess.run([*run, "train", "steps=4", f"data.sources=[{{path: {tmp_path / 'nowhere'}}}]",
                           f"hydra.run.dir={tmp_path / 'h4'}"], capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0 and "does not exist" in proc.stderr
