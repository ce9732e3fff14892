"""The shortcut study's parts (issue 26): island scenarios with width and disparity knobs, the
paper's A-A / B-B / A-B / B-A cells, re-rendering one island's episodes at the other's views, and
the instruction-viewpoint mutual information of each arm's training data."""

import json

import numpy as np
import pytest
import yaml

from toyland.eval.harness import cell_env, evaluate_suite
from toyland.eval.suite import build_suite
from toyland.sim import make_env
from toyland.sim.scenarios import SCENARIO_DIR, scenario_env_config
from toyland.sim.shortcut import Shortcut, draw_level

SUITE = yaml.safe_load((SCENARIO_DIR.parent / "suite" / "shortcut_islands.yaml").read_text())
ISLANDS = {"factor": "camera_viewpoint", "islands": {"axis": "azimuth", "disparity": 30.0, "width": 10.0},
           "colours": ["red", "blue"]}


def test_islands_record_each_instruction_from_its_own_azimuth_range():
    env = make_env(scenario_env_config("shortcut_islands", "train"), cameras=[])
    seen = {0: [], 1: []}
    for seed in range(12):
        obs, info = env.reset(seed=seed)
        assert info["cue_index"] == info["target_index"]
        assert obs["task"].split(" ")[-2] == ["red", "blue"][info["target_index"]]
        view = info["factors"]["camera_viewpoint"]
        assert view["elevation"] == view["roll"] == 0.0  # only the azimuth is the cue
        seen[info["target_index"]].append(view["azimuth"])
    assert seen[0] and seen[1]
    assert all(-20.0 <= a <= -10.0 for a in seen[0]) and all(10.0 <= a <= 20.0 for a in seen[1])
    assert len({round(a, 6) for a in seen[0]}) == len(seen[0])  # drawn from the range, not one view


@pytest.mark.parametrize("width, disparity, ranges", [
    (0.0, 30.0, [(-15.0, -15.0), (15.0, 15.0)]),
    (20.0, 30.0, [(-25.0, -5.0), (5.0, 25.0)]),
    (15.0, 5.0, [(-10.0, 5.0), (-5.0, 10.0)]),  # the paper's overlapping 40-55 / 45-60 shape
])
def test_island_knobs_set_width_and_distance_between_centres(width, disparity, ranges):
    shortcut = Shortcut.from_config({**ISLANDS, "islands": {"axis": "azimuth", "disparity": disparity, "width": width}})
    rng = np.random.default_rng(0)
    for _ in range(40):
        target, cue, levels = shortcut.draw(rng)
        lo, hi = ranges[cue]
        assert target == cue and lo - 1e-9 <= levels["camera_viewpoint"]["azimuth"] <= hi + 1e-9


@pytest.mark.parametrize("change, message", [
    ({"islands": {"axis": "azimuth", "disparity": 80.0, "width": 30.0}}, "outside its declared range"),
    ({"islands": {"axis": "azimuth", "disparity": 0.0}}, "disparity > 0"),
    ({"islands": {"axis": "azimuth", "disparity": 30.0, "wdth": 5.0}}, "wdth"),
    ({"values": [{"azimuth": -15.0}, {"azimuth": 15.0}]}, "not both"),
    ({"mode": "pinned"}, "needs `pin"),
    ({"mode": "pinned", "pin": [0, 2]}, "each in 0..1"),
    ({"pin": [0, 1]}, "needs mode 'pinned'"),
    ({"extra_cues": {"table_appearance": [{"hue": 0.0}]}}, "1 values for 2 colours"),
])
def test_bad_island_configs_are_named(change, message):
    with pytest.raises((KeyError, ValueError), match=message):
        Shortcut.from_config({**ISLANDS, **change})


def test_ranged_levels_draw_inside_and_refuse_what_cannot_be_drawn():
    from toyland.data.rerender import check_overrides

    rng = np.random.default_rng(0)
    values = [draw_level("camera_viewpoint", {"azimuth": [10.0, 20.0]}, rng)["azimuth"] for _ in range(50)]
    assert 10.0 <= min(values) and max(values) <= 20.0 and np.std(values) > 2.0
    for level, message in (({"azimuth": [20.0, 10.0]}, "lo <= hi"), ({"azimuth": [10.0, 60.0]}, "declared range")):
        with pytest.raises(ValueError, match=message):
            check_overrides({"camera_viewpoint": level})
    with pytest.raises(ValueError, match="categorical"):
        check_overrides({"table_appearance": {"texture": ["plain", "grid"]}})


