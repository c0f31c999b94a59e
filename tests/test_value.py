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


@pytest.mark.parametrize("obs_shape, compiled", [((3,), True), ((3,), False), ((4, 42, 42), True)],
                         ids=["vector-xla", "vector", "frames"])
def test_one_epoch_equals_plain_adam_steps_over_the_same_shuffle(obs_shape, compiled):
    """The epoch (XLA over a padded, weighted copy for vectors in runs where it pays;
    per-minibatch gathers for frames and the others) takes the same steps as slicing the
    permutation into minibatches, the last one partial (n = 777, minibatch 128: 6 + 1)."""
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
                         minibatch=minibatch, seed=7, compiled=compiled)
    assert fitter.compiled == (compiled and len(obs_shape) == 1)
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


def test_xla_fits_the_runs_that_repay_its_compilation():
    """compile_pays: from XLA_PAYS_FROM sample-epochs over the run's budget (--steps, else
    --iterations x --batch_steps); a run's value fitter follows it."""
    from trpo_tf.config import Config
    from trpo_tf.pipeline.value import XLA_PAYS_FROM, compile_pays

    assert compile_pays(XLA_PAYS_FROM // 10, 10) and not compile_pays(XLA_PAYS_FROM // 10 - 1, 10)
    assert Config(iterations=40, batch_steps=2048, num_envs=8).budget_steps == 40 * 2048
    assert Config(iterations=3, batch_steps=500, num_envs=3).budget_steps == 3 * 501
    assert Config(steps=1_000_000, iterations=3).budget_steps == 1_000_000
