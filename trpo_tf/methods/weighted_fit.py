"""Weighted maximum-likelihood refits of the policy: the M-step of reward-weighted regression
(rwr.py) and the policy fit of REPS (reps.py).

The fit maximises sum_n u_n log pi(a_n | s_n) / sum_n u_n over the mean network and log-std
with full-batch Adam, a fresh optimiser state each iteration, all epochs inside one graph
traced once.

RWR (Peters & Schaal 2007) weights every sampled (s, a) by a transformed return,
u = exp((Q - max Q) / (T * std Q)), an exponential with temperature T (scaled by the batch's
spread, so T means the same on every task).
"""
import keras
import tensorflow as tf

from trpo_tf.flat import get_flat, revert_unless
from trpo_tf.graph import adam_step, repeat, traced


def rwr_weights(returns, temperature):
    """u_n = exp((Q_n - max Q) / (temperature * std Q)), in (0, 1]."""
    scale = temperature * (tf.math.reduce_std(returns) + 1e-8)
    return tf.exp((returns - tf.reduce_max(returns)) / scale)


class WeightedMaxLikelihood:
    """`.step(obs, actions, weights[, the sampling policy's params])`: the refit on
    non-negative per-sample weights; its KL is measured from the sampling policy when given
    (input_specs end with their spec, behaviour_specs: the normaliser took in the batch before
    the fit)."""

    def __init__(self, policy, dist, input_specs, epochs, learning_rate, name):
        self.policy, self.dist = policy, dist
        self.variables = policy.trainable_variables
        self.epochs, self.name = epochs, name
        self.optimizer = keras.optimizers.Adam(learning_rate)
        self.optimizer.build(self.variables)
        self.trace_count = 0
        self.step = traced(self._step, input_signature=list(input_specs))

    def sample_weights(self, data):
        """The weights the fit uses, from the step's third input (here: the weights)."""
        return data

    def _step(self, obs, actions, data, behaviour=None):
        self.trace_count += 1
        policy, dist = self.policy, self.dist
        for v in self.optimizer.variables:  # each M-step is a fit of its own: fresh moments
            if v.name != "learning_rate":
                v.assign(tf.zeros_like(v))
        weights = self.sample_weights(data)
        weights = weights / tf.reduce_sum(weights)
        old_params = tf.stop_gradient(policy(obs)) if behaviour is None else behaviour
        theta_old = get_flat(self.variables)

        def weighted_log_likelihood():
            return tf.reduce_sum(weights * dist.log_prob(policy(obs), actions))

        before = weighted_log_likelihood()

        def ascend(_):
            with tf.GradientTape() as tape:
                loss = -weighted_log_likelihood()
            adam_step(self.optimizer, tape.gradient(loss, self.variables), self.variables)

        repeat(self.epochs, ascend)
        params = policy(obs)
        finite = tf.reduce_all(tf.math.is_finite(params))
        revert_unless(finite, self.variables, theta_old)  # a diverged fit never reaches the policy
        kl = dist.kl(old_params, params)
        return {
            "surrogate_before": before,
            "surrogate_after": weighted_log_likelihood(),
            "kl": tf.reduce_mean(kl),
            "kl_max": tf.reduce_max(kl),
            "entropy": tf.reduce_mean(dist.entropy(old_params)),
            f"{self.name}_effective_samples": 1.0 / tf.reduce_sum(tf.square(weights)),
            "fault": 1.0 - tf.cast(finite, tf.float32),
        }


class RWRLearner(WeightedMaxLikelihood):
    """RWR's M-step: `.step(obs, actions, returns)` weights the samples by rwr_weights."""

    def __init__(self, policy, dist, input_specs, temperature, epochs, learning_rate):
        self.temperature = temperature
        super().__init__(policy, dist, input_specs, epochs, learning_rate, "rwr")

    def sample_weights(self, data):
        return rwr_weights(data, self.temperature)
