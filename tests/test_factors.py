"""Factors change exactly what they claim; OOD levels are disjoint from train; shortcut scenarios."""

import numpy as np
import pytest

from toyland.sim import make_env
from toyland.sim.cameras import WORLD_CAMERAS
from toyland.sim.experts import LiftExpert, make_expert
from toyland.sim.factors import FACTORS, OOD_LEVELS, TRAIN
from toyland.sim.tasks import TASKS

MODEL_FIELDS = (
    "cam_pos", "cam_quat", "cam_fovy", "light_dir", "light_diffuse", "geom_matid", "mat_rgba", "geom_rgba",
    "body_mass", "body_inertia", "geom_friction",
)
SEED = 5


def reset(factors=None, task="language_lift", cameras=(), **kw):
    env = make_env(task=task, cameras=list(cameras), image_size=48, factors=factors, **kw)
    obs, info = env.reset(seed=SEED)
    return env, obs, info


def changed_fields(a, b, info_a, info_b) -> set[str]:
    ma, mb = a.unwrapped.scene.model, b.unwrapped.scene.model
    changed = set()
    if info_a["toys"] != info_b["toys"] or info_a["instruction"] != info_b["instruction"] or ma.nbody != mb.nbody:
        changed.add("task")
    if ma.nbody == mb.nbody and ma.ngeom == mb.ngeom:
        changed |= {f for f in MODEL_FIELDS if not np.array_equal(getattr(ma, f), getattr(mb, f))}
    if not np.array_equal(a.unwrapped.start_qpos, b.unwrapped.start_qpos):
        changed.add("qpos")
    return changed


@pytest.mark.parametrize("name", FACTORS.names())
def test_each_factor_changes_only_what_it_claims(name):
    factor = FACTORS.get(name)
    base, _, info_base = reset()
    for level in (TRAIN, *OOD_LEVELS):
        env, _, info = reset({name: level})
        changed = changed_fields(base, env, info_base, info)
        assert changed <= set(factor.touches), f"{name}@{level} changed {changed - set(factor.touches)}"
        if level != TRAIN:
            assert changed, f"{name}@{level} changed nothing"
        # the episode's target toy is the same whatever the factor (paired comparisons across levels)
        if "task" not in factor.touches:
            assert info["toys"] == info_base["toys"]
        assert info["factors"][name] == reset({name: level})[2]["factors"][name]  # reproducible
        env.close()


@pytest.mark.parametrize("name", FACTORS.names())
def test_ood_levels_are_disjoint_from_train(name):
    factor = FACTORS.get(name)
    rng = np.random.default_rng(0)
    for axis_name, axis in factor.axes.items():
        for _ in range(200):
            value = axis.sample(TRAIN, rng)
            assert axis.contains(TRAIN, value)
            for level in OOD_LEVELS:
                ood = axis.sample(level, rng)
                assert axis.contains(level, ood) and not axis.contains(TRAIN, ood), (axis_name, level, ood)


def test_camera_moves_on_the_sphere_around_its_look_at_point_and_stays_aimed():
    pinned = {"azimuth": 30.0, "elevation": 10.0, "radius": 0.1, "roll": 0.0, "fov": 5.0}
    env, _, _ = reset({"camera_viewpoint": pinned})
    m, d = env.unwrapped.scene.model, env.unwrapped.scene.data
    for name, (pos, target, fovy) in WORLD_CAMERAS.items():
        offset = np.subtract(pos, target)
        r = np.linalg.norm(offset)
        az = np.arctan2(offset[1], offset[0]) + np.deg2rad(30)
        el = np.arcsin(offset[2] / r) + np.deg2rad(10)
        expected = np.asarray(target) + (r + 0.1) * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        cam = m.camera(name).id
        np.testing.assert_allclose(d.cam_xpos[cam], expected, atol=1e-6)
        view = -d.cam_xmat[cam].reshape(3, 3)[:, 2]  # cameras look along -z
        aim = (np.asarray(target) - expected) / np.linalg.norm(np.asarray(target) - expected)
        np.testing.assert_allclose(view, aim, atol=1e-6)
        assert m.cam_fovy[cam] == pytest.approx(fovy + 5.0)
    # roll turns the image about the viewing axis and nothing else
    rolled, _, _ = reset({"camera_viewpoint": {**pinned, "roll": 12.0}})
    rd = rolled.unwrapped.scene.data
    for name in WORLD_CAMERAS:
        cam = m.camera(name).id
        a, b = d.cam_xmat[cam].reshape(3, 3), rd.cam_xmat[cam].reshape(3, 3)
        np.testing.assert_allclose(a[:, 2], b[:, 2], atol=1e-9)
        assert np.degrees(np.arccos(np.clip(a[:, 0] @ b[:, 0], -1, 1))) == pytest.approx(12.0, abs=1e-6)


@pytest.mark.parametrize("name", ["lighting", "camera_viewpoint", "table_appearance", "floor_appearance"])
def test_visual_factors_change_pixels_but_not_physics(name):
    nominal, obs_a, _ = reset(cameras=["front"])
    shifted, obs_b, _ = reset({name: "ood_3"}, cameras=["front"])
    actions = np.random.default_rng(0).uniform(-1, 1, (8, 7)).astype(np.float32)
    for a in actions:
        obs_a, *_ = nominal.step(a)
        obs_b, *_ = shifted.step(a)
        np.testing.assert_array_equal(obs_a["observation.state"], obs_b["observation.state"])
    np.testing.assert_array_equal(nominal.unwrapped.scene.data.qpos, shifted.unwrapped.scene.data.qpos)
    diff = np.abs(obs_a["observation.images.front"].astype(int) - obs_b["observation.images.front"]).mean()
    assert diff > 2.0, diff


