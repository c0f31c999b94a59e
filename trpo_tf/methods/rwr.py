"""Reward-weighted regression (Peters & Schaal 2007), the EM-like baseline of section 8.1:
E-step, weights exp((Q - max Q) / (T std Q)) on Monte Carlo returns (Q-hat, not normalised,
rewards not scaled); M-step, weighted maximum likelihood (weighted_fit.py)."""
from trpo_tf.methods.base import REWARD_SCALE_TAGS, AdvantageMethod
from trpo_tf.settings import at_least, declare, positive

GROUP = "4 method rwr"
declare(GROUP, "rwr_temperature", 0.5, "rwr: weights exp((Q - max Q) / (T std Q)).",
        check=positive, rule="> 0")
declare(GROUP, "rwr_epochs", 50,
        "rwr: full-batch Adam steps of the weighted maximum-likelihood refit.",
        check=at_least(1), rule=">= 1")
declare(GROUP, "rwr_lr", 0.01, "rwr: Adam learning rate of the refit.", check=positive,
        rule="> 0")


class RWR(AdvantageMethod):
    algo = "rwr"
    setting_groups = (GROUP,)
    advantage_settings = {"advantage": "q", "normalize_advantages": False}
    scales_rewards = False
    tags = {**{k: v for k, v in AdvantageMethod.tags.items() if k not in REWARD_SCALE_TAGS},
            "rwr_effective_samples": "RWR/EffectiveSamples"}

    def make_learner(self):
        from trpo_tf.methods.base import behaviour_specs
        from trpo_tf.methods.weighted_fit import RWRLearner

        cfg, sig, parts = self.cfg, self.signature, self.parts
        return RWRLearner(parts.policy, parts.dist,
                          [parts.obs_spec, sig["act"], sig["rew"], *behaviour_specs(parts)],
                          cfg.rwr_temperature, cfg.rwr_epochs, cfg.rwr_lr)
