"""tf.data: a Dataset whose elements are whole batches pulled from a sampler on demand.

Whole batches, not single steps: per-element overhead of from_generator is ~0.35 ms, so 50k
steps as 3,125 small elements cost ~1 s against ~0.04 s as one (perf-facts.md). Nothing is
prefetched: TRPO is on-policy, and each batch must be drawn with the parameters of the
update that precedes it.
"""
import tensorflow as tf


def batch_signature(obs_shape, obs_dtype, dist):
    """The TensorSpecs of one batch; the leading dims are free so nothing retraces."""
    obs = tf.TensorSpec((None,) + tuple(obs_shape), tf.as_dtype(obs_dtype))
    act = (tf.TensorSpec((None,), tf.int32) if dist.discrete
           else tf.TensorSpec((None, dist.act_dim), tf.float32))
    per_step = tf.TensorSpec((None,), tf.float32)
    return {
        "obs": obs, "act": act, "rew": per_step, "terminal": per_step, "path_end": per_step,
        "end_obs": obs, "episode_return": per_step, "episode_length": per_step,
        "time_policy": tf.TensorSpec((), tf.float32), "time_env": tf.TensorSpec((), tf.float32),
    }


def batch_dataset(produce_batch, signature):
    """An endless Dataset of batches; `produce_batch()` is called once per element pulled."""

    def batches():
        while True:
            yield produce_batch()

    dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
    options = tf.data.Options()
    options.autotune.enabled = False
    options.experimental_optimization.inject_prefetch = False
    return dataset.with_options(options)