def test_the_second_cue_pins_the_table_colour_of_each_island():
    env = make_env(scenario_env_config("shortcut_islands_table", "train"), cameras=[])
    for seed in range(6):
        _, info = env.reset(seed=seed)
        assert info["factors"]["table_appearance"]["hue"] == [0.0, 0.45][info["cue_index"]]


def test_the_suite_cells_pin_view_and_instruction_on_the_same_scenes():
    env_cfg = scenario_env_config("shortcut_islands", "train")
    suite = build_suite(SUITE)
    assert suite.names() == ["id", "A-A", "B-B", "A-B", "B-A"]
    slots = {"A-A": (0, 0), "B-B": (1, 1), "A-B": (1, 0), "B-A": (0, 1)}  # (instructed, cue): name is view-instruction
    toys = {}
    for cell in suite.cells[1:]:
        env = make_env(cell_env(env_cfg, cell.env), cameras=[])
        assert env.unwrapped.shortcut.values[0] == {"azimuth": [-20.0, -10.0]}  # the run's islands stay, the cell sets mode and pin
        for seed in range(3):
            _, info = env.reset(seed=seed)
            assert (info["target_index"], info["cue_index"]) == slots[cell.name]
            azimuth = info["factors"]["camera_viewpoint"]["azimuth"]
            assert (azimuth < 0) == (cell.name[0] == "A")
            target = info["toys"][info["target_index"]]["parts"]
            toys.setdefault(seed, []).append(str([(p["kind"], p["size"]) for p in target]))
    assert all(len(set(v)) == 1 for v in toys.values())  # the same instructed toy in every cell: cells are paired


def test_expert_scores_no_shortcut_and_the_cue_follower_takes_it_on_the_crossed_cells(tmp_path):
    env = {**scenario_env_config("shortcut_islands", "train"), "image_size": 32}
    cells = {}
    for actor in ("expert", "cue_follower"):
        results = evaluate_suite(actor, env, SUITE, tmp_path / actor, episodes=3, workers=1, videos=False, progress=False)
        cells[actor] = results["cells"]
    crossed = ("A-B", "B-A")
    for name in crossed:
        expert, follower = cells["expert"][name], cells["cue_follower"][name]
        assert expert["shortcut_rate"] == 0.0 and expert["wrong_object_rate"] == 0.0 and expert["success_rate"] >= 2 / 3
        assert follower["shortcut_rate"] >= 2 / 3 and follower["success_rate"] == 0.0
        assert follower["wrong_object_rate"] == follower["shortcut_rate"]  # the cue's object is the wrong object
        lo, hi = follower["shortcut_ci95"]
        assert lo < follower["shortcut_rate"] <= hi and follower["wrong_object_ci95"][1] <= 1.0
    for name in ("A-A", "B-B"):  # in distribution the cue and the instruction agree: no shortcut to take
        assert cells["cue_follower"][name]["shortcut_rate"] == 0.0 and cells["cue_follower"][name]["success_rate"] >= 2 / 3


def test_island_A_episodes_re_render_at_island_B_views(tmp_path):
    """The re-rendered overlap remedy: the shortcut's cue factor is re-drawn from B's range (before,
    the replay's shortcut pinned it back and the augment refused every episode)."""
    from toyland.data.collect import collect
    from toyland.data.episode_log import read_episode_log
    from toyland.data.rerender import augment

    env = {**scenario_env_config("shortcut_islands", "train"), "image_size": 32, "cameras": ["front"]}
    source, out = tmp_path / "islands", tmp_path / "at_B"
    collect(env, source, episodes=2, seed=0, workers=1, progress=False)
    augment(source, out, {"camera_viewpoint": {"azimuth": [10.0, 20.0]}}, seed=0, workers=1, progress=False)
    before, after = read_episode_log(source).episodes, read_episode_log(out).episodes
    assert len(after) == 2
    for old, new in zip(before, after):
        assert new["instruction"] == old["instruction"] and new["target_index"] == old["target_index"]
        assert 10.0 <= new["factors"]["camera_viewpoint"]["azimuth"] <= 20.0
        assert new["factors"]["lighting"] == old["factors"]["lighting"]
    # the colour-swap remedy: where the other episode's target sits in the other slot, the instruction
    # names the other island's colour while the view stays this island's
    other = tmp_path / "colour_source"
    collect(env, other, episodes=2, seed=3, workers=1, progress=False)
    augment(source, tmp_path / "swapped", {}, seed=0, workers=1, progress=False, swap_from=other)
    lent = read_episode_log(other).episodes
    for old, new, donor in zip(before, read_episode_log(tmp_path / "swapped").episodes, lent):
        assert new["factors"]["camera_viewpoint"] == old["factors"]["camera_viewpoint"]
        assert new["colours"][new["target_index"]] == donor["colours"][donor["target_index"]]
        assert new["instruction"].split(" ")[-2] == donor["colours"][donor["target_index"]]
    assert any(d["target_index"] != o["target_index"] for d, o in zip(lent, before))  # some instruction did change


