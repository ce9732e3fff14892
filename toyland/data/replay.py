"""The simulator state recorded per frame, and replaying a recorded episode from it under new
appearance factors (``toyland augment``).

What is recorded. Seeds reproduce an episode's start (toys, poses, factor values: each factor draws
from its own stream), but not its course: DART noise, a policy's actions or a different control
rate change it, and re-simulating would replay physics for nothing. So collection stores, for every
frame, ``mj_getState(mjSTATE_INTEGRATION)`` (time, qpos, qvel, act, warm start, controls, applied
forces, mocap, ...: everything ``mj_step`` reads, so a later step from it is bit-identical, not only
a render) in ``sim/episode_<index>.npz`` beside the LeRobotDataset. The state's size depends on the
episode's toys (a free body each), which a fixed-shape lerobot feature cannot hold, hence a side
file per episode; toyland's writer checkpoints it with the episode.

What was rendered. toyland renders after ``mj_step``, whose kinematics (``xpos``, ``cam_xpos``, ...)
are those computed at the start of the last physics substep, one timestep before the stored qpos
(measured: up to 0.8 mm on a moving arm). ``render_qpos`` records the qpos those kinematics belong
to (found at collection by checking the candidates against ``data.xpos``), so a replay sets the
state, puts ``render_qpos`` in, runs ``mj_forward``, puts the state's qpos back (as after
``mj_step``) and renders the recorded picture again.
"""

from __future__ import annotations

import mujoco
import numpy as np

SIM_STATE = mujoco.mjtState.mjSTATE_INTEGRATION
KINEMATICS_TOLERANCE = 1e-9  # metres / quaternion units: a candidate qpos reproduces the rendered poses


class ReplayError(ValueError):
    """An episode that cannot be replayed (named with the reason)."""


class SimStateTap:
    """Captures the simulator state at observation time, frame after frame (one per episode)."""

    def __init__(self):
        self.state: list[np.ndarray] = []
        self.render_qpos: list[np.ndarray] = []
        self._scratch: tuple[mujoco.MjModel, mujoco.MjData] | None = None

    def capture(self, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        state = np.empty(mujoco.mj_stateSize(model, SIM_STATE))
        mujoco.mj_getState(model, data, state, SIM_STATE)
        self.state.append(state)
        self.render_qpos.append(self.rendered_qpos(model, data))

    def rendered_qpos(self, model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
        """The qpos whose kinematics ``data`` holds: its own (after ``mj_forward``) or one timestep back
        (after ``mj_step``, which integrates after computing them)."""
        if self._scratch is None or self._scratch[0] is not model:
            self._scratch = (model, mujoco.MjData(model))
        scratch = self._scratch[1]
        back = data.qpos.copy()
        mujoco.mj_integratePos(model, back, data.qvel, -model.opt.timestep)
        for candidate in (back, data.qpos):
            scratch.qpos[:] = candidate
            scratch.mocap_pos[:], scratch.mocap_quat[:] = data.mocap_pos, data.mocap_quat
            mujoco.mj_kinematics(model, scratch)
            if (np.abs(scratch.xpos - data.xpos).max(initial=0) < KINEMATICS_TOLERANCE
                    and np.abs(scratch.xquat - data.xquat).max(initial=0) < KINEMATICS_TOLERANCE):
                return candidate.copy()
        raise RuntimeError("the rendered poses match neither the state's qpos nor the qpos one timestep back; "
                           "the env's integration changed and toyland.data.replay must learn it (a toyland bug)")

    def arrays(self) -> dict[str, np.ndarray]:
        return {"state": np.stack(self.state), "render_qpos": np.stack(self.render_qpos),
                "spec": np.array(int(SIM_STATE))}


def set_rendered_state(model: mujoco.MjModel, data: mujoco.MjData, state: np.ndarray, render_qpos: np.ndarray) -> None:
    """Puts ``data`` as it was when a recorded frame was observed: the state (whose qpos the robot
    state reads) with the kinematics of ``render_qpos`` (which the cameras see)."""
    mujoco.mj_setState(model, data, state, SIM_STATE)
    data.qpos[:] = render_qpos
    mujoco.mj_forward(model, data)
    mujoco.mj_setState(model, data, state, SIM_STATE)  # sets, computes nothing: the kinematics stay


def current_state(model: mujoco.MjModel, data: mujoco.MjData) -> np.ndarray:
    state = np.empty(mujoco.mj_stateSize(model, SIM_STATE))
    mujoco.mj_getState(model, data, state, SIM_STATE)
    return state
