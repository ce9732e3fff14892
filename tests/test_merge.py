"""Weight merging (toyland merge, RETAIN arXiv 2512.08333) on tiny policies built here."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from test_policies import TINY, fake_obs, tiny_policy
from toyland.cli import main
from toyland.policies.checkpoint import IncompatibleCheckpoint, load_policy, save_policy, state_tensors
from toyland.policies.merge import GROUPS, group_of, merge_checkpoints

CASES = ("diffusion", "vla-discrete_diffusion")


def perturbed(policy, seed: int, scale: float = 0.05) -> dict:
    """The policy's tensors with every float parameter moved by noise (buffers kept)."""
    g = torch.Generator().manual_seed(seed)
    params = dict(policy.named_parameters())
    return {k: v + scale * torch.randn(v.shape, generator=g) if k in params else v.clone()
            for k, v in state_tensors(policy).items()}


def save_parent(policy, folder, seed: int, ema: bool = True, buffers: dict | None = None):
    """A checkpoint whose raw weights (seed) and EMA weights (seed + 1) differ; ``buffers`` overrides."""
    tensors = {**perturbed(policy, seed), **(buffers or {})}
    policy.load_state_dict(tensors)
    extra = {"ema": {**perturbed(policy, seed + 1), **(buffers or {})}} if ema else None
    save_policy(policy, folder, extra=extra)
    return folder


@pytest.fixture(params=CASES)
def parents(request, tmp_path):
    case = request.param
    policy = tiny_policy(case)
    base = save_parent(policy, tmp_path / "base", seed=1)
    # the fine-tuned parent's statistics differ, as after fine-tuning on another task's data
    shift = {k: v + 0.1 for k, v in state_tensors(policy).items() if k.startswith("normalizer.") and k.endswith("shift")}
    ft = save_parent(tiny_policy(case), tmp_path / "ft", seed=3, buffers=shift)
    return case, base, ft


def chunk(folder, weights="model"):
    policy = load_policy(folder, weights=weights)
    obs = fake_obs(0)
    from toyland.policies.features import STATE

    batch = {STATE: torch.as_tensor(obs[STATE])[None, None].repeat(1, policy.config.n_obs_steps, 1), "task": [obs["task"]]}
    for key in policy.features.cameras:
        batch[key] = torch.as_tensor(obs[key]).permute(2, 0, 1).float().div(255)[None, None].repeat(1, policy.config.n_obs_steps, 1, 1, 1)
    for key in policy.features.masks:
        batch[key] = torch.as_tensor(obs[key])[None, None].repeat(1, policy.config.n_obs_steps, 1, 1)
    with torch.no_grad():
        return policy.predict_action_chunk(batch, generator=torch.Generator().manual_seed(0))


def test_alpha_0_and_1_give_the_parents_actions_exactly(parents, tmp_path):
    _, base, ft = parents
    merge_checkpoints(base, ft, tmp_path / "a0", alpha=0.0, statistics="base")
    merge_checkpoints(base, ft, tmp_path / "a1", alpha=1.0)
    for merged, parent in ((tmp_path / "a0", base), (tmp_path / "a1", ft)):
        got, want = load_file(merged / "model.safetensors"), load_file(parent / "ema.safetensors")
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
        assert torch.equal(chunk(merged), chunk(parent, "ema"))
    assert not torch.equal(chunk(tmp_path / "a0"), chunk(tmp_path / "a1"))  # the parents do act differently


def test_alpha_half_averages_the_weights_and_keeps_the_finetuned_statistics(parents, tmp_path):
    _, base, ft = parents
    record = merge_checkpoints(base, ft, tmp_path / "m", alpha=0.5, weights="raw")
    got, b, f = (load_file(p / "model.safetensors") for p in (tmp_path / "m", base, ft))
    buffers = set(record["statistics"]["buffers"])
    assert buffers and all(k.startswith(("normalizer.", "head.bins.")) for k in buffers)
    for k in got:
        if k in buffers:  # never interpolated: the fine-tuned parent's, bool flags included
            assert torch.equal(got[k], f[k]), k
        else:
            torch.testing.assert_close(got[k], (b[k] + f[k]) / 2, rtol=0, atol=1e-6)
            assert not torch.equal(got[k], f[k]), k
    assert record["statistics"]["kept"] == "finetuned"
    assert sorted(record["statistics"]["differed"]) == sorted(k for k in buffers if k.endswith("shift"))