def _collection(root, records):
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps({"total_episodes": len(records), "total_frames": len(records)}))
    log = {"version": 1, "config": {"seed": 0}, "episodes": records, "discarded": []}
    (root / "meta" / "toyland_episodes.json").write_text(json.dumps(log))
    return root


def _island_records(rng, n, view=None):
    """Island episodes: target k seen from island k's range, or from island ``view``'s for all."""
    out = []
    for i in range(n):
        target = i % 2
        side = target if view is None else view
        azimuth = float(rng.uniform(-20, -10) if side == 0 else rng.uniform(10, 20))
        out.append({"seed": i, "instruction": "x", "colours": ["red", "blue"], "target_index": target,
                    "factors": {"camera_viewpoint": {"azimuth": azimuth, "elevation": 0.0, "radius": 0.0, "roll": 0.0,
                                                     "fov": 0.0}, "lighting": {"tilt": float(rng.uniform(0, 10))}}})
    return out


def test_study_report_shows_the_instruction_viewpoint_mi_of_each_arms_data(tmp_path):
    from toyland.data.stats import dataset_stats, format_report, instruction_vs_factor
    from toyland.study.driver import Study
    from toyland.study.report import data_stats

    rng = np.random.default_rng(0)
    study = Study.load("shortcut", out=tmp_path)
    _collection(study.data_dir("demos"), _island_records(rng, 60))
    _collection(study.data_dir("demos_at_A"), _island_records(rng, 60, view=0))
    _collection(study.data_dir("demos_at_B"), _island_records(rng, 60, view=1))
    report = dataset_stats([study.data_dir("demos")])
    assert instruction_vs_factor(report)["normalized_mi"] == pytest.approx(1.0)
    assert "instructed task vs camera viewpoint (all its axes, this dataset): MI 1.000" in format_report(report)
    mi = data_stats(study)
    written = {"demos", "demos_at_A", "demos_at_B"}
    assert set(mi) == {a for a in study.cfg["arms"] if set(study.arm_data(a)) <= written}  # whose data exist
    assert {"diffusion", "diffusion_warp", "diffusion_overlap"} <= set(mi)  # (the VLA arms read demos_masks)
    assert mi["diffusion"]["normalized_mi"] == pytest.approx(1.0) and mi["diffusion"]["episodes"] == 60
    # each instruction seen from both islands: about 1 - H(2/3) = 0.08 bits left (plus the plug-in bias)
    assert mi["diffusion_overlap"]["mi_bits"] < 0.2 and mi["diffusion_overlap"]["episodes"] == 180


def _fake_study(tmp_path, rates: dict[str, tuple[float, float]]):
    """A study folder whose arms' crossed-cell records are written directly: arm -> (success rate,
    shortcut rate) over 40 paired episodes of one training seed."""
    from toyland.eval.records import RECORDS, RUN
    from toyland.study.driver import Study

    cfg = yaml.safe_load((SCENARIO_DIR.parent / "study" / "shortcut.yaml").read_text())
    study = Study("shortcut", cfg, tmp_path)
    study.validate()
    for arm, (success, shortcut) in rates.items():
        folder = study.run_dir(arm, 0) / "eval" / "islands"
        folder.mkdir(parents=True)
        (folder / RUN).write_text(json.dumps({"seed_start": 0, "episodes": 40}))
        with open(folder / RECORDS, "w") as f:
            for cell in ("A-B", "B-A"):
                for i in range(40):
                    took = i < shortcut * 40
                    f.write(json.dumps({"cell": cell, "seed": i, "success": (not took) and i < (shortcut + success) * 40,
                                        "cue_index": 0, "outcome": {"cue_success": took, "wrong_object": took}}) + "\n")
    return study


