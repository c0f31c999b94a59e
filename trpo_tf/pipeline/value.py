"""The value-function baseline's fit: Adam on mean squared error over shuffled minibatches,
all epochs inside one tf.function traced once per run.

Each epoch's minibatch steps run as one XLA-compiled loop for vector observations in runs
long enough to repay the compilation (compile_pays): fusing Adam's elementwise ops and the
small matmuls took the fit of a 47.6K-step Hopper batch (5 epochs, 1024 per minibatch) from
0.42 s to 0.24 s here. XLA compiles per input shape, so an epoch's samples are gathered into
[minibatches rounded up to a power of two, minibatch, ...] with a 0/1 weight per slot: a run
compiles once per power of two it visits (once or twice for a fixed --batch_steps), only the
real minibatches are stepped, and every sample is used once per epoch, the last minibatch
partial, as without padding. The Atari CNN stays on TensorFlow's own kernels: XLA's CPU
convolutions fitted 5K frames in 59 s against 2.1 s.

A recurrent baseline (--policy_rnn with --value_rnn=auto) is fitted by SequenceValueFitter
over minibatches of whole sequences instead, padded, its loss on their valid steps; its epoch
runs XLA-compiled too (2,048 steps from 16 envs, GRU 32, 10 epochs: 0.1 s against 2.1 s on
TensorFlow's kernels), compiled once per padded length.
"""
import collections

import keras
import tensorflow as tf

from trpo_tf.graph import adam_step, repeat, traced
from trpo_tf.policies import padded


def _next_power_of_two(k):
    """The smallest power of two >= k (k >= 1), as an int32 tensor (exact: doubling)."""
    return tf.while_loop(lambda p: p < k, lambda p: (p * 2,), (tf.constant(1),))[0]


# Sample-epochs (samples x epochs over a run's fits) from which XLA repays its compilation.
# Measured here (AMD EPYC, 2 cores, 64-64 tanh nets, 2026-12-07): compiling costs 0.45-0.5 s
# more than tracing for TensorFlow's kernels, and saves 0.6-1.2 us per sample-epoch
# (Walker 2,048 x 20 epochs: 0.038 against 0.062 s per fit; 500 x 10: 0.0077 against 0.0135;
# 25K x 10: 0.23 against 0.42), so it breaks even at 0.4-0.8M; a run of fewer (a smoke run,
# the default 40 iterations of 2,048 steps, a test) fits on TensorFlow's kernels.
XLA_PAYS_FROM = 1_000_000


def compile_pays(budget_steps, epochs):
    """Whether a run that fits about `budget_steps` samples `epochs` times each fits faster
    XLA-compiled, its compilation included."""
    return budget_steps * epochs >= XLA_PAYS_FROM


class AdamFit:
    """What both fits hold: the value net, --vf_epochs, --vf_minibatch, their Adam and the
    shuffling RNG (both checkpointed: resumes reshuffle alike), and how often `fit` traced."""

    def __init__(self, value_net, learning_rate, epochs, minibatch, seed=0):
        self.value_net = value_net
        self.epochs = epochs
        self.minibatch = minibatch
        self.optimizer = keras.optimizers.Adam(learning_rate)
        self.optimizer.build(value_net.trainable_variables)
        self.rng = tf.random.Generator.from_seed(seed)
        self.trace_count = 0


class ValueFitter(AdamFit):
    """`compiled`: the epochs of vector observations XLA-compiled (compile_pays)."""

    def __init__(self, value_net, obs_spec, learning_rate, epochs, minibatch, seed=0,
                 compiled=True):
        super().__init__(value_net, learning_rate, epochs, minibatch, seed)
        # XLA (vector observations) needs fixed shapes: an epoch's samples are gathered into a
        # padded copy first (50K Hopper steps: 2 MB). Frames, and observations fitted on
        # TensorFlow's kernels, are gathered a minibatch at a time inside the loop (a copy of
        # 100K Atari frames would be 0.9 GB more).
        self.compiled = compiled and obs_spec.shape.rank == 2
        self.fit_epoch = traced(
            self._fit_epoch, jit_compile=self.compiled,
            input_signature=[obs_spec, tf.TensorSpec((None,), tf.float32),
                             tf.TensorSpec((None, minibatch), tf.int32),
                             tf.TensorSpec((None, minibatch), tf.float32), tf.TensorSpec((), tf.int32)])
        self.fit = traced(
            self._fit, input_signature=[obs_spec, tf.TensorSpec((None,), tf.float32)])

    def _mse(self, obs, targets):
        return tf.reduce_mean(tf.square(self.value_net(obs) - targets))

    def _weighted_mse(self, obs, targets, weights):
        """Mean squared error over the minibatch's real samples (weight 1), not its padding."""
        sq = tf.square(self.value_net(obs) - targets)
        return tf.reduce_sum(weights * sq) / tf.maximum(tf.reduce_sum(weights), 1.0)

    def _fit_epoch(self, obs, targets, order, weights, num_minibatches):
        """One Adam step per minibatch j < num_minibatches: samples order[j] of obs / targets,
        weighted by weights[j] (0 on padding)."""
        variables = self.value_net.trainable_variables

        def step(j):
            with tf.GradientTape() as tape:
                loss = self._weighted_mse(tf.gather(obs, order[j]), tf.gather(targets, order[j]), weights[j])
            adam_step(self.optimizer, tape.gradient(loss, variables), variables)

        repeat(num_minibatches, step)

    def _shuffled(self, obs, targets, slots):
        """This epoch's permutation, padded to `slots` (padding points at sample 0), as
        [slots / minibatch, minibatch] indices into obs / targets; where XLA runs the epoch,
        obs / targets come gathered in that order (and the indices just count up)."""
        n = tf.shape(obs)[0]
        order = tf.pad(tf.argsort(self.rng.uniform([n])), [[0, slots - n]])
        if self.compiled:
            obs, targets, order = tf.gather(obs, order), tf.gather(targets, order), tf.range(slots)
        return obs, targets, tf.reshape(order, [-1, self.minibatch])

    def _fit(self, obs, targets):
        self.trace_count += 1
        loss_before = self._mse(obs, targets)
        n = tf.shape(obs)[0]
        num_minibatches = (n + self.minibatch - 1) // self.minibatch
        slots = self.minibatch * _next_power_of_two(num_minibatches)
        weights = tf.reshape(tf.cast(tf.range(slots) < n, tf.float32), [-1, self.minibatch])
        repeat(self.epochs, lambda _: self.fit_epoch(*self._shuffled(obs, targets, slots), weights,
                                                     num_minibatches))
        return {"loss_before": loss_before, "loss_after": self._mse(obs, targets)}


