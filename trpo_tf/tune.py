"""`python -m trpo_tf.tune`: Optuna over the training flags (trpo_tf/tools/tune.py)."""
from absl import flags

from trpo_tf.cli import run_command
from trpo_tf.tools import tune

if __name__ == "__main__":
    flags.adopt_module_key_flags(tune)  # --help lists the tool's flags
    run_command(tune)
