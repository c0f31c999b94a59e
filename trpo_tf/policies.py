"""Keras models: the policy (linear / MLP, Gaussian or categorical head; a recurrent GRU /
LSTM policy for partially observed tasks; or the paper's CNN for Atari frames), the value
baseline, the observation normaliser they share, and a fast acting path for sampling.
"""
import collections
import types

import keras
import numpy as np
import tensorflow as tf

from trpo_tf.distributions import DiagGaussian
from trpo_tf.flat import set_flat, watchable
from trpo_tf.graph import traced
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


def _relu_np(x):
    return np.maximum(x, 0.0)


def _elu_np(x):
    return np.where(x > 0.0, x, np.expm1(np.minimum(x, 0.0)))


# --activation: the hidden layers' nonlinearity in Keras and in the NumPy acting path
NUMPY_ACTIVATIONS = {"tanh": np.tanh, "relu": _relu_np, "elu": _elu_np}
HIDDEN_GAIN = np.sqrt(2.0)  # --orthogonal_init: the hidden kernels' gain (Saxe et al. 2014)


def _mlp(hidden, out_dim, out_scale, activation="tanh", orthogonal_init=False):
    """`activation` hidden layers and a linear output, as one Sequential (so checkpoints see
    them). Kernels: Glorot-uniform hidden ones and an output drawn with std `out_scale`; or,
    orthogonal_init, orthogonal ones of gain sqrt(2) and an orthogonal output of gain
    `out_scale` (the initialisation of OpenAI baselines / SB3, zero biases either way)."""
    # each initializer made where its layer is: Keras draws their seeds in that order, so the
    # default nets of a seed start where they did before these settings existed
    layers = [keras.layers.Dense(h, activation=activation, kernel_initializer=(
        keras.initializers.Orthogonal(HIDDEN_GAIN) if orthogonal_init else "glorot_uniform"))
        for h in hidden]
    layers.append(keras.layers.Dense(out_dim, kernel_initializer=(
        keras.initializers.Orthogonal(out_scale) if orthogonal_init
        else keras.initializers.RandomNormal(stddev=out_scale))))
    return keras.Sequential(layers)


class MLPPolicy(keras.Model):
    """obs -> distribution parameters. hidden=() is a linear policy.

    Gaussian head: mean = MLP(obs), log_std = a free vector r (appendix D), so the output is
    concat(mean, r) per state. Categorical head: the MLP's outputs are the logits.
    """

    state_size = 0  # no memory: each state's parameters depend on its observation alone

    def __init__(self, dist, normalizer, hidden=(64, 64), init_log_std=0.0, activation="tanh",
                 orthogonal_init=False):
        super().__init__()
        self.dist = dist
        self.normalizer = normalizer
        self.activation = activation
        self.mlp = _mlp(hidden, dist.head_dim, 0.01, activation, orthogonal_init)
        self.log_std = None
        if isinstance(dist, DiagGaussian):
            self.log_std = self.add_weight(
                shape=(dist.act_dim,), initializer=keras.initializers.Constant(init_log_std),
                name="log_std")

    def call(self, obs):
        return self.head(self.normalizer(obs))

    def head(self, features):
        """The MLP's outputs on `features` [B, F], with the Gaussian's log-std beside them."""
        x = self.mlp(features)
        if self.log_std is None:
            return x
        return tf.concat([x, tf.broadcast_to(self.log_std, tf.shape(x))], -1)

    def numpy_fn(self):
        """A NumPy function obs [B, obs_dim] -> params [B, param_dim] with today's weights.

        Per-step TF calls cost ~10x a NumPy matmul at batch 16 (perf-facts.md), so sampling
        acts through this frozen copy; tests check it against `call`.
        """
        normalize, head = self.normalizer.numpy_fn(), self.numpy_head()
        return lambda obs: head(normalize(obs.astype(np.float32, copy=False)))

    def numpy_head(self):
        """`head` as a NumPy function, frozen at today's weights."""
        weights = [(layer.kernel.numpy(), layer.bias.numpy()) for layer in self.mlp.layers]
        log_std = None if self.log_std is None else self.log_std.numpy()
        act = NUMPY_ACTIVATIONS[self.activation]

        def params(x):
            for w, b in weights[:-1]:
                x = act(x @ w + b)
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
        activation = NUMPY_ACTIVATIONS[self.activation]

        def act(obs, rows):
            x = normalize(obs)
            for i, (w, b) in enumerate(layers):
                x = np.einsum("bi,bio->bo", x, w[rows]) + b[rows]
                if i < len(layers) - 1:
                    x = activation(x)
            return x

        return act


