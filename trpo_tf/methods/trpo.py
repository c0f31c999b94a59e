"""TRPO with single-path batches (sections 5.1 and 6): advantages, then the step that
maximises the surrogate (eq. 14-15) under the mean KL bound (eq. 13) by conjugate gradient
on Fisher-vector products and a backtracking line search (update.py), then the value fit.
Its ablations (natural_gradient.py, empirical_fim.py, max_kl.py) swap one piece of it."""
from trpo_tf.methods.base import TRUST_REGION_TAGS, AdvantageMethod
from trpo_tf.settings import at_least, declare, in_unit_interval

GROUP = "4 method trpo: the trust-region step (also vine and the ablations)"
declare(GROUP, "max_kl", 0.01, "delta: bound on the mean KL(pi_old || pi) per update (eq. 13).",
        check=in_unit_interval(),
        rule="> 0 and <= 1 (nats; the paper's 0.01: beyond 1 no region is left to trust)")
declare(GROUP, "max_kl_end", 0.0,
        "delta at the end of the budget (--steps or --iterations), reached linearly from "
        "--max_kl; 0 = --max_kl throughout.", check=in_unit_interval(low_open=False),
        rule="between 0 and 1, 0 meaning no schedule")
declare(GROUP, "entropy_coef", 0.0,
        "Added to the surrogate: this times the policy's mean entropy over the batch's states "
        "(0: the paper's surrogate).", check=at_least(0.0), rule=">= 0")
declare(GROUP, "cg_iters", 15, "Conjugate-gradient iterations (appendix C: 10).",
        check=at_least(1), rule=">= 1")
declare(GROUP, "cg_damping", 0.1, "CG solves (A + damping I) x = g.", check=at_least(0.0),
        rule=">= 0")
declare(GROUP, "fvp_subsample", 1.0,
        "Fraction of the batch used for Fisher-vector products (appendix C: 0.1): every k-th "
        "state, k = round(1 / fraction), so 0.4 and 0.6 take half, 0.75 all.",
        check=in_unit_interval(), rule="in (0, 1]")
declare(GROUP, "ls_shrink", 0.8, "Line search: step shrinks by this factor per backtrack.",
        check=in_unit_interval(high_open=True), rule="in (0, 1)")
declare(GROUP, "ls_max_backtracks", 10, "Line search: steps tried before the update is rejected.",
        check=at_least(1), rule=">= 1")


def trpo_learner(cfg, parts, gain, input_specs, **options):
    """TRPOLearner with the run's trust-region settings and surrogate (--entropy_coef's bonus
    added to `gain`); `options` swap one piece (update.py).
    With a moving normaliser it takes the sampling policy's parameters on the batch (and on
    the KL states) last."""
    from trpo_tf.methods.base import behaviour_specs
    from trpo_tf.methods.update import TRPOLearner, with_entropy_bonus

    if cfg.entropy_coef:
        gain = with_entropy_bonus(gain, parts.dist, cfg.entropy_coef)
    behaviour = behaviour_specs(parts, 1 + options.get("kl_states", 0))
    return TRPOLearner(parts.policy, parts.dist, gain, input_specs + behaviour, cfg.max_kl,
                       cfg.cg_iters, cfg.cg_damping, cfg.fvp_subsample, cfg.ls_shrink,
                       cfg.ls_max_backtracks, behaviour_params=bool(behaviour), **options)


def anneal_trust_region(learner, cfg, spent):
    """The learner's delta at `spent` of the budget (--max_kl_end's schedule)."""
    from trpo_tf.methods.base import linear_schedule

    learner.max_kl.assign(linear_schedule(cfg.max_kl, cfg.max_kl_end, spent))


class TRPO(AdvantageMethod):
    algo = "trpo"
    setting_groups = (GROUP,)
    takes_action_masks = True  # and its ablations
    tuned_presets = True  # not its ablations (they set it back, and have no search space)
    search_space = {
        "max_kl": lambda t: t.suggest_float("max_kl", 0.003, 0.05, log=True),
        "cg_damping": lambda t: t.suggest_float("cg_damping", 0.01, 0.3, log=True),
    }
    takes_recurrent_policy = True
    tags = {**AdvantageMethod.tags, **TRUST_REGION_TAGS}

    def anneal(self, spent):
        super().anneal(spent)
        anneal_trust_region(self.learner, self.cfg, spent)

    def learner_options(self):
        """What an ablation changes in the step (none: TRPO itself)."""
        return {}

    def make_learner(self):
        from trpo_tf.methods.base import mask_specs
        from trpo_tf.methods.update import single_path_gain
        from trpo_tf.pipeline import policy_input_spec

        sig, masks, parts = self.signature, mask_specs(self.signature), self.parts
        inputs = policy_input_spec(parts.obs_spec, parts.policy.state_size)
        return trpo_learner(self.cfg, parts, single_path_gain(parts.dist),
                            [inputs, sig["act"], sig["rew"], *masks],
                            action_masks=bool(masks), **self.learner_options())
