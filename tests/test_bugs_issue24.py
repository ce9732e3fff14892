"""Issue 24's bugs and structure: toy sets in spawned workers, lerobot diffusion's chunk, select_action
per env of a batch, and the import layering (sim below data and policies; no policy import cycle)."""

import ast
import multiprocessing as mp
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from toyland.policies.base import Policy, PolicyConfig
from toyland.policies.features import STATE, PolicyFeatures
from toyland.sim.toy_sets import BUILTIN_DIR, add_search_path, get_toy_set, toy_set_names

PACKAGE = Path(__file__).resolve().parent.parent / "toyland"


# --- bug 1: toy sets added at run time reach spawned workers -------------------------------------
def write_toy_set(folder: Path, name: str, seeds=(5, 10)) -> Path:
    cfg = yaml.safe_load((BUILTIN_DIR / "train.yaml").read_text())
    cfg.update(name=name, seeds=list(seeds), description="a test set")
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_toy_set_added_with_add_search_path_loads_in_a_spawned_process(tmp_path, monkeypatch):
    monkeypatch.setenv("TOYLAND_TOY_SETS", "")  # monkeypatch restores the variable afterwards
    write_toy_set(tmp_path, "issue24_set")
    add_search_path(tmp_path)
    assert get_toy_set("issue24_set").seeds == (5, 10)
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        assert "issue24_set" in pool.submit(toy_set_names).result()
        assert pool.submit(get_toy_set, "issue24_set").result().seeds == (5, 10)


def test_search_path_is_read_afresh_and_earlier_folders_win(tmp_path, monkeypatch):
    monkeypatch.setenv("TOYLAND_TOY_SETS", "")
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    assert "issue24_other" not in toy_set_names()
    write_toy_set(second, "issue24_other", seeds=(0, 3))
    add_search_path(second)
    assert get_toy_set("issue24_other").seeds == (0, 3)  # no stale cache from before the folder was added
    write_toy_set(first, "issue24_other", seeds=(7, 9))
    add_search_path(first)
    assert get_toy_set("issue24_other").seeds == (7, 9)
    assert get_toy_set("train").seeds[0] == 0  # the built-in sets stay
    monkeypatch.setenv("TOYLAND_TOY_SETS", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="TOYLAND_TOY_SETS"):
        toy_set_names()


def test_an_env_config_can_name_a_toy_set_file(tmp_path):
    from toyland.sim import make_env

    path = write_toy_set(tmp_path, "from_a_file", seeds=(40, 42))
    assert get_toy_set(str(path)).name == "from_a_file"
    assert get_toy_set(str(path), num_toys=1).size == 1
    env = make_env(toy_set=str(path), cameras=[])
    env.reset(seed=0)
    assert env.unwrapped.toy_set.seeds == (40, 42)
    env.close()
    with pytest.raises(KeyError, match="path of a set file"):
        get_toy_set(str(tmp_path / "no_such_set.yaml"))


# --- bug 2: lerobot diffusion returns its whole chunk from the current step ---------------------
LEROBOT_FEATURES = PolicyFeatures(cameras={"observation.images.front": (3, 32, 32)}, state_dim=4, action_dim=3, fps=20)
LEROBOT_TINY = {"down_dims": [16, 32], "num_inference_steps": 2, "diffusion_step_embed_dim": 16}


def lerobot_obs(step: int) -> dict:
    rng = np.random.default_rng(step)
    return {"observation.images.front": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
            "observation.state": rng.uniform(-1, 1, 4).astype(np.float32), "task": ""}


