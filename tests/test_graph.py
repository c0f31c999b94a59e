"""trpo_tf traces its graphs without AutoGraph (trpo_tf.graph.traced): their loops and branches
are explicit, so a run converts none of the package's functions from source (a conversion of
each, in every new process, was ~2 s of a short run's start-up). conftest.py checks it for
every test: when a test process ends, AutoGraph's cache holds no trpo_tf function (tests
that train every method, its value fit, evaluation and export run in those processes)."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import trpo_tf
from trpo_tf.graph import adam_step, repeat, traced

PACKAGE = os.path.dirname(trpo_tf.__file__) + os.sep


@pytest.mark.parametrize("times, total", [(0, 0), (1, 1), (4, 10)])
def test_repeat_runs_its_body_with_each_index_in_one_graph(times, total):
    counter = tf.Variable(0)

    @traced(input_signature=[tf.TensorSpec((), tf.int32)])
    def count(n):
        repeat(n, lambda i: counter.assign_add(i + 1))
        return counter.read_value()  # after the loop's side effects

    assert int(count(tf.constant(times))) == total


@pytest.mark.filterwarnings("ignore:Gradients do not exist")  # Keras's, on the unused one
@pytest.mark.parametrize("jit_compile", [False, True])
def test_adam_step_is_kerass_apply_gradients_bit_for_bit(jit_compile):
    """The same weights, moments and step count as keras.optimizers.Adam.apply_gradients over
    steps with a learning rate changed midway and a variable the loss does not reach (None
    gradient: left alone by both), in a traced graph and XLA-compiled, as the fits run it."""
    runs = []
    for update in ("keras", "adam_step"):
        keras.utils.set_random_seed(3)
        weights = [keras.Variable(np.random.normal(size=shape).astype(np.float32))
                   for shape in [(3, 4), (4,), (2,)]]  # the last one: unused by the loss
        optimizer = keras.optimizers.Adam(0.05)
        optimizer.build(weights)
        x = tf.constant(np.random.normal(size=(5, 3)), tf.float32)

        @traced(jit_compile=jit_compile)
        def step():
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.tanh(x @ weights[0] + weights[1]) ** 2)
            grads = tape.gradient(loss, weights)
            if update == "keras":
                optimizer.apply_gradients(zip(grads, weights))
            else:
                adam_step(optimizer, grads, weights)

        for k in range(6):
            if k == 3:
                optimizer.learning_rate = 0.01
            step()
        runs.append([v.numpy() for v in (*weights, *optimizer.variables)])
    assert len(runs[0]) == len(runs[1]) == 3 + 2 + 2 * 3  # the step count and rate, m and v
    assert int(runs[1][3]) == 6
    for keras_value, ours in zip(*runs):
        np.testing.assert_array_equal(ours, keras_value)


def converted_trpo_tf_functions():
    """The functions of trpo_tf that AutoGraph has converted in this process ("file:name"):
    its transpiler caches each conversion under the function's code object."""
    import tensorflow.python.autograph.impl.api as autograph_api

    try:
        cache = autograph_api._TRANSPILER._cache._cache
    except AttributeError as err:
        raise AssertionError(f"AutoGraph's conversion cache is not where TensorFlow "
                             f"{tf.__version__} keeps it ({err}): update this check") from None
    return sorted(f"{os.path.relpath(code.co_filename, PACKAGE)}:{code.co_name}"
                  for code in list(cache.keys())
                  if hasattr(code, "co_filename") and code.co_filename.startswith(PACKAGE))
