"""toyland inside lerobot's own CLIs: an env type (``--env.type=toyland``), policy types
(``--policy.type=toyland_diffusion``, ``toyland_vla``) and a robot type (``--robot.type=toyland``).

lerobot imports a plugin distribution named ``lerobot_env_*``, ``lerobot_policy_*`` or
``lerobot_robot_*`` before parsing its arguments; the three under plugins/ in this repository import
the modules here, which register with lerobot's config registries. Importing this package imports
lerobot."""
