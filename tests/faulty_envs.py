"""Envs that misbehave on purpose, registered with gymnasium for the fault tests."""
import gymnasium as gym
import numpy as np


class NaNObservations(gym.ObservationWrapper):
    """InvertedPendulum whose observations turn NaN from global step `start` to `stop`."""

    steps = 0

    def __init__(self, env, start, stop):
        super().__init__(env)
        self.start, self.stop = start, stop

    def observation(self, obs):
        NaNObservations.steps += 1
        if self.start <= NaNObservations.steps < self.stop:
            return np.full_like(obs, np.nan)
        return obs


class RaiseAfter(gym.Wrapper):
    def __init__(self, env, after):
        super().__init__(env)
        self.after, self.count = after, 0

    def step(self, action):
        self.count += 1
        if self.count > self.after:
            raise FloatingPointError("simulator diverged")
        return self.env.step(action)


def register():
    def nan_env(start, stop, **kwargs):
        return NaNObservations(gym.make("InvertedPendulum-v5", **kwargs), start, stop)

    def raising_env(after, **kwargs):
        return RaiseAfter(gym.make("InvertedPendulum-v5", **kwargs), after)

    if "NaNForever-v0" not in gym.registry:
        gym.register("NaNForever-v0", entry_point=nan_env, kwargs={"start": 1200, "stop": 10**9},
                     max_episode_steps=1000)
        gym.register("NaNOnce-v0", entry_point=nan_env, kwargs={"start": 1200, "stop": 1300},
                     max_episode_steps=1000)
        gym.register("RaiseAfter-v0", entry_point=raising_env, kwargs={"after": 700},
                     max_episode_steps=1000)