@pytest.mark.parametrize("task", TASKS.names())
def test_paraphrase_sets_are_disjoint_and_used(task):
    phrasings = TASKS.get(task).phrasings
    assert set(phrasings["train"]).isdisjoint(phrasings["heldout"])
    assert set(phrasings["canonical"]) <= set(phrasings["train"])
    seen = set()
    for seed in range(12):
        env = make_env(task=task, cameras=[], factors={"language": "ood_1"})
        obs, info = env.reset(seed=seed)
        templates = [t.split("{object}")[0] for t in phrasings["heldout"]]
        assert any(obs["task"].startswith(t) for t in templates), obs["task"]
        seen.add(obs["task"].split(" ")[0])
    assert len(seen) > 1


def test_distractors_are_placed_apart_and_named_by_colour():
    env, obs, info = reset({"distractors": "ood_2"})  # 2 of the task + 3 extra
    scene = env.unwrapped.scene
    assert len(info["toys"]) == 1 + TASKS.get("language_lift").default_distractors + 3
    assert len(set(info["colours"])) == len(info["toys"])
    assert info["colours"][info["target_index"]] in obs["task"]
    xy = scene.data.xpos[list(scene.object_bodies), :2]
    dists = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(len(xy))
    assert dists.min() > 0.02


@pytest.mark.parametrize(
    "factors, message",
    [
        ({"weather": "train"}, "camera_viewpoint"),
        ({"lighting": "ood_9"}, "ood_1"),
        ({"camera_viewpoint": {"azimut": 3.0}}, "azimut"),
        ({"camera_viewpoint": {"azimuth": 400.0}}, "declared range"),
        ({"table_appearance": {"texture": "marble"}}, "marble"),
    ],
)
def test_bad_factor_config_names_the_item(factors, message):
    with pytest.raises((KeyError, ValueError), match=message):
        make_env(factors=factors)


SHORTCUT = {"factor": "camera_viewpoint", "values": [{"azimuth": -40.0}, {"azimuth": 40.0}], "colours": ["red", "blue"]}


class CueFollower(LiftExpert):
    """Lifts the object the nuisance cue points to, ignoring the instruction."""

    @property
    def target_index(self):
        return self.env.task.cue_index


@pytest.mark.parametrize("mode", ["correlated", "swapped"])
def test_shortcut_scenarios_tie_the_cue_to_the_instruction(mode):
    env = make_env(task="language_lift", cameras=[], shortcut={**SHORTCUT, "mode": mode})
    for seed in range(8):
        obs, info = env.reset(seed=seed)
        target, cue = info["target_index"], info["cue_index"]
        assert (target == cue) == (mode == "correlated")
        assert obs["task"].split(" ")[-2] == SHORTCUT["colours"][target]
        assert info["factors"]["camera_viewpoint"]["azimuth"] == SHORTCUT["values"][cue]["azimuth"]


def test_cue_following_policy_scores_the_shortcut_and_the_expert_does_not():
    env = make_env(task="language_lift", cameras=[], shortcut={**SHORTCUT, "mode": "swapped"})
    outcomes = {"expert": [], "cue": []}
    for seed in range(4):
        for name, policy in (("expert", make_expert(env)), ("cue", CueFollower(env))):
            env.reset(seed=seed)
            policy.reset()
            for _ in range(100):
                _, _, term, trunc, info = env.step(policy.act())
                if term or trunc:
                    break
            outcomes[name].append((info["is_success"], info["cue_success"]))
    assert sum(s for s, _ in outcomes["expert"]) >= 3 and not any(c for _, c in outcomes["expert"])
    assert sum(c for _, c in outcomes["cue"]) >= 3 and not any(s for s, _ in outcomes["cue"])


@pytest.mark.parametrize("name", __import__("toyland.sim.scenarios", fromlist=["x"]).scenario_names())
@pytest.mark.parametrize("split", ["train", "eval"])
def test_every_scenario_split_builds(name, split):
    from toyland.sim.scenarios import scenario_env_config

    cfg = scenario_env_config(name, split)
    env = make_env(cfg, cameras=[])
    obs, info = env.reset(seed=0)
    assert obs["task"] == info["instruction"]
    if "shortcut" in cfg:
        assert (info["cue_index"] == info["target_index"]) == (cfg["shortcut"]["mode"] == "correlated")


def test_physics_factor_extremes_stay_stable():
    # masses edited in place once left MuJoCo's derived constants stale: 16 of 20 episodes diverged
    env = make_env(task="language_lift", cameras=[], factors={"object_physics": "ood_3"})
    expert = make_expert(env)
    for seed in range(10):
        env.reset(seed=seed)
        expert.reset()
        for _ in range(40):
            env.step(expert.act())  # raises SimulationUnstableError if MuJoCo had to reset


def test_a_diverging_simulation_raises_instead_of_resetting_silently(monkeypatch, tmp_path):
    from toyland.sim.env import SimulationUnstableError

    monkeypatch.chdir(tmp_path)  # MuJoCo writes MUJOCO_LOG.TXT into the working directory
    env = make_env(cameras=[])
    env.reset(seed=0)
    env.unwrapped.scene.data.qvel[:] = 1e12
    with pytest.raises(SimulationUnstableError, match="seed"):
        env.step(np.zeros(7, np.float32))
