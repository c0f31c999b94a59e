"""Snapshot / restore of a gymnasium env's whole simulator state, bit-identically.

MuJoCo: mj_getState / mj_setState with the integration state (qpos, qvel, act, warm-start
accelerations, time...). ALE: cloneState(include_rng=True) / restoreState, the RNG of sticky
actions included. Both also keep the env's reset RNG, the TimeLimit step counter and the
state of the Atari wrappers (the frame stack, the max-pooling buffers, the life counter), so
that stepping a restored env (resets included) repeats exactly. The vine sampler (section 5.2)
branches from such snapshots; checkpoints use them to resume sampling mid-episode.
"""
import gymnasium as gym
import mujoco
import numpy as np

_SPEC = mujoco.mjtState.mjSTATE_INTEGRATION


class NotRestorable(ValueError):
    """The env's simulator state cannot be saved and restored."""


def _wrappers(env):
    while isinstance(env, gym.Wrapper):
        yield env
        env = env.env


def _time_limit(env):
    return next((w for w in _wrappers(env) if isinstance(w, gym.wrappers.TimeLimit)), None)


def _is_mujoco(base):
    return hasattr(base, "model") and isinstance(getattr(base, "data", None), mujoco.MjData)


def _is_ale(base):
    return hasattr(base, "ale") and hasattr(base.ale, "cloneState")


def _simulator(env):
    base = env.unwrapped
    if not (_is_mujoco(base) or _is_ale(base)):
        raise NotRestorable(f"{env.spec.id if env.spec else base}: only MuJoCo and ALE envs can "
                            "be snapshotted and restored")
    return base


def _wrapper_state(wrapper):
    """The mutable state of the wrappers that keep any (copied), else None."""
    if isinstance(wrapper, gym.wrappers.FrameStackObservation):
        return [np.array(frame) for frame in wrapper.obs_queue]
    if isinstance(wrapper, gym.wrappers.AtariPreprocessing):
        return [b.copy() for b in wrapper.obs_buffer], wrapper.lives, wrapper.game_over
    return None


def _set_wrapper_state(wrapper, state):
    if isinstance(wrapper, gym.wrappers.FrameStackObservation):
        wrapper.obs_queue.extend(np.array(frame) for frame in state)
    elif isinstance(wrapper, gym.wrappers.AtariPreprocessing):
        buffers, wrapper.lives, wrapper.game_over = state
        for dst, src in zip(wrapper.obs_buffer, buffers):
            dst[...] = src


def snapshot(env):
    base = _simulator(env)
    if _is_ale(base):
        physics = base.ale.cloneState(include_rng=True)
    else:
        physics = np.empty(mujoco.mj_stateSize(base.model, _SPEC))
        mujoco.mj_getState(base.model, base.data, physics, _SPEC)
    limit = _time_limit(env)
    return {"physics": physics, "rng": base.np_random.bit_generator.state,
            "elapsed_steps": None if limit is None else limit._elapsed_steps,
            "wrappers": [_wrapper_state(w) for w in _wrappers(env)]}


def restore(env, snap):
    base = _simulator(env)
    if _is_ale(base):
        base.ale.restoreState(snap["physics"])
    else:
        mujoco.mj_setState(base.model, base.data, snap["physics"], _SPEC)
    base.np_random.bit_generator.state = snap["rng"]
    limit = _time_limit(env)
    if limit is not None:
        limit._elapsed_steps = snap["elapsed_steps"]
    for wrapper, state in zip(_wrappers(env), snap["wrappers"]):
        _set_wrapper_state(wrapper, state)
