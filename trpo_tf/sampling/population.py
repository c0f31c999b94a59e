"""The sampler of the derivative-free methods (methods/cem.py, methods/cma.py): each batch
asks the search for a population of parameter vectors and plays one deterministic episode per
candidate, several candidates at once across the envs with one batched forward pass
(per-candidate weights); the method tells the search the returns.
"""
import numpy as np

from trpo_tf.sampling import env_action_fn, episode_fields, play_episodes


class PopulationSearch:
    """The sampler of --algo=cem|cma: one episode per candidate parameter vector."""

    def __init__(self, envs, policy, optimizer, population, seed):
        self.envs, self.policy, self.optimizer = envs, policy, optimizer
        self.population = population
        self.rng = np.random.default_rng(seed)
        self._env_action = env_action_fn(envs.action_space, policy.dist)
        self._asked = None
        self.batches_produced = 0
        self.progress = 0  # steps of the population's episodes so far

    def sample(self, params_fn):
        """Ask for a population and play it -> batch (params_fn is unused: the candidates
        carry their own parameters)."""
        del params_fn
        self._asked = self.optimizer.ask(self.population)
        act = self.policy.population_fn(self._asked)
        returns, lengths, steps = self.play(act, len(self._asked))
        self.batches_produced += 1
        return {"returns": returns.astype(np.float32),
                **episode_fields(list(zip(returns, lengths))),
                "sim_steps": np.float32(steps)}

    def play(self, act, n):
        """One deterministic episode per candidate, len(envs) at a time; act(obs [B, ...],
        rows [B]) -> the mean (or logits) of candidates `rows` -> (returns [n], lengths [n],
        steps)."""
        envs, mode = self.envs.envs, self.policy.dist.mode_np
        returns, lengths = np.zeros(n), np.zeros(n, np.int64)
        for first in range(0, n, len(envs)):
            rows = np.arange(first, min(n, first + len(envs)))
            seeds = [int(self.rng.integers(2**31)) for _ in rows]
            returns[rows], lengths[rows] = play_episodes(
                envs[: len(rows)], seeds, lambda obs, idx: mode(act(obs, rows[idx])),
                self._env_action)
            self.progress = int(lengths.sum())
        return returns, lengths, int(lengths.sum())

    def tell(self, returns):
        """Update the search distribution; the policy takes its new mean."""
        self.optimizer.tell(self._asked, returns)
        self.policy.set_mean_parameters(self.optimizer.mean)

    def state(self):
        return {"optimizer": self.optimizer, "rng": self.rng.bit_generator.state}

    def load_state(self, state):
        self.optimizer = state["optimizer"]
        self.rng.bit_generator.state = state["rng"]
