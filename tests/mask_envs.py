"""Toy envs that give action masks, registered with gymnasium for the mask tests.

MaskedGrid: a 5 x 5 maze, start top left, goal bottom right (shortest path 8 moves); a move
into a wall or off the grid is illegal: its info["action_mask"] (gymnasium's convention, as
Taxi's) says so, and a policy that takes one anyway loses the episode (-1, as an illegal move
in a game). Reaching the goal pays 1; every move costs 0.02; 40 moves at most. The best
return is 1 - 8 x 0.02 = 0.84.

MaskedMatch: MultiDiscrete [3, 4] Match (space_envs.py) whose `action_masks()` method allows,
per entry, the target and one other value, as a tuple of per-entry masks; an illegal entry
costs 1.

NoLegalAction: Discrete(3) whose info["action_mask"] allows nothing after its third step.
"""
import gymnasium as gym
import numpy as np

S = gym.spaces

MAZE = ("...#.",
        "##.#.",
        ".....",
        ".###.",
        "...#.")
MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))  # up, down, left, right
GOAL = (4, 4)


class MaskedGrid(gym.Env):
    observation_space = S.Discrete(25)
    action_space = S.Discrete(4)

    def _legal(self):
        r, c = self.pos
        return np.array([0 <= r + dr < 5 and 0 <= c + dc < 5 and MAZE[r + dr][c + dc] == "."
                         for dr, dc in MOVES], np.int8)

    def _info(self):
        return {"action_mask": self._legal()}

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = (0, 0)
        return 0, self._info()

    def step(self, action):
        if not self._legal()[action]:
            return 5 * self.pos[0] + self.pos[1], -1.0, True, False, self._info()
        dr, dc = MOVES[action]
        self.pos = (self.pos[0] + dr, self.pos[1] + dc)
        at_goal = self.pos == GOAL
        return 5 * self.pos[0] + self.pos[1], float(at_goal) - 0.02, at_goal, False, self._info()


class MaskedMatch(gym.Env):
    action_space = S.MultiDiscrete([3, 4])
    observation_space = S.MultiDiscrete([3, 4])

    def _draw(self):
        self.target = np.array([self.np_random.integers(n) for n in self.action_space.nvec])
        self.masks = tuple(np.isin(np.arange(n), [t, (t + 1 + self.np_random.integers(n - 1)) % n])
                           for n, t in zip(self.action_space.nvec, self.target))
        return self.target.copy()

    def action_masks(self):
        return self.masks

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return self._draw(), {}

    def step(self, action):
        legal = np.array([m[a] for m, a in zip(self.masks, action)])
        reward = float(np.sum((np.asarray(action) == self.target) & legal) - np.sum(~legal))
        return self._draw(), reward, False, False, {}


class NoLegalAction(gym.Env):
    observation_space = S.Box(-1, 1, (2,), np.float32)
    action_space = S.Discrete(3)

    def _obs(self):
        return np.zeros(2, np.float32), {"action_mask": np.array([self.t < 3] * 3, np.int8)}

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs()

    def step(self, action):
        self.t += 1
        return *self._obs()[:1], 0.0, False, False, self._obs()[1]


def register():
    if "MaskedGrid-v0" in gym.registry:
        return
    gym.register("MaskedGrid-v0", entry_point=MaskedGrid, max_episode_steps=40)
    gym.register("MaskedMatch-v0", entry_point=MaskedMatch, max_episode_steps=20)
    gym.register("NoLegalAction-v0", entry_point=NoLegalAction, max_episode_steps=20)


register()  # importing the module registers them (the module:EnvId form relies on it)