def _sigmoid_np(x):
    return 1.0 / (1.0 + np.exp(-x))


# what a cell's step computes with: NumPy (the sampler's acting path) or TensorFlow (the
# update, the export), one formula for both
NUMPY_OPS = types.SimpleNamespace(tanh=np.tanh, sigmoid=_sigmoid_np, split=np.split,
                                  concat=np.concatenate)
TF_OPS = types.SimpleNamespace(tanh=tf.tanh, sigmoid=tf.sigmoid, split=tf.split, concat=tf.concat)


def gru_step(ops, x, h, kernel, recurrent_kernel, bias):
    """GRU (Cho et al. 2014), the reset gate applied after the recurrent product:
    z = s(x Wz + h Uz + bz), r = s(x Wr + h Ur + br), n = tanh(x Wn + bn + r (h Un)),
    h' = (1 - z) n + z h. x [B, d], h [B, u] -> h' [B, u]."""
    xz, xr, xn = ops.split(x @ kernel + bias, 3, axis=-1)
    hz, hr, hn = ops.split(h @ recurrent_kernel, 3, axis=-1)
    z, r = ops.sigmoid(xz + hz), ops.sigmoid(xr + hr)
    return (1.0 - z) * ops.tanh(xn + r * hn) + z * h


def lstm_step(ops, x, state, kernel, recurrent_kernel, bias):
    """LSTM with a forget gate (Gers et al. 2000): i, f, o = s(x W + h U + b), g = tanh(...),
    c' = f c + i g, h' = o tanh(c'). state = concat(h, c) [B, 2u] -> concat(h', c')."""
    h, c = ops.split(state, 2, axis=-1)
    i, f, g, o = ops.split(x @ kernel + h @ recurrent_kernel + bias, 4, axis=-1)
    c = ops.sigmoid(f) * c + ops.sigmoid(i) * ops.tanh(g)
    return ops.concat([ops.sigmoid(o) * ops.tanh(c), c], axis=-1)


# --policy_rnn -> (its step, gates, state size in units); the cell's output is the state's
# first `units` entries (h)
CELLS = {"gru": (gru_step, 3, 1), "lstm": (lstm_step, 4, 2)}

# A batch as a recurrent policy reads it: one sequence per env (its rows of the batch, in
# order, env-major), the state each began with and 1.0 on the rows that start an episode
# (there the state is reset to zero before the step). obs [N, d], starts [N], states [E, S],
# rows [E] (int32, summing to N).
Sequences = collections.namedtuple("Sequences", "obs starts states rows")


def observations_of(inputs):
    """The observations of a policy's inputs (observations, or Sequences)."""
    return inputs.obs if isinstance(inputs, Sequences) else inputs


def every_kth_sequence(inputs, k):
    """Every k-th sequence of `inputs` (Sequences), whole -> (those Sequences, a function taking
    their rows out of any per-row tensor [N, ...]): a subsample that never cuts a sequence."""
    kept = tf.repeat(tf.range(tf.shape(inputs.rows)[0]) % k == 0, inputs.rows)
    rows_of = lambda x: tf.boolean_mask(x, kept)
    return (Sequences(rows_of(inputs.obs), rows_of(inputs.starts), inputs.states[::k],
                      inputs.rows[::k]), rows_of)


def reset_at_starts(state, starts):
    """h <- 0 on the rows where an episode starts (h (1 - start), and a NaN state is dropped)."""
    if isinstance(state, np.ndarray):
        return np.where(starts[:, None] > 0, np.float32(0.0), state)
    return tf.where(starts[:, None] > 0, tf.zeros_like(state), state)


def cell_state_size(cell, units):
    """The size of a `cell` ("gru" / "lstm") state `units` wide: h, and an LSTM's c."""
    return CELLS[cell][2] * units


class CellWeights:
    """A Keras model's GRU or LSTM cell (RNNPolicy's, RNNValueNet's): `add_cell` gives it the
    step (cell_step), units, state_size and weights."""

    def add_cell(self, cell, obs_dim, units):
        """A `cell` ("gru" / "lstm") on `obs_dim` inputs, `units` wide."""
        self.cell_step, gates, _ = CELLS[cell]
        self.units, self.state_size = units, cell_state_size(cell, units)
        bias = np.zeros(gates * units, np.float32)
        if cell == "lstm":
            bias[units:2 * units] = 1.0  # forget gate open at the start (Jozefowicz et al. 2015)
        self.kernel = self.add_weight(shape=(obs_dim, gates * units), name="rnn_kernel",
                                      initializer="glorot_uniform")
        self.recurrent_kernel = self.add_weight(shape=(units, gates * units), initializer="orthogonal",
                                                name="rnn_recurrent_kernel")
        self.bias = self.add_weight(shape=(gates * units,), name="rnn_bias",
                                    initializer=keras.initializers.Constant(bias))

    def cell_weights(self):
        return self.kernel, self.recurrent_kernel, self.bias


