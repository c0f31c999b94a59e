"""trpo_tf: Trust Region Policy Optimization (Schulman et al., ICML 2015) in TensorFlow 2."""
import os

# Our progress lines, not TensorFlow's start-up logs: silence the C++ logger before any
# module imports tensorflow. A user who wants them back sets the variable themselves.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
