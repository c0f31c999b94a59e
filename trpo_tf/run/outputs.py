"""A run's outputs are never destroyed by the tool: the checks made before training starts
(TensorFlow-free, so a bad --logdir / --export_dir fails in under a second).

- `--logdir` must be a directory this process can create and write in.
- `--export_dir` may replace only a policy trpo_tf exported before (it carries EXPORT_MARKER);
  never the logdir itself or anything above it, never the checkpoints, never a file or a
  directory of anything else.
- `--resume=never` on a used logdir moves the earlier run (events, checkpoints, run record,
  policy) into `<logdir>/previous-<k>/` instead of writing a second run's events beside it.
"""
import json
import os
import tempfile

from trpo_tf.errors import ConfigError

EXPORT_MARKER = "trpo_tf_policy.json"  # written into every export (export.py)
CHECKPOINTS = "checkpoints"
RUN_RECORD = "run.json"                # the settings a logdir was trained with (train.py)
EVENTS_PREFIX = "events.out.tfevents."
SET_ASIDE = ("previous", "damaged")    # <logdir>/previous-<k>/, checkpoints/damaged-<k>/


def is_trpo_tf_export(path):
    """A directory trpo_tf exported: it carries the marker, or (exports written before the
    marker, until 2026-11-30) holds only a SavedModel whose graph has our env records."""
    if os.path.isfile(os.path.join(path, EXPORT_MARKER)):
        return True
    pb = os.path.join(path, "saved_model.pb")
    if not os.path.isfile(pb) or not set(os.listdir(path)) <= {
            "saved_model.pb", "variables", "assets", "fingerprint.pb"}:
        return False
    with open(pb, "rb") as f:
        graph = f.read()
    return b"env_settings" in graph and b"env_id" in graph


def _inside(path, root):
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def check_export_dir(export_dir, logdir, flag="--export_dir"):
    """ConfigError unless exporting to `export_dir` can replace nothing but an earlier export."""
    export, log = os.path.realpath(export_dir), os.path.realpath(logdir)
    if _inside(log, export):
        raise ConfigError(f"{flag}={export_dir} would replace the run's --logdir={logdir} (its "
                          "events and checkpoints) with the policy: export beside or inside it")
    if _inside(export, os.path.join(log, CHECKPOINTS)):
        raise ConfigError(f"{flag}={export_dir} lies in the run's checkpoints: export elsewhere")
    if os.path.lexists(export_dir) and not (os.path.isdir(export_dir)
                                            and is_trpo_tf_export(export_dir)):
        kind = "a directory" if os.path.isdir(export_dir) else "a file"
        raise ConfigError(f"{flag}={export_dir} is {kind} trpo_tf did not export, which the "
                          "export would replace: choose another --export_dir, or move it away")


def _check_writable_dir(path, flag):
    """Create `path` (and parents) and write a probe file in it; ConfigError if either fails."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ConfigError(f"{flag}={path} is a file, not a directory")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise ConfigError(f"{flag}={path} cannot be written: {err.strerror or err}") from None


def prepare(logdir, export_dir):
    """Check --logdir and --export_dir before training: the logdir is created and writable, the
    export's parent too, and the export may only replace an earlier export."""
    _check_writable_dir(logdir, "--logdir")
    check_export_dir(export_dir, logdir)
    _check_writable_dir(os.path.dirname(os.path.abspath(export_dir)), "--export_dir's parent")


def earlier_run(logdir, export_dir):
    """The entries of an earlier run in `logdir` (names), empty if it is unused."""
    if not os.path.isdir(logdir):
        return []
    names = [n for n in os.listdir(logdir)
             if n.startswith(EVENTS_PREFIX) or n in (CHECKPOINTS, RUN_RECORD)]
    policy = os.path.join(logdir, "policy")
    if (os.path.realpath(export_dir) == os.path.realpath(policy) and os.path.isdir(policy)
            and is_trpo_tf_export(policy)):
        names.append("policy")
    return sorted(names)


def move_into_new_dir(parent, prefix, names):
    """Move the entries `names` of `parent` into a new <parent>/<prefix>-<k>/ (k the first
    free number) -> that directory. Nothing is copied or deleted."""
    k = 1
    while os.path.lexists(os.path.join(parent, f"{prefix}-{k}")):
        k += 1
    target = os.path.join(parent, f"{prefix}-{k}")
    os.makedirs(target)
    for name in names:
        os.rename(os.path.join(parent, name), os.path.join(target, name))
    return target


def set_aside_earlier_run(logdir, export_dir):
    """--resume=never on a used logdir: move the earlier run into <logdir>/previous-<k>/ ->
    that directory, or None if the logdir was unused."""
    names = earlier_run(logdir, export_dir)
    return move_into_new_dir(logdir, SET_ASIDE[0], names) if names else None


def read_run_record(logdir):
    """The settings the run in `logdir` was trained with, or None (none recorded)."""
    try:
        with open(os.path.join(logdir, RUN_RECORD)) as f:
            return json.load(f)
    except (FileNotFoundError, ValueError):
        return None


def write_run_record(logdir, record):
    tmp = os.path.join(logdir, RUN_RECORD + ".tmp")
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, os.path.join(logdir, RUN_RECORD))
