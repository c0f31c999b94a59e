"""TRPO bounding the maximum per-state KL (eq. 12) instead of the mean: the mean-KL step scaled
to the max KL's quadratic model, then a line search on the max."""
from trpo_tf.methods.trpo import TRPO


class MaxKL(TRPO):
    algo = "max_kl"
    tuned_presets = False
    search_space = {}

    def learner_options(self):
        return {"constraint": "max"}
