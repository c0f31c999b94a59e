"""trpo_tf traces its graphs without AutoGraph (trpo_tf.graph.traced): their loops and branches
are explicit, so a run converts none of the package's functions from source (a conversion of
each, in every new process, was ~2 s of a short run's start-up). conftest.py checks it for
every test: when a test process ends, AutoGraph's cache holds no trpo_tf function (tests
that train every method, its value fit, evaluation and export run in those processes)."""
import os

import pytest
import tensorflow as tf

import trpo_tf
from trpo_tf.graph import repeat, traced

PACKAGE = os.path.dirname(trpo_tf.__file__) + os.sep


@pytest.mark.parametrize("times, total", [(0, 0), (1, 1), (4, 10)])
def test_repeat_runs_its_body_with_each_index_in_one_graph(times, total):
    counter = tf.Variable(0)

    @traced(input_signature=[tf.TensorSpec((), tf.int32)])
    def count(n):
        repeat(n, lambda i: counter.assign_add(i + 1))
        return counter.read_value()  # after the loop's side effects

    assert int(count(tf.constant(times))) == total


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
