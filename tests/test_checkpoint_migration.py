"""Checkpoints written before a change of the policies' config fields still load (format migration):
the format-1 fixtures in tests/fixtures/checkpoints_v1 were saved at commit d72a69a, before the options
measured as no gain were removed and the VLA's defaults became the measured recipe."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from toyland.policies import POLICIES
from toyland.policies.checkpoint import (FORMAT_VERSION, MIGRATIONS, IncompatibleCheckpoint, load_policy, read_record,
                                         save_policy)
from toyland.policies.features import ACTION

V1 = Path(__file__).parent / "fixtures" / "checkpoints_v1"
TASK = "pick up the red ball"  # the instruction make_fixture.py used


def stored_chunk(folder: Path, policy) -> tuple[torch.Tensor, torch.Tensor]:
    """(the chunk the policy gives now, the one it gave at save time) for the fixture's observation."""
    stored = load_file(folder / "expected.safetensors")
    expected = stored.pop(ACTION)
    batch = {k: v.float() / 255.0 if k in policy.features.cameras else v for k, v in stored.items()}
    batch["task"] = [TASK]
    return policy.predict_action_chunk(batch, generator=torch.Generator().manual_seed(0)), expected


def copy_with(tmp_path: Path, name: str, edit) -> Path:
    folder = tmp_path / name
    shutil.copytree(V1 / name, folder)
    record = json.loads((folder / "policy.json").read_text())
    edit(record["config"])
    (folder / "policy.json").write_text(json.dumps(record))
    return folder


@pytest.mark.parametrize("name", ["diffusion", "vla"])
def test_a_format_1_checkpoint_loads_and_gives_the_actions_it_gave_when_saved(name):
    raw = json.loads((V1 / name / "policy.json").read_text())
    assert "format_version" not in raw  # really the old format, with the options since removed (off)
    assert raw["config"]["symmetric_yaw"] is False
    policy = load_policy(V1 / name)
    now, then = stored_chunk(V1 / name, policy)
    torch.testing.assert_close(now, then, atol=1e-5, rtol=1e-5)
    assert not hasattr(policy.config, "symmetric_yaw")


def test_an_old_vla_checkpoint_keeps_its_own_settings_where_the_defaults_changed():
    policy = load_policy(V1 / "vla")
    defaults = POLICIES.get("vla").config_class()
    assert (defaults.stem, defaults.det_pool_slots, defaults.det_pool_geometry, defaults.crop_coords) == ("conv", 4, True, True)
    c = policy.config
    assert (c.stem, c.det_pool_slots, c.det_pool_geometry, c.crop_coords) == ("linear", 1, False, False)


def test_a_format_1_record_without_a_field_whose_default_changed_means_the_old_default(tmp_path):
    # (written before those fields existed: it took what were their defaults then)
    def strip(config):
        for key in ("stem", "det_pool_slots", "det_pool_geometry", "crop_coords"):
            del config[key]

    folder = copy_with(tmp_path, "vla", strip)
    now, then = stored_chunk(V1 / "vla", load_policy(folder))
    torch.testing.assert_close(now, then, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name,option,value", [
    ("diffusion", "symmetric_yaw", True), ("diffusion", "relative_actions", True), ("diffusion", "state_noise", 0.1),
    ("diffusion", "episode_noise", True), ("diffusion", "grasp_aux", 0.1), ("diffusion", "pool", "flatten_keypoints"),
    ("vla", "symmetric_yaw", True)])
def test_a_format_1_checkpoint_with_a_removed_option_on_is_refused_naming_it(tmp_path, name, option, value):
    folder = copy_with(tmp_path, name, lambda config: config.update({option: value}))
    last = MIGRATIONS[1].last_commit
    with pytest.raises(IncompatibleCheckpoint, match=rf"option {option}={value!r} was removed in checkpoint format 2"
                                                     rf".*toyland commit {last} is the last"):
        load_policy(folder)


def test_a_kept_value_of_an_option_with_a_removed_value_stays(tmp_path):
    folder = copy_with(tmp_path, "diffusion", lambda config: config.update({"pool": "spatial_softmax"}))
    assert read_record(folder)["config"]["pool"] == "spatial_softmax"


def test_a_checkpoint_of_a_newer_format_is_refused(tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(V1 / "diffusion", folder)
    record = json.loads((folder / "policy.json").read_text())
    (folder / "policy.json").write_text(json.dumps({**record, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(IncompatibleCheckpoint, match=f"format {FORMAT_VERSION + 1}.*update toyland"):
        load_policy(folder)


def test_every_format_before_the_current_one_has_a_migration():
    assert sorted(MIGRATIONS) == list(range(1, FORMAT_VERSION))
    assert all(MIGRATIONS[v].to_version == v + 1 for v in MIGRATIONS)


@pytest.mark.parametrize("name", ["diffusion", "vla"])
def test_a_saved_checkpoint_has_the_current_format_and_every_config_field(tmp_path, name):
    # every field, defaults too: a later change of a default cannot change what an old checkpoint meant
    save_policy(load_policy(V1 / name), tmp_path / "ckpt")
    record = json.loads((tmp_path / "ckpt" / "policy.json").read_text())
    assert record["format_version"] == FORMAT_VERSION
    fields = {f.name for f in dataclasses.fields(POLICIES.get(name).config_class)}
    assert set(record["config"]) == fields
    assert read_record(tmp_path / "ckpt") == record  # the current format passes through unchanged
