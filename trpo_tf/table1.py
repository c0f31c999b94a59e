"""`python -m trpo_tf.table1`: Table 1 rows of an exported Atari policy (trpo_tf/tools/table1.py)."""
from absl import flags

from trpo_tf.cli import run_command
from trpo_tf.tools import table1

if __name__ == "__main__":
    flags.adopt_module_key_flags(table1)  # --help lists the tool's flags
    run_command(table1)
