import keras
import numpy as np
import pytest
import tensorflow as tf

from trpo_tf.distributions import Categorical, DiagGaussian
from trpo_tf.pipeline.value import ValueFitter
from trpo_tf.policies import build_policy, build_value_net


def test_value_fit_learns_a_known_function_and_traces_once():
    keras.utils.set_random_seed(0)
    value = build_value_net(build_policy((2,), DiagGaussian(1), (), normalize_obs=False), (2,),
                            (32, 32))
    fitter = ValueFitter(value, tf.TensorSpec((None, 2), tf.float32), 3e-3, epochs=20, minibatch=128)
    rng = np.random.default_rng(0)
    for n in (1000, 777):
        obs = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
        targets = (3.0 * obs[:, 0] - obs[:, 1] ** 2 + 1.0).astype(np.float32)
        out = fitter.fit(obs, targets)
    assert float(out["loss_after"]) < 0.05 * float(np.var(targets))
    assert float(out["loss_after"]) < float(out["loss_before"])
    assert fitter.trace_count == 1


@pytest.mark.parametrize("obs_shape", [(3,), (4, 42, 42)], ids=["vector-xla", "frames"])
def test_one_epoch_equals_plain_adam_steps_over_the_same_shuffle(obs_shape):
    """The epoch (XLA over a padded, weighted copy for vectors; per-minibatch gathers for
    frames) takes the same steps as slicing the permutation into minibatches, the last one
    partial (n = 777, minibatch 128: 6 + 1)."""
    n, minibatch = 777, 128
    rng = np.random.default_rng(1)
    if len(obs_shape) == 1:
        obs, spec = rng.normal(size=(n,) + obs_shape).astype(np.float32), tf.float32
    else:
        obs, spec = rng.integers(0, 256, size=(n,) + obs_shape, dtype=np.uint8), tf.uint8
    targets = rng.normal(size=n).astype(np.float32)
    nets = []
    for _ in range(2):
        keras.utils.set_random_seed(0)
        policy = build_policy(obs_shape, Categorical(3), (8,), normalize_obs=False)
        nets.append(build_value_net(policy, obs_shape, (16,)))
    fitter = ValueFitter(nets[0], tf.TensorSpec((None,) + obs_shape, spec), 1e-2, epochs=1,
                         minibatch=minibatch, seed=7)
    fitter.fit(obs, targets)

    order = tf.argsort(tf.random.Generator.from_seed(7).uniform([n])).numpy()
    reference, optimizer = nets[1], keras.optimizers.Adam(1e-2)
    for start in range(0, n, minibatch):
        idx = order[start:start + minibatch]
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(reference(obs[idx]) - targets[idx]))
        grads = tape.gradient(loss, reference.trainable_variables)
        optimizer.apply_gradients(zip(grads, reference.trainable_variables))
    assert int(optimizer.iterations) == 7 and int(fitter.optimizer.iterations) == 7
    for fitted, expected in zip(nets[0].trainable_variables, reference.trainable_variables):
        np.testing.assert_allclose(fitted.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)


def test_next_power_of_two_is_exact_for_large_counts():
    from trpo_tf.pipeline.value import _next_power_of_two

    for k, expected in [(1, 1), (2, 2), (3, 4), (47, 64), (64, 64), (65, 128), (2**21 + 1, 2**22)]:
        assert int(_next_power_of_two(tf.constant(k))) == expected
