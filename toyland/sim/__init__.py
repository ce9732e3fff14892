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
    from toyland.sim.env import env_id
    from toyland.sim.tasks import TASKS

    cfg = {**dict(cfg or {}), **overrides}
    unknown = set(cfg) - ENV_KEYS
    if unknown:
        raise ValueError(f"unknown env config keys {sorted(unknown)}; valid keys: {sorted(ENV_KEYS)}")
    task = cfg.pop("task", "lift")
    for key in ("cameras", "render_size"):
        if key in cfg and cfg[key] is not None and not isinstance(cfg[key], (str, dict)):
            cfg[key] = list(cfg[key]) if key == "cameras" else tuple(cfg[key])
    if "cameras" in cfg and hasattr(cfg["cameras"], "items"):
        cfg["cameras"] = {k: dict(v or {}) for k, v in cfg["cameras"].items()}
    for key in ("factors", "shortcut"):  # plain containers, whatever the config library
        if cfg.get(key) is not None:
            cfg[key] = _plain(cfg[key])
    return gym.make(env_id(TASKS.get(task)), **cfg)


def _plain(value):
    if hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "ListConfig":
        return [_plain(v) for v in value]
    return value
