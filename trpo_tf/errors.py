"""The errors a user sees as one line (no traceback); importing this costs nothing."""


def first_line(err, limit=120):
    """`Type: first line of the message` of an exception, for a one-line report; a line over
    `limit` characters is cut at a word's end, with "..."."""
    lines = str(err).strip().splitlines()
    if not lines:
        return type(err).__name__
    line = lines[0] if len(lines[0]) <= limit else lines[0][:limit].rsplit(" ", 1)[0] + " ..."
    return f"{type(err).__name__}: {line}"


class ConfigError(ValueError):
    """A bad setting; the message names the flag and what is allowed (exit code 2)."""


class EnvError(ValueError):
    """A bad --env / --env_backend / --policy value (exit code 2)."""


class EnvStepError(RuntimeError):
    """An env raised while stepping or resetting; names the env id and which env (exit 1)."""


class TrainingFault(RuntimeError):
    """Too many iterations in a row were skipped for non-finite numbers (exit code 1)."""


class CheckpointError(RuntimeError):
    """Checkpoints damaged beyond recovery, or one that could not be written (a full disk, or
    non-finite values): one line naming the damage and what to do (exit code 2)."""
