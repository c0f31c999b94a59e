import os
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(autouse=True, scope="session")
def graphs_without_grappler():
    """The test processes run their graphs as TensorFlow traced them, without grappler's
    rewrites: its passes took ~0.3 s of the ~1.8 s of CPU a short Cartpole Trainer costs here
    (TF_CPP_VMODULE=meta_optimizer=1: remapper 90 ms, MLIR passes 72, constant folding 34,
    memory 34, arithmetic 27, ...), about 45 s of the suite's CPU over its ~150 Trainers. The
    rewrites keep what a graph computes up to float rounding. The commands the tests run in
    processes of their own (zygote's forks, subprocesses, Ray workers) keep them, as a user's
    run does; those run in the test process (tests/commands.py) go without."""
    import trpo_tf  # noqa: F401  (first: TensorFlow's import lines filtered)
    import tensorflow as tf

    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})


@pytest.fixture(autouse=True, scope="session")
def no_autograph_conversion_of_trpo_tf():
    """When a test process ends: the graphs its tests traced converted none of trpo_tf's
    functions (trpo_tf.graph.traced; tests/test_graph.py)."""
    yield
    if "tensorflow.python.autograph.impl.api" in sys.modules:
        from test_graph import converted_trpo_tf_functions

        converted = converted_trpo_tf_functions()
        assert converted == [], f"AutoGraph converted {converted}: trace with trpo_tf.graph.traced"
