"""What both command-line tools share: flag parsing that fails in one line (exit code 2),
and quiet absl logging."""
import sys

from absl import flags, logging


def parse_flags(argv):
    """absl's parser, but a bad flag or an unreadable flagfile is one line and exit code 2."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        print(f"error: {str(err).removeprefix('ERROR:: ')}", file=sys.stderr)
        sys.exit(2)


def quiet_logging():
    """Our progress lines, not TensorFlow's INFO logs (unless --verbosity is given)."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
