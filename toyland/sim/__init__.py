"""MuJoCo toy world: scenes built with MjSpec, embodiments, toys, tasks, cameras, experts."""

from __future__ import annotations

ENV_KEYS = {
    "task", "embodiment", "toy_set", "num_toys", "cameras", "image_size", "control_mode", "control_hz",
    "physics_dt", "arena", "render_mode", "render_camera", "render_size", "terminate_on_success", "settle_time",
    "max_episode_steps", "factors", "shortcut",
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

