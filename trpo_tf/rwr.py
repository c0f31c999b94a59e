"""Reward-weighted regression (Peters & Schaal 2007), the EM-like baseline of section 8.1.

E-step: weight every sampled (s, a) by a transformed return, u = exp((Q - max Q) / (T * std Q)),
an exponential with temperature T (scaled by the batch's spread, so T means the same on every
task). M-step: refit the policy (mean network and log-std) by weighted maximum likelihood,
maximising sum_n u_n log pi(a_n | s_n) / sum_n u_n with full-batch Adam, a fresh optimiser
state each iteration, all epochs inside one graph traced once.
"""
import keras
import tensorflow as tf

from trpo_tf.update import get_flat, set_flat


def rwr_weights(returns, temperature):
    """u_n = exp((Q_n - max Q) / (temperature * std Q)), in (0, 1]."""
    scale = temperature * (tf.math.reduce_std(returns) + 1e-8)
    return tf.exp((returns - tf.reduce_max(returns)) / scale)


class RWRLearner:
    def __init__(self, policy, dist, input_specs, temperature, epochs, learning_rate):
        self.policy, self.dist = policy, dist
        self.variables = policy.trainable_variables
        self.temperature, self.epochs = temperature, epochs
        self.optimizer = keras.optimizers.Adam(learning_rate)
        self.optimizer.build(self.variables)
        self.trace_count = 0
        self.step = tf.function(self._step, input_signature=list(input_specs))

    def _step(self, obs, actions, returns):
        self.trace_count += 1
        policy, dist = self.policy, self.dist
        for v in self.optimizer.variables:  # each M-step is a fit of its own: fresh moments
            if v.name != "learning_rate":
                v.assign(tf.zeros_like(v))
        weights = rwr_weights(returns, self.temperature)
        weights = weights / tf.reduce_sum(weights)
        old_params = tf.stop_gradient(policy(obs))
        theta_old = get_flat(self.variables)

        def weighted_log_likelihood():
            return tf.reduce_sum(weights * dist.log_prob(policy(obs), actions))

        before = weighted_log_likelihood()
        for _ in tf.range(self.epochs):
            with tf.GradientTape() as tape:
                loss = -weighted_log_likelihood()
            self.optimizer.apply_gradients(zip(tape.gradient(loss, self.variables), self.variables))
        params = policy(obs)
        finite = tf.reduce_all(tf.math.is_finite(params))
        if not finite:  # a fit that diverged never reaches the policy
            set_flat(self.variables, theta_old)
        kl = dist.kl(old_params, params)
        return {
            "surrogate_before": before,
            "surrogate_after": weighted_log_likelihood(),
            "kl": tf.reduce_mean(kl),
            "kl_max": tf.reduce_max(kl),
            "entropy": tf.reduce_mean(dist.entropy(old_params)),
            "rwr_effective_samples": 1.0 / tf.reduce_sum(tf.square(weights)),
            "fault": 1.0 - tf.cast(finite, tf.float32),
        }
