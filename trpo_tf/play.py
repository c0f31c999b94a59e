"""`python -m trpo_tf.play`: score an exported policy, or record a video of it (trpo_tf/tools/play.py)."""
from absl import flags

from trpo_tf.cli import run_command
from trpo_tf.tools import play

if __name__ == "__main__":
    flags.adopt_module_key_flags(play)  # --help lists the tool's flags
    run_command(play)
