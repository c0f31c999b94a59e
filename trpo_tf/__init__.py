"""trpo_tf: Trust Region Policy Optimization (Schulman et al., ICML 2015) in TensorFlow 2."""
import os

from trpo_tf import tf_logs

# Our progress lines, not TensorFlow's start-up logs: INFO, WARNING and ERROR lines of the C++
# logger are off unless a user sets the variable themselves; tf_logs holds the lines that
# TensorFlow writes before its logger reads it to the same level.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf_logs.install()
