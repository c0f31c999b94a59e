"""Keras models: the policy (linear / MLP, Gaussian or categorical head; or the paper's CNN
for Atari frames), the value baseline, the observation normaliser they share, and a fast
acting path for sampling.
"""
import keras
import numpy as np
import tensorflow as tf

from trpo_tf.distributions import DiagGaussian
from trpo_tf.flat import set_flat
from trpo_tf.moments import merge_moments

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
        total, new_mean, new_var = merge_moments(
            float(self.count.numpy()), self.mean.numpy(), self.var.numpy(), obs)
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
        self.mlp = _mlp(hidden, dist.head_dim, out_scale=0.01)
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

    def mean_variables(self):
        """The variables that set the action mean (or logits): all but the log-std vector."""
        return [v for layer in self.mlp.layers for v in (layer.kernel, layer.bias)]

    def set_mean_parameters(self, flat):
        set_flat(self.mean_variables(), np.asarray(flat, np.float32))

    def population_fn(self, flat):
        """Candidates' mean parameters [P, D] (the layout of mean_variables) -> act(obs [B, d],
        rows [B]) giving candidate rows[b]'s mean (or logits) at obs[b]: one batched forward
        pass for candidates playing side by side (CEM / CMA)."""
        normalize = self.normalizer.numpy_fn()
        flat = np.asarray(flat, np.float32)
        layers, offset = [], 0
        for layer in self.mlp.layers:
            shapes = (tuple(layer.kernel.shape), tuple(layer.bias.shape))
            w_size, b_size = int(np.prod(shapes[0])), int(np.prod(shapes[1]))
            w = flat[:, offset:offset + w_size].reshape((-1,) + shapes[0])
            b = flat[:, offset + w_size:offset + w_size + b_size]
            layers.append((w, b))
            offset += w_size + b_size

        def act(obs, rows):
            x = normalize(obs)
            for i, (w, b) in enumerate(layers):
                x = np.einsum("bi,bio->bo", x, w[rows]) + b[rows]
                if i < len(layers) - 1:
                    x = np.tanh(x)
            return x

        return act


# Section 8.2 / Figure 3 (bottom): two convolutional layers of 16 channels with stride 2,
# then one fully connected layer of 20 units and a softmax over actions. The figure's filter
# sizes and input resolution are not in our copy; 4x4 filters on 4 stacked 42x42 frames land
# near the paper's 33,500 parameters (README, "Atari": 31,218 for Pong's 6 actions).
CONV_CHANNELS = 16
CONV_KERNEL = 4
CONV_STRIDE = 2


def _conv_torso():
    """[B, frames, H, W] uint8 -> features: channels-last, scaled to [0, 1], two ReLU convs."""
    return [
        keras.layers.Permute((2, 3, 1)),
        keras.layers.Rescaling(1.0 / 255.0),
        keras.layers.Conv2D(CONV_CHANNELS, CONV_KERNEL, CONV_STRIDE, activation="relu"),
        keras.layers.Conv2D(CONV_CHANNELS, CONV_KERNEL, CONV_STRIDE, activation="relu"),
        keras.layers.Flatten(),
    ]


def _cnn(hidden, out_dim, out_scale):
    layers = _conv_torso() + [keras.layers.Dense(h, activation="relu") for h in hidden]
    layers.append(keras.layers.Dense(
        out_dim, kernel_initializer=keras.initializers.RandomNormal(stddev=out_scale)))
    return keras.Sequential(layers)


class CNNPolicy(keras.Model):
    """Stacked uint8 frames [B, frames, H, W] -> logits of a categorical policy (Atari).

    Frames stay uint8 until inside the graph. Sampling acts through one tf.function traced
    once per run (a CNN in NumPy would be far slower than TF's convolutions)."""

    normalizer = None  # pixels are scaled by 1/255, not normalised by running statistics

    def __init__(self, dist, obs_shape, hidden=(20,)):
        super().__init__()
        if not dist.discrete:
            raise ValueError("the Atari CNN policy needs a discrete action space")
        self.dist = dist
        self.net = _cnn(hidden, dist.head_dim, out_scale=0.01)
        self._act = tf.function(
            self.call, input_signature=[tf.TensorSpec((None,) + tuple(obs_shape), tf.uint8)])

    def call(self, obs):
        return self.net(tf.cast(obs, tf.float32))

    def numpy_fn(self):
        """obs [B, frames, H, W] uint8 -> logits [B, num_actions] as NumPy, today's weights."""
        return lambda obs: self._act(obs).numpy()


class ValueNet(keras.Model):
    """V(s): an MLP on the policy's normalised observations, or (normalizer None: frames) a
    CNN of the policy's shape with its own weights."""

    def __init__(self, normalizer, hidden=(64, 64), pixels=False):
        super().__init__()
        self.normalizer = normalizer
        self.mlp = _cnn(hidden, 1, out_scale=1.0) if pixels else _mlp(hidden, 1, out_scale=1.0)

    def call(self, obs):
        x = tf.cast(obs, tf.float32) if self.normalizer is None else self.normalizer(obs)
        return self.mlp(x)[:, 0]


def build_policy(obs_shape, dist, policy_hidden, normalize_obs, init_log_std=0.0):
    """The policy, built (variables created): an MLP behind a running observation normaliser
    for vector observations; a CNN for stacked frames [frames, H, W] (Atari)."""
    obs_shape = tuple(obs_shape)
    if len(obs_shape) == 3:
        policy = CNNPolicy(dist, obs_shape, tuple(policy_hidden))
    elif len(obs_shape) == 1:
        normalizer = ObsNormalizer(obs_shape[0], enabled=normalize_obs)
        policy = MLPPolicy(dist, normalizer, tuple(policy_hidden), init_log_std)
    else:
        raise ValueError(f"unsupported observation shape {obs_shape}: trpo_tf takes vectors or "
                         "stacked frames [frames, height, width]")
    policy(dummy_observations(obs_shape))
    return policy


def build_value_net(policy, obs_shape, value_hidden):
    """V(s) for `policy`'s observations, built: an MLP sharing the policy's normaliser, or a
    CNN of the policy's shape (frames)."""
    obs_shape = tuple(obs_shape)
    value = ValueNet(policy.normalizer, tuple(value_hidden), pixels=len(obs_shape) == 3)
    value(dummy_observations(obs_shape))
    return value


def dummy_observations(obs_shape):
    """One zero observation, as the nets take it (uint8 frames, float32 vectors)."""
    return np.zeros((1,) + tuple(obs_shape), np.uint8 if len(obs_shape) == 3 else np.float32)