def test_lerobot_diffusion_returns_its_chunk_from_the_current_step_and_runs_n_action_steps():
    from toyland.policies import make_policy

    torch.manual_seed(0)
    cfg = {"name": "lerobot_diffusion", "n_obs_steps": 2, "horizon": 32, "n_action_steps": 8, "overrides": LEROBOT_TINY}
    policy = make_policy(cfg, LEROBOT_FEATURES, None).eval()
    batch = {"observation.images.front": torch.rand(1, 2, 3, 32, 32), STATE: torch.rand(1, 2, 4), "task": [""]}
    assert policy.predict_action_chunk(batch).shape == (1, 32 - 2 + 1, 3)

    calls = []
    predict = policy.predict_action_chunk
    policy.predict_action_chunk = lambda batch, *a, **k: calls.append(1) or predict(batch, *a, **k)
    policy.config.n_action_steps = 16  # as `toyland eval n_action_steps=16` sets it on a loaded checkpoint
    policy.reset()
    for step in range(17):
        policy.select_action(lerobot_obs(step))
    assert len(calls) == 2  # 16 actions executed from the first chunk, the 17th from a new one

    policy.config.n_action_steps = 32  # more than a chunk holds: refused, not silently fewer
    policy.reset()
    with pytest.raises(ValueError, match="n_action_steps=32"):
        policy.select_action(lerobot_obs(0))
    with pytest.raises(ValueError, match="horizon - n_obs_steps"):
        make_policy({**cfg, "horizon": 16, "n_action_steps": 16}, LEROBOT_FEATURES, None)


def test_lerobot_diffusion_chunks_follow_the_generator():
    from toyland.policies import make_policy

    torch.manual_seed(0)
    cfg = {"name": "lerobot_diffusion", "n_obs_steps": 2, "horizon": 8, "n_action_steps": 4, "overrides": LEROBOT_TINY}
    policy = make_policy(cfg, LEROBOT_FEATURES, None).eval()
    batch = {"observation.images.front": torch.rand(2, 2, 3, 32, 32), STATE: torch.rand(2, 2, 4), "task": ["", ""]}
    chunks = [policy.predict_action_chunk(batch, torch.Generator().manual_seed(s)) for s in (1, 1, 2)]
    assert chunks[0].shape == (2, 7, 3)
    torch.testing.assert_close(chunks[0], chunks[1])
    assert not torch.allclose(chunks[0], chunks[2])


# --- bug 4: select_action keeps a history and a chunk per env -----------------------------------
class EchoPolicy(Policy):
    """Action k of a chunk: (current state, oldest state of the history, k, prediction count)."""

    name = "echo"

    def __init__(self, n_obs_steps=2, horizon=4, n_action_steps=3):
        features = PolicyFeatures(cameras={}, state_dim=1, action_dim=4, fps=20)
        super().__init__(PolicyConfig(n_obs_steps, horizon, n_action_steps), features, None)
        self.calls = 0

    def forward(self, batch):  # acted with only; a loss for the API's sake: the chunk against the batch's actions
        chunk = self.predict_action_chunk(batch)
        return ((chunk - batch["action"]) ** 2).mean(), {}

    def predict_action_chunk(self, batch):
        self.calls += 1
        state = batch[STATE][..., 0]  # [B, T]
        steps = torch.arange(self.config.horizon, dtype=torch.float32)
        b, h = state.shape[0], self.config.horizon
        return torch.stack([state[:, -1, None].expand(b, h), state[:, 0, None].expand(b, h), steps.expand(b, h),
                            torch.full((b, h), float(self.calls))], dim=-1)


def batch_obs(states) -> dict:
    return {"observation.state": np.asarray(states, dtype=np.float32)[:, None], "task": [""] * len(states)}


