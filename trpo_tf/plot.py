"""`python -m trpo_tf.plot`: Figure 4-style curves from event files (trpo_tf/tools/plot.py)."""
from absl import flags

from trpo_tf.cli import run_command
from trpo_tf.tools import plot

if __name__ == "__main__":
    flags.adopt_module_key_flags(plot)  # --help lists the tool's flags
    run_command(plot)
