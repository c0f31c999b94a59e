"""Producers of one Batch structure (NumPy arrays, whole batches at a time), and what the
single path and vine samplers share."""
import os

import numpy as np

from trpo_tf.envs import action_mask, checked


def batch_obs_dtype(space):
    """What observations travel as: float64 is narrowed to float32, anything else (Atari's
    uint8 frames) stays as it is until inside the graph."""
    return np.dtype(np.float32) if space.dtype == np.float64 else space.dtype


def available_memory():
    """Bytes of memory available to a new allocation (Linux MemAvailable), or None."""
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def resident_memory():
    """Bytes of this process's resident memory (Linux), 0 elsewhere."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def observation_memory(space, states):
    """Bytes that `states` observations take while a batch is built: the sampler's buffer,
    its env-major copy and the tf.data tensor (three copies)."""
    return 3 * states * int(np.prod(space.shape)) * batch_obs_dtype(space).itemsize


def env_action_fn(action_space, dist):
    """Policy actions -> what the env is given: Gaussian draws are clipped to the Box (the
    batch keeps the unclipped draw, whose log-probability the surrogate needs). A non-finite
    draw (the policy saw a NaN observation) reaches the simulator as 0 clipped to the Box, never
    as NaN: MuJoCo would log it to MUJOCO_LOG.TXT in the working directory and reset itself;
    the batch keeps the NaN, and the fault check skips the iteration."""
    if dist.discrete:  # Discrete / MultiDiscrete may start at another value than 0
        start = getattr(action_space, "start", 0)
        return (lambda actions: actions + start) if np.any(start) else (lambda actions: actions)
    low, high = action_space.low, action_space.high
    if not (np.isfinite(low).all() and np.isfinite(high).all()):  # +-inf becomes finite
        return lambda actions: np.clip(np.nan_to_num(actions, nan=0.0), low, high)
    zero = np.clip(np.zeros_like(low), low, high)
    # within finite bounds, the values above (up to the sign of a zero) in a third of the time:
    # it runs on every step, before the simulators may go on
    return lambda actions: np.fmin(np.fmax(np.where(actions == actions, actions, zero), low), high)


def play_episodes(envs, reset_seeds, act, to_env, what="env", mask_source=None, gym_id=None):
    """One whole episode in each of `envs` (reset with `reset_seeds`), stepped together with
    one batched call per step: act(obs [B, ...], idx [B], masks [B, K] or None) -> the
    policy's actions for envs `idx`, which to_env turns into what the envs take -> (returns
    [n], lengths [n]). With `mask_source` (envs.mask_source's), `masks` are the envs' legal
    actions. An env that raises, returns a misshapen observation or a mask with no legal
    action is an EnvStepError naming it as `what`."""
    gym_id = gym_id or (envs[0].spec.id if envs[0].spec else "the env")  # in errors
    where = [f"{gym_id} {what} {e} of {len(envs)}" for e in range(len(envs))]
    starts = [checked(lambda: env.reset(seed=s), env, w)
              for env, s, w in zip(envs, reset_seeds, where)]
    obs = np.stack([o for o, _ in starts]).astype(batch_obs_dtype(envs[0].observation_space))
    masks = (np.stack([action_mask(env, info, mask_source, w, 0)
                       for env, (_, info), w in zip(envs, starts, where)]) if mask_source else None)
    returns, lengths = np.zeros(len(envs)), np.zeros(len(envs), np.int64)
    alive = np.ones(len(envs), bool)
    while alive.any():
        idx = np.flatnonzero(alive)
        for e, a in zip(idx, to_env(act(obs[idx], idx, None if masks is None else masks[idx]))):
            o, r, term, trunc, info = checked(lambda: envs[e].step(a), envs[e], where[e], 5)
            obs[e], returns[e], lengths[e] = o, returns[e] + r, lengths[e] + 1
            alive[e] = not (term or trunc)
            if masks is not None and alive[e]:
                masks[e] = action_mask(envs[e], info, mask_source, where[e], lengths[e])
    return returns, lengths


def episode_fields(episodes):
    """[(return, length)] of finished episodes -> the batch's episode_return / episode_length."""
    ep = np.asarray(episodes, np.float64).reshape(-1, 2)
    return {"episode_return": ep[:, 0].astype(np.float32),
            "episode_length": ep[:, 1].astype(np.float32)}
