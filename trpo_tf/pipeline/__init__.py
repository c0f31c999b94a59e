"""tf.data: a Dataset whose elements are whole batches pulled from a sampler on demand.

Whole batches, not single steps: per-element overhead of from_generator is ~0.35 ms, so 50k
steps as 3,125 small elements cost ~1 s against ~0.04 s as one (perf-facts.md). Nothing is
prefetched: TRPO is on-policy, and each batch must be drawn with the parameters of the
update that precedes it.
"""
import tensorflow as tf

from trpo_tf.policies import Sequences


def observation_spec(obs_shape, obs_dtype):
    """A batch of observations; the leading dim is free so nothing retraces."""
    return tf.TensorSpec((None,) + tuple(obs_shape), tf.as_dtype(obs_dtype))


def batch_signature(obs_shape, obs_dtype, dist, action_masks=False, state_size=0,
                    value_state_size=0):
    """The TensorSpecs of one batch; the leading dims are free so nothing retraces. With
    `action_masks`, the batch holds the legal actions of each step (one bool per logit); with
    a recurrent policy's `state_size`, the state each env's rows began with and their count;
    with a recurrent value baseline's `value_state_size`, its state each env's rows began with."""
    obs = observation_spec(obs_shape, obs_dtype)
    act = tf.TensorSpec((None,) + dist.act_shape, tf.as_dtype(dist.act_dtype))
    per_step = tf.TensorSpec((None,), tf.float32)
    return {
        "obs": obs, "act": act, "rew": per_step, "discounted_return": per_step,
        "terminal": per_step, "path_end": per_step, "path_start": per_step,
        "end_obs": obs, "episode_return": per_step, "episode_length": per_step,
        "sim_steps": tf.TensorSpec((), tf.float32),
        "time_policy": tf.TensorSpec((), tf.float32), "time_env": tf.TensorSpec((), tf.float32),
        **({"action_mask": tf.TensorSpec((None, dist.param_dim), tf.bool)} if action_masks else {}),
        **({"rnn_state": state_spec(state_size), "env_rows": tf.TensorSpec((None,), tf.int32)}
           if state_size else {}),
        **({"value_state": state_spec(value_state_size)} if value_state_size else {}),
    }


def state_spec(state_size):
    """A batch of a recurrent net's states, [envs, state_size]."""
    return tf.TensorSpec((None, state_size), tf.float32)


def policy_input_spec(obs_spec, state_size):
    """The spec of what the policy (or the value net) reads a batch as: observations, or
    (recurrent nets, state_size > 0) policies.Sequences."""
    if not state_size:
        return obs_spec
    return Sequences(obs_spec, tf.TensorSpec((None,), tf.float32), state_spec(state_size),
                     tf.TensorSpec((None,), tf.int32))


def vine_signature(obs_shape, obs_dtype, dist):
    """The TensorSpecs of a vine batch (sampling/vine.py): N states, K branches each, and the
    trunk states the KL is averaged over."""
    obs = observation_spec(obs_shape, obs_dtype)
    act = tf.TensorSpec((None, None) + dist.act_shape, tf.as_dtype(dist.act_dtype))
    scalar = tf.TensorSpec((), tf.float32)
    return {"obs": obs, "act": act, "q_hat": tf.TensorSpec((None, None), tf.float32), "kl_obs": obs,
            "episode_return": tf.TensorSpec((None,), tf.float32),
            "episode_length": tf.TensorSpec((None,), tf.float32),
            "sim_steps": scalar, "q_spread": scalar}


def population_signature():
    """The TensorSpecs of a CEM / CMA batch (sampling/population.py): one return per candidate."""
    per_candidate = tf.TensorSpec((None,), tf.float32)
    return {"returns": per_candidate, "episode_return": per_candidate,
            "episode_length": per_candidate, "sim_steps": tf.TensorSpec((), tf.float32)}


class BatchStream:
    """An endless Dataset of batches (`.dataset`); `produce_batch()` is called once per element
    pulled. Iterating it yields the batches and re-raises the sampler's own exception (an env
    that crashed, say) instead of the OpError tf.data wraps it in.

    tf.data keeps a generator's function for as long as the process lives (its py_func
    registry, reached from the global graph), so `release()` drops `produce_batch` and with it
    what it holds (a run: its models, envs and last batch)."""

    def __init__(self, produce_batch, signature):
        self.error = None
        self.produce_batch = produce_batch

        def batches():
            while True:
                try:
                    batch = self.produce_batch()
                except Exception as err:
                    self.error = err
                    raise
                yield batch

        options = tf.data.Options()
        options.autotune.enabled = False
        options.experimental_optimization.inject_prefetch = False
        self.dataset = tf.data.Dataset.from_generator(
            batches, output_signature=signature).with_options(options)

    def release(self):
        """No batch is pulled after this: let go of what produces them (and the last error)."""
        self.produce_batch = self.error = None

    def __iter__(self):
        iterator = iter(self.dataset)
        while True:
            try:
                yield next(iterator)
            except tf.errors.OpError:
                if self.error is not None:
                    raise self.error from None
                raise
