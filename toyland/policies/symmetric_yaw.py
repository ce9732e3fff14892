"""The jaw's yaw as a policy target without a cut, for parallel grippers.

A parallel jaw turned by half a turn is the same jaw, so in ``ee_pose`` actions a toy lying across the
jaw's home direction is taken at ``rz`` near +0.5 or near -0.5 (a yaw of +90 or -90 degrees from the home
orientation), whichever side the plan's rounding fell on. Those are one grasp with two targets a whole
action range apart; a policy that blurs them turns the jaw to 0, across the grasp it wanted. Here the
yaw ``psi = pi * rz`` is learnt as ``(cos 2 psi, sin 2 psi)``, which is the same for both, and decoded
to the equivalent yaw nearest the tool's current one (read from the state's tcp quaternion), step by
step along the chunk, so the jaw never turns more than a quarter turn to reach a grasp.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from toyland.policies.features import ACTION, PolicyFeatures

QUATERNION = ("tcp.qw", "tcp.qx", "tcp.qy", "tcp.qz")


def tool_yaw(quat: torch.Tensor) -> torch.Tensor:
    """World yaw of the jaw's closing axis (the tcp frame's y axis) from [..., 4] (w, x, y, z) quaternions."""
    w, x, y, z = quat.unbind(-1)
    r01, r11 = 2 * (x * y - w * z), 1 - 2 * (x * x + z * z)
    return torch.atan2(r11, r01)


class SymmetricYaw(nn.Module):
    """Raw action chunks [B, H, A] <-> targets [B, H, A + 1]: ``rz`` becomes ``cos 2 psi`` in place and
    ``sin 2 psi`` is appended. ``reference`` is the world yaw that ``rz = 0`` means (the controller's
    home orientation), fitted on training frames."""

    def __init__(self, features: PolicyFeatures):
        super().__init__()
        missing = [n for n in QUATERNION if n not in features.state_names]
        missing += [] if "rz" in features.action_names else ["rz"]
        if missing:
            raise ValueError(f"symmetric_yaw needs the tool quaternion in the state {QUATERNION} and 'rz' in the "
                             f"action; the data lacks {missing} (collect with env.control_mode=ee_pose)")
        self.quat_index = [features.state_names.index(n) for n in QUATERNION]
        self.rz = features.action_names.index("rz")
        self.register_buffer("reference", torch.zeros(()))

    def fit(self, actions: list[torch.Tensor], states: list[torch.Tensor]) -> None:
        """Raw chunks and state histories: the reference is the circular mean of the tool's yaw minus the
        commanded yaw (they differ by the tracking lag, a few degrees). A full turn, not a half: the
        controller turns the tool by what ``rz`` says, so half a turn off would turn the arm around."""
        offset = torch.cat([tool_yaw(s[:, -1, self.quat_index]) - math.pi * a[:, 0, self.rz]
                            for a, s in zip(actions, states)])
        self.reference.fill_(float(torch.atan2(torch.sin(offset).mean(), torch.cos(offset).mean())))

    def to_target(self, target: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """A normalized chunk [B, H, A] (of the raw ``actions``) -> [B, H, A + 1]: cos 2 psi in rz's place,
        sin 2 psi appended (both in [-1, 1] like the rest)."""
        coded = self.encode(actions)
        out = torch.cat([target, coded[..., -1:]], -1)
        out[..., self.rz] = coded[..., self.rz]
        return out

    def from_target(self, target: torch.Tensor, state: torch.Tensor, normalizer) -> torch.Tensor:
        """[B, H, A + 1] -> the normalized chunk [B, H, A], its yaw chosen from the raw ``state``'s tool yaw."""
        raw = normalizer.unnormalize(ACTION, target[..., :-1])
        raw[..., self.rz] = self.decode(target, state)[..., self.rz]
        return normalizer.normalize(ACTION, raw)

    def encode(self, actions: torch.Tensor) -> torch.Tensor:
        psi = math.pi * actions[..., self.rz]
        out = actions.clone()
        out[..., self.rz] = torch.cos(2 * psi)
        return torch.cat([out, torch.sin(2 * psi)[..., None]], -1)

    def decode(self, target: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Targets [B, H, A + 1] and raw state history [B, T, S] -> raw actions [B, H, A]."""
        half = torch.atan2(target[..., -1], target[..., self.rz]) / 2  # one of the two equivalent yaws
        previous = tool_yaw(state[:, -1, self.quat_index]) - self.reference  # [B], in the action's frame
        previous = torch.atan2(torch.sin(previous), torch.cos(previous))  # within half a turn of rz = 0
        yaws = []
        for k in range(target.shape[1]):  # the equivalent nearest the yaw before it
            psi = half[:, k] + math.pi * torch.round((previous - half[:, k]) / math.pi)
            yaws.append(psi)
            previous = psi
        out = target[..., :-1].clone()
        out[..., self.rz] = (torch.stack(yaws, 1) / math.pi).clamp(-1.0, 1.0)
        return out
