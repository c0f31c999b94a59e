"""A run's outputs are never destroyed by the tool: the checks made before training starts
(TensorFlow-free, so a bad --logdir / --export_dir fails in under a second).

- `--logdir` must be a directory this process can create and write in.
- `--export_dir` may replace only a policy trpo_tf exported before (it carries EXPORT_MARKER);
  never the logdir itself or anything above it, never the checkpoints, never a file or a
  directory of anything else.
- `--resume=never` on a used logdir moves the earlier run (events, checkpoints, run record,
  policy) into `<logdir>/previous-<k>/` instead of writing a second run's events beside it.
- A live command holds its output directory (`lock_dir`): a second command on it is refused
  in one line naming the holder, before it changes anything.
"""
import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
import tempfile
import weakref

from trpo_tf.errors import ConfigError

EXPORT_MARKER = "trpo_tf_policy.json"  # written into every export (export.py)
CHECKPOINTS = "checkpoints"
RUN_RECORD = "run.json"                # the settings a logdir was trained with (train.py)
EVENTS_PREFIX = "events.out.tfevents."
SET_ASIDE = ("previous", "damaged")    # <logdir>/previous-<k>/, checkpoints/damaged-<k>/
LOCK_FILE = "trpo_tf.lock"             # who holds a directory (lock_dir)


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


def check_writable_dir(path, flag):
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
    check_writable_dir(logdir, "--logdir")
    check_export_dir(export_dir, logdir)
    check_writable_dir(os.path.dirname(os.path.abspath(export_dir)), "--export_dir's parent")


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


def set_aside_earlier_run(logdir, export_dir, unless_resumable=False):
    """--resume=never on a used logdir: move the earlier run into <logdir>/previous-<k>/ ->
    that directory, or None if the logdir was unused. `unless_resumable` (--resume=auto): only
    a run that left no checkpoints (--checkpoint_every=0) moves, since none can go on, and its
    events would otherwise interleave with the new run's."""
    names = earlier_run(logdir, export_dir)
    if unless_resumable and CHECKPOINTS in names:
        return None
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


class DirLock:
    """An exclusive flock on <directory>/trpo_tf.lock, held while this object lives (one per
    directory and process: lock_dir) and removed when it goes or is released, whichever comes
    first (the command that took it holds it in a `with` block). The kernel drops the flock when
    the holder exits, however it exits: a file a kill -9 leaves behind is not held, and the
    next command takes it over. The file records the holder's pid, host, command and start
    time, for the line a second command gets."""

    def __init__(self, directory, flag):
        self.key = os.path.realpath(directory)
        self.path = os.path.join(directory, LOCK_FILE)
        while True:
            handle = open(self.path, "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read()
                handle.close()
                raise ConfigError(f"{flag}={directory} is in use by {describe_holder(holder)}: "
                                  f"wait for it to end or stop it, or use another {flag}") from None
            except OSError as err:  # a filesystem without locks
                handle.close()
                raise ConfigError(f"{flag}={directory} cannot be locked against a second "
                                  f"command ({err.strerror or err}): use a local directory") from None
            if same_file(handle, self.path):
                break
            handle.close()  # its holder removed it as we opened it: lock the file there now
        handle.seek(0)
        handle.truncate()
        json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                   "command": " ".join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
                   "since": datetime.datetime.now(datetime.timezone.utc).strftime(
                       "%Y-%m-%d %H:%M UTC")}, handle)
        handle.flush()
        self._handle = handle

    def release(self):
        """Let the directory go, for every holder in this process (again: nothing); the next
        lock_dir of it locks anew. The file goes while still held, so a newcomer never locks a
        stray one."""
        if _HELD.get(self.key) is self:
            del _HELD[self.key]
        self._let_go()

    def _let_go(self):
        handle, self._handle = getattr(self, "_handle", None), None
        if handle is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            handle.close()

    __del__ = _let_go  # (_HELD forgets a collected lock by itself)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):  # however the block ends (an interrupt, a fault)
        self.release()


def same_file(handle, path):
    """Whether the open `handle` is still the file at `path`."""
    try:
        here, there = os.fstat(handle.fileno()), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


_HELD = weakref.WeakValueDictionary()  # realpath -> the DirLock this process holds on it


def lock_dir(directory, flag="--logdir"):
    """Hold `directory` (which exists) against other commands: the DirLock to keep a
    reference to while writing in it (the one this process holds already, if any); the lock
    goes with the last reference or release(). ConfigError, naming the holder, if another
    process holds it."""
    key = os.path.realpath(directory)
    lock = _HELD.get(key)
    if lock is None:
        lock = _HELD[key] = DirLock(directory, flag)
    return lock


def describe_holder(record):
    """The lock file's record as 'pid 12 on host h (command, since ...)'."""
    try:
        r = json.loads(record)
        command = r["command"] if len(r["command"]) <= 80 else r["command"][:77] + "..."
        return f"pid {r['pid']} on host {r['host']} ({command}, since {r['since']})"
    except (ValueError, KeyError, TypeError):  # the holder is between its lock and its record
        return "another process"
