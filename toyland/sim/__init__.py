"""MuJoCo toy world: scenes built with MjSpec, embodiments, toys, tasks, cameras, experts."""

from __future__ import annotations

ENV_KEYS = {
    "task", "embodiment", "toy_set", "num_toys", "cameras", "image_size", "control_mode", "control_hz",
    "physics_dt", "arena", "render_mode", "render_camera", "render_size", "terminate_on_success", "settle_time",
    "max_episode_steps", "factors", "shortcut", "mask_noise", "placement", "state",
    "instruction", "instruction_picture_size", "masks",
}


def make_env(cfg: dict | None = None, **overrides):
    """gymnasium.make for a toyland env config (the keys of configs/env/*.yaml)."""
    import gymnasium as gym

    import toyland  # noqa: F401  (GL choice and registration)
    from toyland.config_keys import reject_unknown_keys
    from toyland.sim.env import env_id
    from toyland.sim.tasks import TASKS

    cfg = {**dict(cfg or {}), **overrides}
    reject_unknown_keys(cfg, ENV_KEYS, "env config")
    task = cfg.pop("task", "lift")
    for key in ("cameras", "render_size"):
        if key in cfg and cfg[key] is not None and not isinstance(cfg[key], (str, dict)):
            cfg[key] = list(cfg[key]) if key == "cameras" else tuple(cfg[key])
    if "cameras" in cfg and hasattr(cfg["cameras"], "items"):
        cfg["cameras"] = {k: dict(v or {}) for k, v in cfg["cameras"].items()}

    return gym.make(env_id(TASKS.get(task)), **cfg)



def resolved_env_config(cfg: dict | None = None, **overrides) -> dict:
    """An env config with every default filled in: two configs that build the same env compare equal."""
    import inspect

    from toyland.config_keys import reject_unknown_keys
    from toyland.sim.env import ToylandEnv
    from toyland.sim.tasks import TASKS

    cfg = {**dict(cfg or {}), **overrides}
    reject_unknown_keys(cfg, ENV_KEYS, "env config")
    params = inspect.signature(ToylandEnv.__init__).parameters
    out = {k: p.default for k, p in params.items() if k != "self"}
    out.update(cfg)
    if out.get("max_episode_steps") is None:
        out["max_episode_steps"] = TASKS.get(out["task"]).max_episode_steps
    # YAML-like values only (tuples become lists) so that the config survives a JSON round trip
    import json

    return json.loads(json.dumps(out))
