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


class Tiny(gym.Env):
    """A cheap pure-Python env: observations (step / 1000, 1) in Box(2), two actions, reward 1
    per step, never terminating (only a TimeLimit ends it). Faults on purpose: `bad_reward_at`
    gives the reward `bad_reward` (NaN) at that step of the first episode; `bad_shape_at`
    returns a 3-vector at that step (0: at reset)."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, bad_reward_at=None, bad_reward=float("nan"), bad_shape_at=None,
                 malformed_at=None, malformed=None):
        self.bad_reward_at, self.bad_reward, self.bad_shape_at = bad_reward_at, bad_reward, bad_shape_at
        self.malformed_at, self.malformed = malformed_at, malformed
        self.t, self.episodes = 0, 0

    def _obs(self):
        if self.t == self.malformed_at and self.malformed == "strings":
            return np.array(["x", "y"])
        return np.zeros(3) if self.t == self.bad_shape_at else np.array([self.t / 1000, 1.0])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.episodes = 0, self.episodes + 1
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        bad = self.episodes == 1 and self.t == self.bad_reward_at
        if self.t == self.malformed_at and self.malformed == "array_reward":
            return self._obs(), np.ones(2), False, False, {}
        if self.t == self.malformed_at and self.malformed == "four_values":  # the old gym API
            return self._obs(), 1.0, False, {}
        if self.t == self.malformed_at and self.malformed in ("two_values", "none"):
            return (self._obs(), {}) if self.malformed == "two_values" else None
        if self.malformed == "object_array":  # floats in an object array: numbers all the same
            return self._obs().astype(object), 1.0, False, False, {}
        return self._obs(), self.bad_reward if bad else 1.0, False, False, {}


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
        gym.register("RaiseAfter5-v0", entry_point=raising_env, kwargs={"after": 5},
                     max_episode_steps=1000)
        gym.register("NeverEnds-v0", entry_point=Tiny)  # no time limit
        gym.register("NaNRewardOnce-v0", entry_point=Tiny, kwargs={"bad_reward_at": 30},
                     max_episode_steps=1000)
        gym.register("InfRewardOnce-v0", entry_point=Tiny,
                     kwargs={"bad_reward_at": 30, "bad_reward": float("inf")}, max_episode_steps=1000)
        gym.register("BadShapeAtReset-v0", entry_point=Tiny, kwargs={"bad_shape_at": 0},
                     max_episode_steps=1000)
        gym.register("BadShapeAtStep-v0", entry_point=Tiny, kwargs={"bad_shape_at": 50},
                     max_episode_steps=1000)
        for name, kind in (("StringsAtStep-v0", "strings"), ("ArrayRewardAtStep-v0", "array_reward"),
                           ("FourValuesAtStep-v0", "four_values"), ("TwoValuesAtStep-v0", "two_values"),
                           ("NoneAtStep-v0", "none"), ("ObjectArrayObs-v0", "object_array")):
            # no TimeLimit: ours unpacks
            gym.register(name, entry_point=Tiny, kwargs={"malformed_at": 50, "malformed": kind})
