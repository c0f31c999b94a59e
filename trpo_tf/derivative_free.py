"""Derivative-free baselines of section 8.1 on the policy's own parameters: the cross-entropy
method (Szita & Lorincz 2006, with decreasing extra noise) and CMA-ES (Hansen & Ostermeier
1996, the maintained `cma` package). Both search over the parameters of the action mean
(the log-std vector plays no part: candidates act deterministically, by their mean or argmax)
and score each candidate by the return of one episode.

PopulationSearch is the sampler of these runs: each batch asks the optimiser for a
population, plays one episode per candidate, several candidates at once across the envs with
one batched forward pass (per-candidate weights), and the training loop tells the optimiser
the returns.
"""
import numpy as np

from trpo_tf.sampling import env_action_fn, episode_fields, play_episodes


class CEM:
    """Diagonal-Gaussian cross-entropy method: refit mean and variance to the elite fraction,
    plus extra variance extra_noise * noise_decay^t so the search does not collapse early."""

    def __init__(self, mean, init_std, elite_frac, extra_noise, noise_decay, seed):
        self.mean = np.asarray(mean, np.float64)
        self.var = np.full_like(self.mean, init_std**2)
        self.elite_frac, self.extra_noise, self.noise_decay = elite_frac, extra_noise, noise_decay
        self.rng = np.random.default_rng(seed)
        self.iteration = 0

    def ask(self, n):
        return self.mean + np.sqrt(self.var) * self.rng.standard_normal((n, self.mean.size))

    def tell(self, candidates, returns):
        n_elite = max(1, int(round(self.elite_frac * len(returns))))
        elite = candidates[np.argsort(returns)[::-1][:n_elite]]
        self.mean = elite.mean(0)
        self.var = elite.var(0) + self.extra_noise * self.noise_decay**self.iteration
        self.iteration += 1

    @property
    def spread(self):
        return float(np.sqrt(self.var).mean())


class CMA:
    """CMA-ES from the `cma` package, maximising the return (it minimises the cost)."""

    def __init__(self, mean, sigma0, population, seed):
        import cma

        self.es = cma.CMAEvolutionStrategy(
            np.asarray(mean, np.float64), sigma0,
            {"popsize": population, "seed": seed + 1, "verbose": -9})

    def ask(self, n):
        del n  # the population size was fixed at construction
        return np.asarray(self.es.ask())

    def tell(self, candidates, returns):
        self.es.tell(list(candidates), list(-np.asarray(returns, np.float64)))

    @property
    def mean(self):
        return np.asarray(self.es.mean)

    @property
    def spread(self):
        return float(self.es.sigma)


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
