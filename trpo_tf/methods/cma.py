"""CMA-ES (Hansen & Ostermeier 1996, the maintained `cma` package) on the policy's mean
parameters, one of section 8.1's derivative-free baselines."""
import numpy as np

from trpo_tf.methods import population
from trpo_tf.methods.population import PopulationMethod
from trpo_tf.settings import declare, positive

GROUP = "4 method cma"
declare(GROUP, "cma_sigma", 0.5, "cma: initial step size sigma0.", check=positive, rule="> 0")


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


class CMASearch(PopulationMethod):
    algo = "cma"
    setting_groups = (population.GROUP, GROUP)

    def make_search(self, start):
        from trpo_tf import seeding

        return CMA(start, self.cfg.cma_sigma, self.cfg.population,
                   seeding.int_seed(self.parts.seeds["search"]))
