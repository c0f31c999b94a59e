import keras
import numpy as np
import tensorflow as tf

from trpo_tf.distributions import DiagGaussian
from trpo_tf.policies import build_models
from trpo_tf.value import ValueFitter


def test_value_fit_learns_a_known_function_and_traces_once():
    keras.utils.set_random_seed(0)
    _, value = build_models((2,), DiagGaussian(1), (), (32, 32), normalize_obs=False)
    fitter = ValueFitter(value, tf.TensorSpec((None, 2), tf.float32), 3e-3, epochs=20, minibatch=128)
    rng = np.random.default_rng(0)
    for n in (1000, 777):
        obs = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
        targets = (3.0 * obs[:, 0] - obs[:, 1] ** 2 + 1.0).astype(np.float32)
        out = fitter.fit(obs, targets)
    assert float(out["loss_after"]) < 0.05 * float(np.var(targets))
    assert float(out["loss_after"]) < float(out["loss_before"])
    assert fitter.trace_count == 1
