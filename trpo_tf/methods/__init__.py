"""The methods `--algo` (and `--sampler`) select, one module each; the update maths they share
is in update.py (the trust-region step) and weighted_fit.py (weighted maximum likelihood).

Adding a method: a module with a `Method` subclass (base.py) and its settings, and one line
in METHODS below.
"""
from trpo_tf.methods import (cem, cma, empirical_fim, max_kl, natural_gradient, ppo, reps, rwr,
                             trpo, vine)

METHODS = (
    trpo.TRPO,                           # single path (section 5.1)
    vine.Vine,                           # --sampler=vine (section 5.2)
    natural_gradient.NaturalGradient,
    empirical_fim.EmpiricalFIM,
    max_kl.MaxKL,
    cem.CEMSearch,
    cma.CMASearch,
    rwr.RWR,
    reps.REPS,
    ppo.PPO,                             # clipped surrogate (Schulman et al. 2017)
)
REGISTRY = {(m.algo, m.sampler_name): m for m in METHODS}
ALGOS = tuple(dict.fromkeys(m.algo for m in METHODS))
SAMPLERS = tuple(dict.fromkeys(m.sampler_name for m in METHODS))


def algos_that(attribute):
    """The --algo values of the methods whose class `attribute` is true, '|'-joined."""
    return "|".join(dict.fromkeys(m.algo for m in METHODS if getattr(m, attribute)))


def samplers_of(algo):
    return [sampler for a, sampler in REGISTRY if a == algo]


def method_for(cfg):
    """The Method class of cfg.algo on cfg.sampler (validate() has checked there is one)."""
    return REGISTRY[(cfg.algo, cfg.sampler)]
