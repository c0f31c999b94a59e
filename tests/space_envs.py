"""Toy envs with the spaces users bring, registered with gymnasium for the space tests.

Match: each step shows a random target (in the observation) and pays one per action entry that
equals it, for 20 steps: a random policy earns the chance rate, a learned one up to 20 x entries.
"""
import gymnasium as gym
import numpy as np

S = gym.spaces


class Match(gym.Env):
    def __init__(self, action_space, observe):
        self.action_space = action_space
        self.target_space = S.MultiDiscrete(action_space.nvec) if isinstance(
            action_space, S.MultiDiscrete) else S.MultiBinary(action_space.n)
        self.observation_space = observe(self.target_space)
        self.observe = observe
        self.t = 0

    def _obs(self):
        self.target = self.target_space.sample()
        if isinstance(self.observation_space, S.Dict):
            return {"target": self.target, "noise": self.np_random.normal(size=2).astype(np.float32)}
        return self.target

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.target_space.seed(int(self.np_random.integers(2**31)))
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        reward = float(np.sum(np.asarray(action) == self.target))
        self.t += 1
        return self._obs(), reward, False, self.t >= 20, {}


class Fixed(gym.Env):
    """Observations / actions of any given spaces, reward 0: for the refusal tests."""

    def __init__(self, observation_space, action_space):
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, True, {}


def register():
    if "MatchMultiDiscrete-v0" in gym.registry:
        return
    dict_obs = lambda target: S.Dict({"target": target, "noise": S.Box(-5, 5, (2,), np.float32)})
    gym.register("MatchMultiDiscrete-v0", entry_point=Match, max_episode_steps=20,
                 kwargs={"action_space": S.MultiDiscrete([3, 4]), "observe": dict_obs})
    gym.register("MatchMultiBinary-v0", entry_point=Match, max_episode_steps=20,
                 kwargs={"action_space": S.MultiBinary(4), "observe": lambda target: target})
    box2d = S.Box(-1, 1, (2, 3), np.float32)
    gym.register("Box2DObs-v0", entry_point=Fixed, max_episode_steps=5,
                 kwargs={"observation_space": box2d, "action_space": S.Discrete(2)})
    gym.register("ImageObs-v0", entry_point=Fixed, max_episode_steps=5,
                 kwargs={"observation_space": S.Box(0, 255, (16, 16, 3), np.uint8),
                         "action_space": S.Box(-1, 1, (2,), np.float32)})
    gym.register("MatrixAction-v0", entry_point=Fixed, max_episode_steps=5,
                 kwargs={"observation_space": S.Box(-1, 1, (3,), np.float32),
                         "action_space": S.Box(-1, 1, (2, 2), np.float32)})
    gym.register("TextObs-v0", entry_point=Fixed, max_episode_steps=5,
                 kwargs={"observation_space": S.Dict({"a": S.Box(-1, 1, (2,)), "b": S.Text(5)}),
                         "action_space": S.Discrete(2)})


register()  # importing the module registers them (the module:EnvId form relies on it)