def padded(values, rows):
    """Per-row values [N, ...] of sequences `rows` [E] long -> [E, T, ...], zero-padded."""
    return tf.RaggedTensor.from_row_lengths(values, rows).to_tensor()


def unpadded(values, rows):
    """[E, T, ...] -> the rows of the sequences `rows` [E] long, [N, ...] (padded's inverse)."""
    return tf.RaggedTensor.from_tensor(values, lengths=rows).flat_values


def scan_cell(model, x, starts, initial):
    """The states of `model`'s cell after each step of padded sequences: normalised x
    [E, T, d], starts [E, T] (1.0: reset before the step), initial [E, S] -> [E, T, S]; one
    tf.scan over T (the weights read once, outside the loop)."""
    weights = [tf.convert_to_tensor(w) for w in model.cell_weights()]

    def step(state, row):  # row: (x_t [E, d], starts_t [E])
        return model.cell_step(TF_OPS, row[0], reset_at_starts(state, row[1]), *weights)

    states = tf.scan(step, time_major(x, starts), initializer=initial)  # [T, E, S]
    return tf.transpose(states, [1, 0, 2])


def time_major(x, starts):
    """Padded sequences' x [E, T, d] and starts [E, T] as tf.scan steps along T."""
    return tf.transpose(x, [1, 0, 2]), tf.transpose(starts)


def scan_cell_tangents(model, x, starts, initial, weight_tangents):
    """scan_cell's states and their directional derivatives along `weight_tangents` (one per
    cell weight; the start states' are zero) -> ([E, T, S], [E, T, S]). Forward mode inside
    each step, the derivative carried along the sequence beside the state: J v in one pass
    (TensorFlow's forward mode cannot enter tf.scan's loop itself)."""
    weights = [tf.convert_to_tensor(w) for w in model.cell_weights()]

    def step(carry, row):
        state, tangent = (reset_at_starts(s, row[1]) for s in carry)
        with tf.autodiff.ForwardAccumulator([state, *weights],
                                            [tangent, *weight_tangents]) as acc:
            new = model.cell_step(TF_OPS, row[0], state, *weights)
        return new, tf.ensure_shape(acc.jvp(new), new.shape)  # an LSTM's concat loses it

    states, tangents = tf.scan(step, time_major(x, starts),
                               initializer=(initial, tf.zeros_like(initial)))
    return tf.transpose(states, [1, 0, 2]), tf.transpose(tangents, [1, 0, 2])


def unroll_sequences(model, inputs, weight_tangents=None):
    """The state of `model`'s cell (a CellWeights; its observations normalised by
    model.normalizer) after every row of the Sequences, [N, S]: the sequences padded to
    [E, T, ...] and scanned from their start states (scan_cell). With `weight_tangents` (one
    per cell weight): (those states, their directional derivatives along the tangents), each
    [N, S] (scan_cell_tangents)."""
    rows = tf.cast(inputs.rows, tf.int32)  # Keras's saving traces its inputs as floats
    x, starts = padded(model.normalizer(inputs.obs), rows), padded(inputs.starts, rows)
    if weight_tangents is None:
        return unpadded(scan_cell(model, x, starts, inputs.states), rows)
    states, tangents = scan_cell_tangents(model, x, starts, inputs.states, weight_tangents)
    return unpadded(states, rows), unpadded(tangents, rows)


def numpy_cell_fn(model):
    """One step of `model`'s cell (observations normalised as model.normalizer does) in NumPy,
    frozen at today's weights: (obs [B, d], state [B, S]) -> new state [B, S]; the caller
    resets the states of envs that start an episode."""
    normalize = model.normalizer.numpy_fn()
    weights = [w.numpy() for w in model.cell_weights()]

    def step(obs, state):
        x = normalize(obs.astype(np.float32, copy=False)).astype(np.float32, copy=False)
        return model.cell_step(NUMPY_OPS, x, state, *weights).astype(np.float32, copy=False)

    return step