def test_statistics_base_keeps_the_base_parents_buffers(parents, tmp_path):
    _, base, ft = parents
    merge_checkpoints(base, ft, tmp_path / "m", alpha=0.5, statistics="base")
    got, b = load_file(tmp_path / "m" / "model.safetensors"), load_file(base / "ema.safetensors")
    stats = json.loads((tmp_path / "m" / "stats.json").read_text())
    for k, v in got.items():
        if k.startswith("normalizer."):
            assert torch.equal(v, b[k]) and stats[k.removeprefix("normalizer.")] == b[k].tolist()


@pytest.mark.parametrize("case", CASES)
def test_a_per_module_alpha_changes_only_its_group(case, tmp_path):
    policy = tiny_policy(case)
    base = save_parent(policy, tmp_path / "base", seed=1)
    ft = save_parent(tiny_policy(case), tmp_path / "ft", seed=3)
    b, f = load_file(base / "ema.safetensors"), load_file(ft / "ema.safetensors")
    groups = group_of(policy.name, [n for n, _ in policy.named_parameters()])
    for group in GROUPS[policy.name]:
        if group not in groups.values():
            continue
        out = tmp_path / f"m_{group}"
        merge_checkpoints(base, ft, out, alpha=1.0, alphas={group: 0.25})
        got = load_file(out / "model.safetensors")
        for k, g in groups.items():
            want = 0.75 * b[k] + 0.25 * f[k] if g == group else f[k]
            torch.testing.assert_close(got[k], want, rtol=0, atol=1e-6, msg=f"{group}: {k}")
            assert (g == group) != torch.equal(got[k], f[k]), k


@pytest.mark.parametrize("case", sorted(c for c in TINY if TINY[c].get("name", c) in GROUPS or c in GROUPS))
def test_every_parameter_of_every_tiny_config_is_in_exactly_one_group(case):
    policy = tiny_policy(case)
    groups = group_of(policy.name, [n for n, _ in policy.named_parameters()])
    assert set(groups) == {n for n, _ in policy.named_parameters()}


def test_different_policy_types_are_refused(tmp_path):
    base = save_parent(tiny_policy("diffusion"), tmp_path / "base", seed=1)
    ft = save_parent(tiny_policy("vla-flow"), tmp_path / "ft", seed=1)
    with pytest.raises(IncompatibleCheckpoint, match="different policy types: base is 'diffusion', fine-tuned 'vla'"):
        merge_checkpoints(base, ft, tmp_path / "m")


def test_a_config_that_changes_shapes_is_refused_naming_the_tensors(tmp_path):
    base = save_parent(tiny_policy("diffusion"), tmp_path / "base", seed=1)
    TINY["diffusion-wide"] = {**TINY["diffusion"], "name": "diffusion", "image_feature_dim": 24}
    try:
        ft = save_parent(tiny_policy("diffusion-wide"), tmp_path / "ft", seed=1)
    finally:
        del TINY["diffusion-wide"]
    with pytest.raises(IncompatibleCheckpoint, match=r"image_feature_dim \(base 16, fine-tuned 24\).*tensors of "
                                                     r"different shape .*denoiser\.down\.0\.0\.film\.1\.weight \(32, 126\) vs \(32, 142\)"):
        merge_checkpoints(base, ft, tmp_path / "m")


def test_a_config_that_changes_meaning_but_not_shapes_is_refused(tmp_path):
    base = save_parent(tiny_policy("diffusion"), tmp_path / "base", seed=1)
    policy = tiny_policy("diffusion")
    policy.config.prediction = "epsilon"
    ft = save_parent(policy, tmp_path / "ft", seed=1)
    with pytest.raises(IncompatibleCheckpoint, match=r"prediction \(base 'sample', fine-tuned 'epsilon'\)"):
        merge_checkpoints(base, ft, tmp_path / "m")


def test_different_feature_contracts_are_refused_naming_the_features(tmp_path):
    base = save_parent(tiny_policy("diffusion"), tmp_path / "base", seed=1)
    ft = save_parent(tiny_policy("diffusion"), tmp_path / "ft", seed=1)
    record = json.loads((ft / "policy.json").read_text())
    record["features"]["fps"] = 10
    (ft / "policy.json").write_text(json.dumps(record))
    with pytest.raises(IncompatibleCheckpoint, match=r"different feature contracts: fps: base 20, fine-tuned 10"):
        merge_checkpoints(base, ft, tmp_path / "m")


