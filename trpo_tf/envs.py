"""Environments: the paper's short names, any gymnasium id, and a group of envs stepped
together with automatic reset (the gymnasium backend of vectorised sampling)."""
import dataclasses

import gymnasium as gym
import numpy as np


class EnvError(ValueError):
    """A bad --env value; its message is shown to the user as is."""


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    name: str                  # what the user typed
    gym_id: str                # the registered gymnasium id
    policy_hidden: tuple       # default hidden sizes of the policy; () = linear
    description: str = ""


# The paper's locomotion tasks (section 8.1, Table 2). Cart-pole is continuous-action with a
# linear Gaussian policy of 6 parameters (4 weights, 1 bias, 1 log-std): InvertedPendulum-v5
# has exactly that shape. Table 2 gives one hidden layer of 30 (Swimmer) / 50 (Hopper, Walker).
SHORT_NAMES = {
    "Cartpole": EnvSpec("Cartpole", "InvertedPendulum-v5", (), "cart-pole, linear policy"),
    "Swimmer": EnvSpec("Swimmer", "Swimmer-v5", (30,), "swimmer, 30 hidden units"),
    "Hopper": EnvSpec("Hopper", "Hopper-v5", (50,), "hopper, 50 hidden units"),
    "Walker": EnvSpec("Walker", "Walker2d-v5", (50,), "walker, 50 hidden units"),
}
DEFAULT_HIDDEN = (64, 64)  # for any other gymnasium id


def resolve_env(name):
    """A short name or a registered gymnasium id -> EnvSpec; anything else is an EnvError."""
    if name in SHORT_NAMES:
        return SHORT_NAMES[name]
    if name in gym.registry:
        return EnvSpec(name, name, DEFAULT_HIDDEN)
    raise EnvError(
        f"--env={name!r} is neither a short name ({', '.join(SHORT_NAMES)}) "
        "nor a registered gymnasium id (e.g. HalfCheetah-v5, CartPole-v1)")


def make_env(spec, max_path_length=None):
    """One gymnasium env whose TimeLimit truncates paths at max_path_length (None: the id's own)."""
    kwargs = {"disable_env_checker": True}
    if max_path_length:
        kwargs["max_episode_steps"] = max_path_length
    try:
        return gym.make(spec.gym_id, **kwargs)
    except (gym.error.Error, ImportError) as err:
        raise EnvError(f"--env={spec.name!r}: gymnasium could not make {spec.gym_id}: {err}") from err


class EnvGroup:
    """n envs stepped in lock-step with NumPy arrays in and out; done envs reset themselves.

    step() returns the observation to act on next (after any reset) and, for envs whose path
    ended this step, the true final observation (needed to bootstrap a truncated path).
    """

    def __init__(self, spec, num_envs, seed, max_path_length=None):
        self.envs = [make_env(spec, max_path_length) for _ in range(num_envs)]
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self.num_envs = num_envs
        self.seed = seed

    def reset(self):
        return np.stack([env.reset(seed=self.seed + i)[0] for i, env in enumerate(self.envs)])

    def step(self, actions):
        obs, rew, term, trunc, final_obs = [], [], [], [], {}
        for i, (env, action) in enumerate(zip(self.envs, actions)):
            o, r, te, tr, _ = env.step(action)
            if te or tr:
                final_obs[i] = o
                o, _ = env.reset()
            obs.append(o)
            rew.append(r)
            term.append(te)
            trunc.append(tr)
        return np.stack(obs), np.asarray(rew), np.asarray(term), np.asarray(trunc), final_obs

    def close(self):
        for env in self.envs:
            env.close()