def test_select_action_keeps_a_queue_per_env_and_resets_the_listed_ones():
    policy = EchoPolicy()
    policy.reset()
    out = [policy.select_action(batch_obs([10, 20])), policy.select_action(batch_obs([11, 21]))]
    policy.reset([1])  # env 1 starts a new episode, env 0 goes on
    out += [policy.select_action(batch_obs([12, 22])), policy.select_action(batch_obs([13, 23]))]
    np.testing.assert_array_equal(np.stack(out), [
        [[10, 10, 0, 1], [20, 20, 0, 1]],
        [[10, 10, 1, 1], [20, 20, 1, 1]],
        [[10, 10, 2, 1], [22, 22, 0, 2]],  # env 1: a fresh history (its first frame repeated) and chunk
        [[13, 12, 0, 3], [22, 22, 1, 2]],  # env 0: its own chunk ran out; its history went on
    ])
    with pytest.raises(IndexError, match="env 2"):
        policy.reset([2])
    with pytest.raises(ValueError, match="call reset"):
        policy.select_action(batch_obs([1, 2, 3]))
    policy.reset()
    assert policy.select_action(batch_obs([1, 2, 3])).shape == (3, 4)


def test_each_env_of_a_batch_acts_as_it_would_alone():
    rng = np.random.default_rng(0)
    states = rng.uniform(-1, 1, (12, 3))
    episode_starts = {0: [0, 1, 2], 4: [1], 7: [0, 2], 9: [1]}  # staggered resets, as in a vector env
    batched, alone = EchoPolicy(n_action_steps=2), [EchoPolicy(n_action_steps=2) for _ in range(3)]
    rows = []
    for t, state in enumerate(states):
        if t in episode_starts:
            batched.reset(None if t == 0 else episode_starts[t])
        rows.append(batched.select_action(batch_obs(state))[:, :3])  # the prediction count differs
    for env, policy in enumerate(alone):
        for t, state in enumerate(states):
            if env in episode_starts.get(t, []):
                policy.reset()
            single = policy.select_action({"observation.state": np.float32([state[env]]), "task": ""})
            np.testing.assert_array_equal(rows[t][env], single[:3])


# --- structure ----------------------------------------------------------------------------------
def imported_modules(path: Path, package: str) -> set[str]:
    """Every module ``path`` imports, at module level or inside functions, relative imports resolved;
    ``from a import b`` counts ``a.b`` too (b may be a submodule)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([base] if base else [])])
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def module_name(path: Path) -> tuple[str, str]:
    """(module, package it lives in) of a file under toyland/."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), ".".join(parts[:-1])
    return ".".join(parts), ".".join(parts[:-1])


def test_sim_imports_no_higher_layer():
    higher = ("toyland.data", "toyland.policies", "toyland.eval", "toyland.train", "toyland.cli")
    offenders = {}
    for path in sorted((PACKAGE / "sim").rglob("*.py")):
        name, package = module_name(path)
        bad = sorted(m for m in imported_modules(path, package) if m.startswith(higher))
        if bad:
            offenders[name] = bad
    assert not offenders, f"toyland.sim must not import higher layers: {offenders}"


def test_policy_modules_import_no_cycle():
    modules = {module_name(p)[0]: p for p in (PACKAGE / "policies").rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        imports = imported_modules(path, module_name(path)[1])
        edges[name] = {m for m in imports if m in modules and m != name}

    def cycle_from(start, stack):
        for nxt in edges[stack[-1]]:
            if nxt == start:
                return [*stack, nxt]
            if nxt not in stack and (found := cycle_from(start, [*stack, nxt])):
                return found
        return None

    cycles = [c for name in modules if (c := cycle_from(name, [name]))]
    assert not cycles, f"import cycles among toyland.policies modules: {cycles[0]}"


def test_the_policy_registry_alone_builds_a_config_and_imports_only_what_it_names():
    code = """
import sys
from toyland.policies.registry import POLICIES, policy_config
cls, config = policy_config({"name": "diffusion", "horizon": 16})
assert cls.__name__ == "DiffusionPolicy" and config.horizon == 16, (cls, config)
assert "toyland.policies.lerobot_adapter" not in sys.modules and "toyland.policies.vla" not in sys.modules
assert POLICIES.names() == ["diffusion", "lerobot", "lerobot_act", "lerobot_diffusion", "vla"], POLICIES.names()
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=PACKAGE.parent)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
