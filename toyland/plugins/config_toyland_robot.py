"""``--robot.type=toyland``'s config (lerobot finds the robot class in ``toyland_robot``, by this
module's name)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lerobot.robots.config import RobotConfig


@RobotConfig.register_subclass("toyland")
@dataclass(kw_only=True)
class ToylandRobotConfig(RobotConfig):
    task: str = "lift"
    embodiment: str = "panda"
    toy_set: str = "train"
    # the env cameras rendered as the robot's images (not `cameras`: lerobot reads that as real camera configs)
    sim_cameras: list[str] = field(default_factory=lambda: ["front"])
    image_size: int = 96
    control_mode: str = "ee_pose"
    control_hz: int = 20
    placement: str = "target_first"
    state: str = "full"  # full | tool (the opening and tool pose only: the same on every embodiment)
    # target: <camera>_mask is the target's mask (0 or 255) | objects: every object's id (0 background, 1..n)
    masks: str = "target"
    max_episode_steps: int | None = None  # an episode's control steps before the next scene; null: the task's own
    factors: dict[str, str] = field(default_factory=dict)
    seed: int = 0  # the first scene's seed; each new episode (reset) takes the next
    report_path: str | None = None  # a JSON file written at disconnect: steps, episodes, successes, clipped actions, latency

    def toyland_env(self) -> dict:
        from toyland.plugins.env import toyland_task

        cfg = {"task": toyland_task(self.task), "embodiment": self.embodiment, "toy_set": self.toy_set,
               "cameras": list(self.sim_cameras), "image_size": self.image_size, "control_mode": self.control_mode,
               "control_hz": self.control_hz, "placement": self.placement, "state": self.state, "masks": self.masks,
               "max_episode_steps": self.max_episode_steps}
        if self.factors:
            cfg["factors"] = dict(self.factors)
        return cfg
