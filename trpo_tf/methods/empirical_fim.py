"""TRPO with the empirical Fisher information matrix (section 6): F v = J^T (J v) / N from the
per-sample scores, instead of the Hessian of the KL."""
from trpo_tf.methods.trpo import TRPO


class EmpiricalFIM(TRPO):
    algo = "empirical_fim"
    tuned_presets = False
    search_space = {}

    def learner_options(self):
        return {"fisher": "empirical"}