class RNNPolicy(CellWeights, MLPPolicy):
    """A memory for partially observed tasks: normalised obs -> a GRU or LSTM cell (`units`
    wide) -> MLPPolicy's tanh `hidden` layers and head on the cell's output h.

    On a batch it takes Sequences and unrolls the cell along each from its start state,
    resetting the state at episode starts, so the parameters of every row are recomputed
    from the stored starts as the current weights give them (the surrogate, KL, Fisher-vector
    products and line search run on these). `step` is one step of every env (the export);
    `numpy_fn` the same in NumPy for the sampler and evaluation."""

    def __init__(self, dist, normalizer, cell="gru", units=64, hidden=(), init_log_std=0.0,
                 activation="tanh", orthogonal_init=False):
        super().__init__(dist, normalizer, hidden, init_log_std, activation, orthogonal_init)
        self.add_cell(cell, normalizer.mean.shape[0], units)

    def call(self, inputs):
        """Sequences -> params [N, P] of every row."""
        return self.head(self.unroll(inputs))

    def unroll(self, inputs):
        """The cell's output h on every row of the Sequences, [N, units]."""
        return unroll_sequences(self, inputs)[:, :self.units]

    def params_and_jvp(self, inputs, tangents):
        """(call(inputs), J v): the parameters of every row and their directional derivative
        along `tangents` (one per trainable variable, in their order), J never formed: the
        cell's tangent carried along the unroll, then forward mode through the head."""
        tangent_of = {id(v): t for v, t in zip(self.trainable_variables, tangents)}
        cell = {id(w) for w in self.cell_weights()}
        states, state_tangents = unroll_sequences(
            self, inputs, [tangent_of[id(w)] for w in self.cell_weights()])
        head = [v for v in self.trainable_variables if id(v) not in cell]
        h = states[:, :self.units]
        with tf.autodiff.ForwardAccumulator(
                [h, *watchable(head)],
                [state_tangents[:, :self.units], *(tangent_of[id(v)] for v in head)]) as acc:
            params = self.head(h)
        return params, acc.jvp(params)

    def step(self, obs, state):
        """One step of B envs: obs [B, d], state [B, S] -> (params [B, P], new state [B, S])."""
        state = self.cell_step(TF_OPS, self.normalizer(obs), state, *self.cell_weights())
        return self.head(state[:, :self.units]), state

    def numpy_fn(self):
        """`step` in NumPy, frozen at today's weights: (obs [B, d], state [B, S]) -> (params,
        new state); the caller resets the states of envs that start an episode."""
        head, cell = self.numpy_head(), numpy_cell_fn(self)
        units = self.units

        def step(obs, state):
            state = cell(obs, state)
            return head(state[:, :units]), state

        return step

    def initial_state(self, batch):
        """The state an episode starts from: zeros [batch, S]."""
        return tf.zeros([batch, self.state_size])


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
    state_size = 0

    def __init__(self, dist, obs_shape, hidden=(20,)):
        super().__init__()
        if not dist.discrete:
            raise ValueError("the Atari CNN policy needs a discrete action space")
        self.dist = dist
        self.net = _cnn(hidden, dist.head_dim, out_scale=0.01)
        self._act = traced(
            self.call, input_signature=[tf.TensorSpec((None,) + tuple(obs_shape), tf.uint8)])

    def call(self, obs):
        return self.net(tf.cast(obs, tf.float32))

    def numpy_fn(self):
        """obs [B, frames, H, W] uint8 -> logits [B, num_actions] as NumPy, today's weights
        (the traced graph called directly: tf.function's argument binding cost ~0.15 ms of
        the ~1 ms call per step)."""
        act = self._act.get_concrete_function()
        return lambda obs: act(obs).numpy()


class ValueNet(keras.Model):
    """V(s): an MLP on the policy's normalised observations, or (normalizer None: frames) a
    CNN of the policy's shape with its own weights."""

    def __init__(self, normalizer, hidden=(64, 64), pixels=False, activation="tanh",
                 orthogonal_init=False):
        super().__init__()
        self.normalizer = normalizer
        self.mlp = (_cnn(hidden, 1, out_scale=1.0) if pixels
                    else _mlp(hidden, 1, 1.0, activation, orthogonal_init))

    def call(self, obs):
        x = tf.cast(obs, tf.float32) if self.normalizer is None else self.normalizer(obs)
        return self.mlp(x)[:, 0]

    def values_and_end_values(self, obs, end_obs, path_end):
        """(V of every row [N], V of each segment's end observation [P])."""
        del path_end  # V(s) needs no history
        return self(obs), self(end_obs)