def test_the_report_pairs_shortcut_rates_and_plots_them_against_island_width(tmp_path):
    from toyland.study.report import summarize_study, write_study_report

    study = _fake_study(tmp_path, {"diffusion": (0.2, 0.75), "diffusion_narrow": (0.1, 0.9), "diffusion_wide": (0.5, 0.4),
                                   "diffusion_overlap": (0.6, 0.1)})
    summary = summarize_study(study)
    overlap = [c for c in summary["comparisons"] if c["arm"] == "diffusion_overlap" and c["cell"] == "A-B"][0]
    assert overlap["shortcut"]["n"] == 40 and overlap["shortcut"]["difference"] == pytest.approx(-0.65)
    assert overlap["shortcut"]["mcnemar_p"] < 0.001 and overlap["shortcut"]["b_only"] == 26
    points = {p["arm"]: p for p in summary["series"]["diversity"]["points"]}
    assert [points[a]["x"] for a in ("diffusion_narrow", "diffusion", "diffusion_wide")] == [0, 10, 20]
    assert points["diffusion"]["n"] == 80 and points["diffusion"]["k"] == 60 and points["diffusion"]["training_seeds"] == 1
    lo, hi = points["diffusion_wide"]["ci95"]
    assert lo < 0.4 < hi
    text = write_study_report(study).read_text()
    assert "shortcut rate against the first arm" in text and "| diffusion_overlap | diffusion | islands | A-B | 40 | -0.65" in text
    assert "| diffusion_narrow | 0 | 1 | 72/80" in text
    assert (tmp_path / "plots" / "series_diversity.png").stat().st_size > 1000


@pytest.mark.parametrize("change, message", [
    ({"metric": "speed"}, "metric 'speed'"),
    ({"cells": ["A-C"]}, r"cells \['A-C'\] are not in suite"),
    ({"arms": {"nope": 1}}, r"arms \['nope'\] are not arms"),
    ({"arms": {"diffusion": "wide"}}, "maps to a number"),
    ({"colour": "red"}, "colour"),
    ({"x_scale": "logit"}, "x_scale 'logit'"),
    ({"x_scale": "log"}, "needs every arm's x above 0"),
])
def test_bad_series_are_named(change, message):
    from toyland.study.driver import Study, StudyConfigError

    cfg = yaml.safe_load((SCENARIO_DIR.parent / "study" / "shortcut.yaml").read_text())
    cfg["series"]["diversity"].update(change)
    with pytest.raises((StudyConfigError, ValueError), match=message):
        Study("shortcut", cfg, SCENARIO_DIR).validate()


def _nearest_is_target(env_cfg: dict, episodes: int = 60) -> float:
    env = make_env({**env_cfg, "cameras": []})
    hits = 0
    for seed in range(episodes):
        _, info = env.reset(seed=seed)
        scene = env.unwrapped.scene
        xy = np.array([scene.data.xpos[b][:2] for b in scene.object_bodies])
        hits += int(np.argmin(np.linalg.norm(xy - [0.51, 0.0], axis=1)) == info["target_index"])
    return hits / episodes


def test_where_a_toy_lies_says_nothing_of_the_target_in_the_shortcut_scenarios():
    # target_first puts the target in the spawn area and the rest around it: the toy nearest the
    # area's centre is the target in ~90% of episodes, a cue stronger than instruction or viewpoint
    assert _nearest_is_target({"task": "language_lift"}) > 0.8
    for name in ("shortcut_islands", "shortcut_islands_table", "viewpoint_shortcut", "table_colour_shortcut"):
        cfg = scenario_env_config(name, "train")
        assert cfg["placement"] == "exchangeable"
        if name in ("shortcut_islands", "viewpoint_shortcut"):  # the same placement code: two suffice
            assert 0.2 < _nearest_is_target(cfg) < 0.5, name  # chance: one toy in three
    with pytest.raises(ValueError, match="placement 'middle'"):
        make_env({"task": "lift", "placement": "middle", "cameras": []})
