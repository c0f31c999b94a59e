"""The sampler of the derivative-free methods (methods/cem.py, methods/cma.py): each batch
asks the search for a population of parameter vectors and plays one deterministic episode per
candidate, several candidates at once across the envs with one batched forward pass
(per-candidate weights); the method tells the search the returns. With --workers the
candidates are played by the Ray workers, a contiguous block each (CandidatePlayer), with the
seeds drawn here: the same episodes.
"""
import numpy as np

from trpo_tf.sampling import env_action_fn, episode_fields, play_episodes


def play_candidates(envs, policy, candidates, seeds, progress=None):
    """One deterministic episode per candidate parameter vector (the layout of the policy's
    mean_variables), len(envs) at a time, reset with `seeds` -> (returns [n], lengths [n]);
    progress(steps so far) after each round, if given."""
    act = policy.population_fn(candidates)
    env_action, mode = env_action_fn(envs.action_space, policy.dist), policy.dist.mode_np
    n = len(candidates)
    returns, lengths = np.zeros(n), np.zeros(n, np.int64)
    for first in range(0, n, len(envs.envs)):
        rows = np.arange(first, min(n, first + len(envs.envs)))
        returns[rows], lengths[rows] = play_episodes(
            envs.envs[: len(rows)], [seeds[r] for r in rows],
            lambda obs, idx, masks: mode(act(obs, rows[idx])), env_action,  # no masks: refused
            gym_id=envs.gym_id)
        if progress:
            progress(int(lengths.sum()))
    return returns, lengths


def candidate_batch(returns, lengths):
    """The batch of a population's episodes: their returns, as episodes, and their steps."""
    return {"returns": returns.astype(np.float32), **episode_fields(list(zip(returns, lengths))),
            "sim_steps": np.float32(lengths.sum())}


class CandidatePlayer:
    """A Ray worker's sampler for CEM / CMA: plays the candidates it is sent."""

    def __init__(self, envs, policy):
        self.envs, self.policy = envs, policy

    def sample(self, params_fn, candidates, seeds):
        del params_fn  # the candidates carry their own parameters
        return candidate_batch(*play_candidates(self.envs, self.policy, candidates, seeds))

    def state(self):
        return {}  # the search and its draws live in the learner's PopulationSearch

    def load_state(self, state):
        del state


class PopulationSearch:
    """The sampler of --algo=cem|cma: one episode per candidate parameter vector."""
    state_needs_same_envs = False  # its state is the search: it resumes whatever the envs

    def __init__(self, envs, policy, optimizer, population, seed):
        self.envs, self.policy, self.optimizer = envs, policy, optimizer
        self.population = population
        self.rng = np.random.default_rng(seed)
        self.play = self.play_here  # with --workers: the Ray workers' (RaySampler)
        self._asked = None
        self.batches_produced = 0
        self.progress = 0  # steps of the population's episodes so far

    def sample(self, params_fn):
        """Ask for a population and play it -> batch (params_fn is unused: the candidates
        carry their own parameters). Each candidate's reset seed is drawn here, in order, so
        where it is played does not change its episode."""
        del params_fn
        self._asked = self.optimizer.ask(self.population)
        seeds = [int(self.rng.integers(2**31)) for _ in range(len(self._asked))]
        batch = self.play(self._asked, seeds)
        self.batches_produced += 1
        return batch

    def play_here(self, candidates, seeds):
        def progress(steps):
            self.progress = steps

        return candidate_batch(*play_candidates(self.envs, self.policy, candidates, seeds,
                                                progress))

    def tell(self, returns):
        """Update the search distribution; the policy takes its new mean."""
        self.optimizer.tell(self._asked, returns)
        self.policy.set_mean_parameters(self.optimizer.mean)

    def state(self):
        return {"optimizer": self.optimizer, "rng": self.rng.bit_generator.state}

    def load_state(self, state):
        self.optimizer = state["optimizer"]
        self.rng.bit_generator.state = state["rng"]
