"""Keras models: the policy (linear / MLP, Gaussian or categorical head), the value
baseline, the observation normaliser they share, and a NumPy copy of the policy for acting.
"""
import keras
import numpy as np
import tensorflow as tf

from trpo_tf.distributions import DiagGaussian

OBS_CLIP = 10.0  # normalised observations are clipped to [-OBS_CLIP, OBS_CLIP]


class ObsNormalizer(keras.layers.Layer):
    """(obs - mean) / std with running statistics; updated from NumPy between iterations."""

    def __init__(self, obs_dim, enabled=True, **kwargs):
        super().__init__(**kwargs)
        self.enabled = enabled
        self.mean = self.add_weight(shape=(obs_dim,), initializer="zeros", trainable=False, name="mean")
        self.var = self.add_weight(shape=(obs_dim,), initializer="ones", trainable=False, name="var")
        self.count = self.add_weight(shape=(), initializer="zeros", trainable=False, name="count")

    def call(self, obs):
        if not self.enabled:
            return obs
        z = (obs - self.mean) / tf.sqrt(self.var + 1e-8)
        return tf.clip_by_value(z, -OBS_CLIP, OBS_CLIP)

    def update(self, obs):
        """Merge a batch's moments into the running ones (Chan et al.'s parallel update)."""
        if not self.enabled:
            return
        n, mean, var = float(self.count.numpy()), self.mean.numpy(), self.var.numpy()
        m, b_mean, b_var = obs.shape[0], obs.mean(0), obs.var(0)
        total = n + m
        delta = b_mean - mean
        new_mean = mean + delta * m / total
        new_var = (var * n + b_var * m + delta**2 * n * m / total) / total
        self.mean.assign(new_mean.astype(np.float32))
        self.var.assign(new_var.astype(np.float32))
        self.count.assign(total)

    def numpy_fn(self):
        """The same transform on NumPy arrays, frozen at the current statistics."""
        if not self.enabled:
            return lambda obs: obs
        mean, inv_std = self.mean.numpy(), 1.0 / np.sqrt(self.var.numpy() + 1e-8)
        return lambda obs: np.clip((obs - mean) * inv_std, -OBS_CLIP, OBS_CLIP)


def _mlp(hidden, out_dim, out_scale):
    """tanh hidden layers and a linear output, as one Sequential (so checkpoints see them)."""
    layers = [keras.layers.Dense(h, activation="tanh") for h in hidden]
    layers.append(keras.layers.Dense(
        out_dim, kernel_initializer=keras.initializers.RandomNormal(stddev=out_scale)))
    return keras.Sequential(layers)


class MLPPolicy(keras.Model):
    """obs -> distribution parameters. hidden=() is a linear policy.

    Gaussian head: mean = MLP(obs), log_std = a free vector r (appendix D), so the output is
    concat(mean, r) per state. Categorical head: the MLP's outputs are the logits.
    """

    def __init__(self, dist, normalizer, hidden=(64, 64), init_log_std=0.0):
        super().__init__()
        self.dist = dist
        self.normalizer = normalizer
        out_dim = dist.act_dim if isinstance(dist, DiagGaussian) else dist.num_actions
        self.mlp = _mlp(hidden, out_dim, out_scale=0.01)
        self.log_std = None
        if isinstance(dist, DiagGaussian):
            self.log_std = self.add_weight(
                shape=(dist.act_dim,), initializer=keras.initializers.Constant(init_log_std),
                name="log_std")

    def call(self, obs):
        x = self.mlp(self.normalizer(obs))
        if self.log_std is None:
            return x
        return tf.concat([x, tf.broadcast_to(self.log_std, tf.shape(x))], -1)

    def numpy_fn(self):
        """A NumPy function obs [B, obs_dim] -> params [B, param_dim] with today's weights.

        Per-step TF calls cost ~10x a NumPy matmul at batch 16 (perf-facts.md), so sampling
        acts through this frozen copy; tests check it against `call`.
        """
        normalize = self.normalizer.numpy_fn()
        weights = [(layer.kernel.numpy(), layer.bias.numpy()) for layer in self.mlp.layers]
        log_std = None if self.log_std is None else self.log_std.numpy()

        def params(obs):
            x = normalize(obs.astype(np.float32, copy=False))
            for w, b in weights[:-1]:
                x = np.tanh(x @ w + b)
            w, b = weights[-1]
            x = (x @ w + b).astype(np.float32)
            if log_std is None:
                return x
            return np.concatenate([x, np.broadcast_to(log_std, x.shape)], -1)

        return params


class ValueNet(keras.Model):
    """V(s): an MLP baseline on the same normalised observations as the policy."""

    def __init__(self, normalizer, hidden=(64, 64)):
        super().__init__()
        self.normalizer = normalizer
        self.mlp = _mlp(hidden, 1, out_scale=1.0)

    def call(self, obs):
        return self.mlp(self.normalizer(obs))[:, 0]


def build_models(obs_dim, dist, policy_hidden, value_hidden, normalize_obs, init_log_std=0.0):
    """The policy and value nets, built (variables created) and sharing one normaliser."""
    normalizer = ObsNormalizer(obs_dim, enabled=normalize_obs)
    policy = MLPPolicy(dist, normalizer, tuple(policy_hidden), init_log_std)
    value = ValueNet(normalizer, tuple(value_hidden))
    dummy = np.zeros((1, obs_dim), np.float32)
    policy(dummy)
    value(dummy)
    return policy, value