def test_alphas_for_unknown_or_absent_groups_and_out_of_range_are_refused(tmp_path):
    case = "vla-autoregressive-patches"  # use_language=false: no language group
    base = save_parent(tiny_policy(case), tmp_path / "base", seed=1)
    ft = save_parent(tiny_policy(case), tmp_path / "ft", seed=3)
    with pytest.raises(ValueError, match=r"groups \['language'\] that this 'vla' checkpoint has no parameters in"):
        merge_checkpoints(base, ft, tmp_path / "m", alphas={"language": 0.5})
    with pytest.raises(ValueError, match=r"unknown groups \['denoiser'\].*'head', 'language', 'trunk', 'vision'"):
        merge_checkpoints(base, ft, tmp_path / "m", alphas={"denoiser": 0.5})
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        merge_checkpoints(base, ft, tmp_path / "m", alpha=1.5)
    assert not (tmp_path / "m").exists()


def test_ema_weights_missing_are_refused_not_replaced_by_raw(tmp_path):
    base = save_parent(tiny_policy("diffusion"), tmp_path / "base", seed=1, ema=False)
    ft = save_parent(tiny_policy("diffusion"), tmp_path / "ft", seed=3)
    with pytest.raises(FileNotFoundError, match=r"base .* has no ema.safetensors.*use weights=raw"):
        merge_checkpoints(base, ft, tmp_path / "m")
    merge_checkpoints(base, ft, tmp_path / "m", weights="raw")


def test_an_output_inside_a_parent_is_refused(tmp_path):
    base = save_parent(tiny_policy("diffusion"), tmp_path / "base", seed=1)
    ft = save_parent(tiny_policy("diffusion"), tmp_path / "ft", seed=3)
    with pytest.raises(ValueError, match="overlaps the parent checkpoint"):
        merge_checkpoints(base, ft, ft / "merged")
    with pytest.raises(ValueError, match="overlaps the parent checkpoint"):
        merge_checkpoints(base, ft, tmp_path)


def test_cli_merges_a_training_run_folder_and_the_result_acts_through_the_eval_actor(tmp_path, capsys):
    from toyland.eval.actors import make_actor

    case = "vla-discrete_diffusion"
    base = save_parent(tiny_policy(case), tmp_path / "run" / "checkpoints" / "step_0000010", seed=1)
    (tmp_path / "run" / "checkpoints" / "last").write_text(base.name)
    ft = save_parent(tiny_policy(case), tmp_path / "ft", seed=3)
    out = tmp_path / "merged"
    main(["merge", str(tmp_path / "run"), str(ft), "alpha=0.5", "alphas.head=1.0", f"output_dir={out}"])
    assert "merged checkpoint" in capsys.readouterr().out
    record = json.loads((out / "policy.json").read_text())["merge"]
    assert record["base"]["path"] == str(base.resolve()) and record["finetuned"]["path"] == str(ft.resolve())
    assert record["base"]["sha256"] != record["finetuned"]["sha256"] and len(record["base"]["sha256"]) == 64
    assert record["alphas"] == {"vision": 0.5, "language": 0.5, "trunk": 0.5, "head": 1.0}
    actor = make_actor(str(out))
    actor.policy.reset()
    action = actor.act(fake_obs(0))
    assert action.shape == (7,) and (abs(action) <= 1.0 + 1e-6).all()
    with pytest.raises(SystemExit) as err:  # a misspelt key is named
        main(["merge", str(tmp_path / "run"), str(ft), "alpah=0.5", f"output_dir={out}"])
    assert err.value.code == 2 and "alpah" in capsys.readouterr().err
    # bad values and unreadable files end as the command's error, not a traceback
    (tmp_path / "file").write_text("")
    broken = tmp_path / "broken"
    shutil.copytree(ft, broken)
    (broken / "model.safetensors").write_bytes((ft / "model.safetensors").read_bytes()[:100])
    (broken / "ema.safetensors").write_bytes((ft / "model.safetensors").read_bytes()[:100])
    for args, message in [(["alpha=null"], "alphas are numbers"), ([f"output_dir={tmp_path / 'file'}"], "file"),
                          ([], "not a readable safetensors file")]:
        with pytest.raises(SystemExit) as err:
            main(["merge", str(tmp_path / "run"), str(ft if args else broken), f"output_dir={tmp_path / 'm2'}", *args])
        assert err.value.code == 2 and message in capsys.readouterr().err, args