# A batch's sequences as the recurrent baseline's fit reads them, padded to [E, T, ...]: the
# observations, 1.0 where an episode starts, the targets, 1.0 on the valid (unpadded) steps,
# and the state each sequence began with [E, S].
PaddedSequences = collections.namedtuple("PaddedSequences", "obs starts targets valid states")


def padded_sequences(inputs, targets):
    """Sequences and their per-row targets [N] -> PaddedSequences."""
    rows = tf.cast(inputs.rows, tf.int32)
    return PaddedSequences(padded(inputs.obs, rows), padded(inputs.starts, rows),
                           padded(targets, rows), padded(tf.ones_like(targets), rows),
                           inputs.states)


def masked_mse(values, targets, valid):
    """Mean squared error over the valid steps (valid 1.0) of padded sequences [E, T]: padded
    steps contribute nothing."""
    sq = tf.square(values - targets) * valid
    return tf.reduce_sum(sq) / tf.maximum(tf.reduce_sum(valid), 1.0)


def sequences_per_minibatch(minibatch, rows):
    """How many whole sequences (`rows` [E] long) make a minibatch of about `minibatch` steps:
    round(minibatch / the mean length), at least 1."""
    envs = tf.cast(tf.size(rows), tf.float32)
    mean_length = tf.cast(tf.reduce_sum(rows), tf.float32) / envs
    return tf.maximum(1, tf.cast(tf.round(minibatch / mean_length), tf.int32))


class SequenceValueFitter(AdamFit):
    """The recurrent baseline's fit (policies.RNNValueNet): Adam on the mean squared error
    over the valid steps of minibatches of whole sequences (an env's rows of the batch), each
    unrolled from the state the sampler stored for it, reset at its episode starts; the
    sequences are shuffled every epoch, and a minibatch holds about --vf_minibatch steps
    (sequences_per_minibatch). All epochs in one tf.function, traced once per run."""

    def __init__(self, value_net, inputs_spec, learning_rate, epochs, minibatch, seed=0):
        super().__init__(value_net, learning_rate, epochs, minibatch, seed)
        self.fit_epoch = traced(self._fit_epoch, jit_compile=True)
        self.fit = traced(
            self._fit, input_signature=[inputs_spec, tf.TensorSpec((None,), tf.float32)])

    def loss(self, seqs):
        """masked_mse of the value net along PaddedSequences `seqs`."""
        return masked_mse(self.value_net.padded_values(seqs.obs, seqs.starts, seqs.states),
                          seqs.targets, seqs.valid)

    def _step(self, seqs):
        """One Adam step on the PaddedSequences of a minibatch."""
        variables = self.value_net.trainable_variables
        with tf.GradientTape() as tape:
            loss = self.loss(seqs)
        adam_step(self.optimizer, tape.gradient(loss, variables), variables)

    def _fit_epoch(self, seqs, order, weights):
        """One Adam step per row j of order [M, k]: the sequences order[j] of `seqs`, weighted
        by weights[j] (0 on the padding of the last minibatch)."""
        def step(j):
            chosen = tf.nest.map_structure(lambda x: tf.gather(x, order[j]), seqs)
            self._step(chosen._replace(valid=chosen.valid * weights[j][:, None]))

        repeat(tf.shape(order)[0], step)

    def _shuffled(self, envs, per_minibatch):
        """This epoch's order of the `envs` sequences as [M, per_minibatch] indices (padding
        points at sequence 0) and weights (1 on real ones, 0 on padding)."""
        minibatches = (envs + per_minibatch - 1) // per_minibatch
        slots = minibatches * per_minibatch
        order = tf.pad(tf.argsort(self.rng.uniform([envs])), [[0, slots - envs]])
        weights = tf.cast(tf.range(slots) < envs, tf.float32)
        return (tf.reshape(order, [minibatches, per_minibatch]),
                tf.reshape(weights, [minibatches, per_minibatch]))

    def _fit(self, inputs, targets):
        self.trace_count += 1
        seqs = padded_sequences(inputs, targets)
        loss_before = self.loss(seqs)
        per_minibatch = sequences_per_minibatch(self.minibatch, inputs.rows)
        repeat(self.epochs, lambda _: self.fit_epoch(
            seqs, *self._shuffled(tf.shape(seqs.states)[0], per_minibatch)))
        return {"loss_before": loss_before, "loss_after": self.loss(seqs)}
