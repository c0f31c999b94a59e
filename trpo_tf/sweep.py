"""`python -m trpo_tf.sweep`: the natural gradient's step swept by factors of three (trpo_tf/tools/sweep.py)."""
from absl import flags

from trpo_tf.cli import run_command
from trpo_tf.tools import sweep

if __name__ == "__main__":
    flags.adopt_module_key_flags(sweep)  # --help lists the tool's flags
    run_command(sweep)
