"""The cross-entropy method (Szita & Lorincz 2006, with decreasing extra noise) on the
policy's mean parameters, one of section 8.1's derivative-free baselines."""
import numpy as np

from trpo_tf.methods import population
from trpo_tf.methods.population import PopulationMethod
from trpo_tf.settings import at_least, declare, in_unit_interval, positive

GROUP = "4 method cem"
declare(GROUP, "cem_elite_frac", 0.2, "cem: fraction of the population refitted to.",
        check=in_unit_interval(), rule="in (0, 1]")
declare(GROUP, "cem_init_std", 1.0, "cem: initial std of the parameter search.",
        check=positive, rule="> 0")
declare(GROUP, "cem_extra_noise", 0.1,
        "cem: variance added after each refit (Szita & Lorincz 2006) ...",
        check=at_least(0.0), rule=">= 0")
declare(GROUP, "cem_noise_decay", 0.9, "cem: --cem_extra_noise multiplied by this per iteration.",
        check=in_unit_interval(), rule="in (0, 1]")


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


class CEMSearch(PopulationMethod):
    algo = "cem"
    setting_groups = (population.GROUP, GROUP)

    def make_search(self, start):
        cfg = self.cfg
        return CEM(start, cfg.cem_init_std, cfg.cem_elite_frac, cfg.cem_extra_noise,
                   cfg.cem_noise_decay, self.parts.seeds["search"])
