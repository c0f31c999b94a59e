"""Snapshot / restore of a gymnasium env's whole simulator state, bit-identically.

MuJoCo: mj_getState / mj_setState with the integration state (qpos, qvel, act, warm-start
accelerations, time...), plus the env's reset RNG and the TimeLimit step counter, so that
stepping a restored env (resets included) repeats exactly. The vine sampler (section 5.2)
branches from such snapshots; checkpoints use them to resume sampling mid-episode.
"""
import gymnasium as gym
import mujoco
import numpy as np

_SPEC = mujoco.mjtState.mjSTATE_INTEGRATION


class NotRestorable(ValueError):
    """The env's simulator state cannot be saved and restored."""


def _time_limit(env):
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return env
        env = env.env
    return None


def _mujoco(env):
    base = env.unwrapped
    if not (hasattr(base, "model") and hasattr(base, "data")
            and isinstance(base.data, mujoco.MjData)):
        raise NotRestorable(f"{env.spec.id if env.spec else base}: only MuJoCo envs can be "
                            "snapshotted and restored")
    return base


def snapshot(env):
    base = _mujoco(env)
    physics = np.empty(mujoco.mj_stateSize(base.model, _SPEC))
    mujoco.mj_getState(base.model, base.data, physics, _SPEC)
    limit = _time_limit(env)
    return {"physics": physics, "rng": base.np_random.bit_generator.state,
            "elapsed_steps": None if limit is None else limit._elapsed_steps}


def restore(env, snap):
    base = _mujoco(env)
    mujoco.mj_setState(base.model, base.data, snap["physics"], _SPEC)
    base.np_random.bit_generator.state = snap["rng"]
    limit = _time_limit(env)
    if limit is not None:
        limit._elapsed_steps = snap["elapsed_steps"]