class RNNValueNet(CellWeights, keras.Model):
    """V(history) for partially observed tasks: the policy's normalised observations -> a GRU
    or LSTM cell of its own (`units` wide; no weight shared with the policy) -> tanh `hidden`
    layers -> V. It reads a batch's Sequences as RNNPolicy does: the cell unrolled along each
    env's rows from the state the sampler stored, reset at episode starts."""

    def __init__(self, normalizer, cell="gru", units=64, hidden=(64, 64), activation="tanh",
                 orthogonal_init=False):
        super().__init__()
        self.normalizer = normalizer
        self.mlp = _mlp(hidden, 1, 1.0, activation, orthogonal_init)
        self.add_cell(cell, normalizer.mean.shape[0], units)

    def call(self, inputs):
        """Sequences -> V of every row, [N]."""
        return self.values_of_states(unroll_sequences(self, inputs))

    def values_of_states(self, states):
        """V read from the cell's states [..., S] -> [...] (its output h through the MLP)."""
        h = states[..., :self.units]
        values = self.mlp(tf.reshape(h, [-1, self.units]))[:, 0]
        return tf.reshape(values, tf.shape(h)[:-1])

    def values_and_end_values(self, inputs, end_obs, path_end):
        """(V of every row of the Sequences [N], V of each segment's end observation [P]): the
        cell steps once more, on the end observation, from the state after the segment's last
        row (path_end [N] marks those rows, in the order of end_obs)."""
        states = unroll_sequences(self, inputs)
        end_states = self.cell_step(TF_OPS, self.normalizer(end_obs),
                                    tf.boolean_mask(states, path_end > 0), *self.cell_weights())
        return self.values_of_states(states), self.values_of_states(end_states)

    def padded_values(self, obs, starts, states):
        """V along padded sequences: obs [E, T, d], starts [E, T], states [E, S] -> [E, T]
        (the values of padded steps mean nothing)."""
        return self.values_of_states(scan_cell(self, self.normalizer(obs), starts, states))


def build_policy(obs_shape, dist, policy_hidden, normalize_obs, init_log_std=0.0, rnn="none",
                 rnn_units=64, activation="tanh", orthogonal_init=False):
    """The policy, built (variables created): an MLP (rnn "none") or a recurrent policy (rnn
    "gru" / "lstm", `rnn_units` wide) behind a running observation normaliser for vector
    observations, their hidden layers of `activation` (_mlp: the initialisation); a CNN for
    stacked frames [frames, H, W] (Atari: ReLU and Keras's initialisation, as section 8.2)."""
    obs_shape = tuple(obs_shape)
    if len(obs_shape) == 3 and rnn == "none":
        policy = CNNPolicy(dist, obs_shape, tuple(policy_hidden))
    elif len(obs_shape) == 1:
        normalizer = ObsNormalizer(obs_shape[0], enabled=normalize_obs)
        policy = (MLPPolicy(dist, normalizer, tuple(policy_hidden), init_log_std, activation,
                            orthogonal_init) if rnn == "none"
                  else RNNPolicy(dist, normalizer, rnn, rnn_units, tuple(policy_hidden),
                                 init_log_std, activation, orthogonal_init))
    else:
        raise ValueError(f"unsupported observation shape {obs_shape} (--policy_rnn={rnn}): "
                         "trpo_tf takes vectors or, with a feed-forward policy, stacked frames "
                         "[frames, height, width]")
    policy(one_step_sequences(obs_shape, policy.state_size) if policy.state_size
           else dummy_observations(obs_shape))
    return policy


def build_value_net(policy, obs_shape, value_hidden, rnn="none", rnn_units=64,
                    activation="tanh", orthogonal_init=False):
    """V for `policy`'s observations, built: an MLP sharing the policy's normaliser, a CNN of
    the policy's shape (frames), or (rnn "gru" / "lstm") RNNValueNet, its own cell
    `rnn_units` wide before the MLP; the MLPs' hidden layers of `activation` (_mlp)."""
    obs_shape = tuple(obs_shape)
    if rnn != "none":
        value = RNNValueNet(policy.normalizer, rnn, rnn_units, tuple(value_hidden), activation,
                            orthogonal_init)
        value(one_step_sequences(obs_shape, value.state_size))
        return value
    value = ValueNet(policy.normalizer, tuple(value_hidden), pixels=len(obs_shape) == 3,
                     activation=activation, orthogonal_init=orthogonal_init)
    value(dummy_observations(obs_shape))
    return value


def one_step_sequences(obs_shape, state_size):
    """One sequence of one zero observation, an episode's start, from a zero state."""
    return Sequences(dummy_observations(obs_shape), np.ones(1, np.float32),
                     np.zeros((1, state_size), np.float32), np.ones(1, np.int32))


def dummy_observations(obs_shape):
    """One zero observation, as the nets take it (uint8 frames, float32 vectors)."""
    return np.zeros((1,) + tuple(obs_shape), np.uint8 if len(obs_shape) == 3 else np.float32)
