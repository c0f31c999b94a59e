import os
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(autouse=True, scope="session")
def no_autograph_conversion_of_trpo_tf():
    """When a test process ends: the graphs its tests traced converted none of trpo_tf's
    functions (trpo_tf.graph.traced; tests/test_graph.py)."""
    yield
    if "tensorflow.python.autograph.impl.api" in sys.modules:
        from test_graph import converted_trpo_tf_functions

        converted = converted_trpo_tf_functions()
        assert converted == [], f"AutoGraph converted {converted}: trace with trpo_tf.graph.traced"
