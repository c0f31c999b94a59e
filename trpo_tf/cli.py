"""What the command-line tools share: flag parsing that fails in one line (exit code 2),
signals that stop a run cleanly, and quiet absl logging."""
import os
import re
import signal
import sys
import warnings

from absl import app, flags, logging

from trpo_tf import errors, tf_logs


def parse_flags(argv):
    """absl's parser, but a bad flag or an unreadable flagfile is one line and exit code 2."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        said = str(err).removeprefix("ERROR:: ")
        if said.startswith("flag --algo=vine:"):  # the paper's two schemes are samplers
            said += " (vine is a sampler: --sampler=vine, with --algo=trpo)"
        print(f"error: {said}", file=sys.stderr)
        sys.exit(2)
    except SystemExit as done:  # absl's --help / --helpfull print what was asked, then exit(1)
        sys.exit(0 if done.code == 1 else done.code)


class StopOnSignal:
    """While active, SIGINT / SIGTERM only set `.signum` and say so at once (if `announce`):
    the loop finishes the iteration, checkpoints, exports and returns (a command with several
    runs starts no more). A second signal interrupts at once (KeyboardInterrupt).

    Two signals that arrive while the main thread is inside one long C call (a TensorFlow op)
    reach the Python handler as one call: Python keeps one flag per signal. Each still writes
    a byte to the wakeup fd (signal.set_wakeup_fd), so the handler counts them there."""

    STOPPING = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, announce=True):
        self.signum = None
        self.announce = announce
        self._wakeup = None  # the wakeup fd's pipe, while active

    def _arrived(self):
        """How many SIGINT / SIGTERM arrived since the last call (their wakeup-fd bytes)."""
        if self._wakeup is None:  # a signal while __enter__ sets up: this one
            return 1
        count = 0
        while True:
            try:
                data = os.read(self._wakeup[0], 512)
            except BlockingIOError:
                return count
            count += sum(byte in self.STOPPING for byte in data)

    def _handle(self, signum, frame):
        if self.signum is not None or self._arrived() > 1:
            raise KeyboardInterrupt
        self.signum = signum
        if self.announce:
            line = (f"{signal.Signals(signum).name}: stopping after this iteration (send it "
                    "again to stop at once)")
            try:  # os.write: the handler may run inside a print to sys.stdout
                os.write(sys.stdout.fileno(), (line + "\n").encode())
            except (AttributeError, OSError, ValueError):  # stdout is not a file (a notebook)
                print(line, flush=True)

    def __enter__(self):
        # first: outside the main thread it raises ValueError before any pipe exists
        self._previous = {s: signal.signal(s, self._handle) for s in self.STOPPING}
        self._wakeup = os.pipe()
        for fd in self._wakeup:
            os.set_blocking(fd, False)
        self._previous_wakeup = signal.set_wakeup_fd(self._wakeup[1], warn_on_full_buffer=False)
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        signal.set_wakeup_fd(self._previous_wakeup)
        for fd in self._wakeup:
            os.close(fd)
        self._wakeup = None


class OutputWithoutReader:
    """sys.stdout for a command whose reader may go away (`| head`, a pipe whose terminal
    closed): the run goes on with its lines sent to /dev/null, instead of dying in a
    BrokenPipeError."""

    def __init__(self, stream):
        self.stream = stream

    def __getattr__(self, name):
        return getattr(self.stream, name)

    def _reader_gone(self):
        try:
            fd = self.stream.fileno()
        except (AttributeError, OSError, ValueError):  # not a file: drop what comes
            self.stream = open(os.devnull, "w")
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)  # what is buffered, and the exit's flush, too
        os.close(devnull)

    def write(self, text):
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            self._reader_gone()
            return len(text)

    def flush(self):
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._reader_gone()


GYMNASIUM_WARNING = re.compile(r"^(?:\x1b\[\d+m)*WARN: (.*?)(?:\x1b\[0m)?$", re.DOTALL)


def gymnasium_warnings_as_notes(show):
    """warnings.showwarning for a command: gymnasium's logger warnings (colour codes, "WARN: ",
    and the source line that warned) as one line, "note: gymnasium: ..."; others by `show`."""
    def shown(message, category, filename, lineno, file=None, line=None):
        said = GYMNASIUM_WARNING.match(str(message))
        if not said:
            return show(message, category, filename, lineno, file, line)
        try:
            print(f"note: gymnasium: {said.group(1)}", file=file or sys.stderr, flush=True)
        except OSError:  # stderr gone: the warning is lost, as warnings' own would be
            pass

    return shown


class Terminated(KeyboardInterrupt):
    """SIGTERM while a command starts (before a run's StopOnSignal takes signals over)."""


def raise_terminated(signum, frame):
    raise Terminated


def main_guard(fn, without=()):
    """Run fn(); a user error (bad flag, env or policy) is one line on stderr and exit code 2;
    a run stopped by a crashing env or repeated numerical faults is one line and exit code 1;
    an interrupt (a second Ctrl-C, or one during start-up) is one line and exit code 130, at
    once: the iteration in progress is lost, the checkpoints are as the last one left them
    (a training run's interrupt names the last one, or says there is none); an allocation
    that failed (settings too big for the memory) is one line and exit code 2; SIGTERM during
    start-up likewise, exit code 143 (it killed the process without a word, its logdir
    locked). The process is the command's: TensorFlow loads without what no command uses
    (tf_logs), nor the modules `without` that this command does not use. A reader of stdout
    that goes away (OutputWithoutReader) does not stop it."""
    tf_logs.skip_optional_modules(without)
    stdout = sys.stdout
    # None: the command runs with stdout closed (>&-), and its lines go nowhere
    sys.stdout = OutputWithoutReader(stdout if stdout is not None else open(os.devnull, "w"))
    sigterm = signal.getsignal(signal.SIGTERM)
    if sigterm == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, raise_terminated)
    show_warning = warnings.showwarning
    warnings.showwarning = gymnasium_warnings_as_notes(show_warning)
    try:
        return fn()
    except KeyboardInterrupt as err:  # a training run's says what its checkpoints hold
        print(f"error: {'terminated' if isinstance(err, Terminated) else 'interrupted'}"
              f"{'; ' + err.args[0] if err.args else ''}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        end_ray_session()  # os._exit skips the exit hook that would
        os._exit(143 if isinstance(err, Terminated) else 130)  # not sys.exit: the sampling
        # thread may be inside a simulator
    except (errors.ConfigError, errors.EnvError, errors.CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except (errors.EnvStepError, errors.TrainingFault) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except Exception as err:
        if not out_of_memory(err):
            raise
        print(f"error: {out_of_memory_line(err)}", file=sys.stderr)
        sys.exit(2)
    finally:
        warnings.showwarning = show_warning
        signal.signal(signal.SIGTERM, sigterm)
        sys.stdout.flush()  # through the wrapper: what is buffered may meet a closed pipe
        sys.stdout = stdout


def out_of_memory(err):
    """Whether `err` is an allocation that failed: Python's MemoryError, TensorFlow's
    ResourceExhaustedError of an allocation (told by name: this module loads no TensorFlow;
    TensorFlow raises it for a full disk or quota too, which is not this)."""
    return isinstance(err, MemoryError) or (
        type(err).__name__ == "ResourceExhaustedError" and "OOM when allocating" in str(err))


def out_of_memory_line(err):
    """One line for a failed allocation, naming the tensor where TensorFlow does (Keras wraps
    it in lines about the layer's call) and the settings that size the memory."""
    tensor = re.search(r"OOM when allocating tensor with shape\[[^\]]*\]", str(err))
    return (f"out of memory ({tensor.group(0) if tensor else errors.first_line(err)}): the "
            "networks (--policy_hidden, --value_hidden, --policy_rnn_units) or the batch "
            "(--batch_steps, --num_envs) need more memory than this machine has")


def end_ray_session():
    """Leave the Ray session this process joined, if any (--workers), stopping the local
    instance it started; Ray is never imported for it."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


def check_policy_dir(policy_dir):
    """An EnvError unless `policy_dir` holds an exported policy (checked before TensorFlow
    loads, so a mistyped --policy fails at once)."""
    if not policy_dir:
        raise errors.EnvError("--policy is required: the directory of an exported policy "
                              "(<logdir>/policy after training)")
    if not os.path.isdir(policy_dir):
        raise errors.EnvError(f"--policy={policy_dir!r} " + (
            "is not a directory" if os.path.exists(policy_dir) else "does not exist"))
    if not os.path.isfile(os.path.join(policy_dir, "saved_model.pb")):
        inside = os.path.join(policy_dir, "policy")
        raise errors.EnvError(f"--policy={policy_dir!r} is not an exported policy directory "
                              "(no saved_model.pb in it)" + (
                                  f": a run's logdir? its policy is --policy={inside}"
                                  if os.path.isfile(os.path.join(inside, "saved_model.pb"))
                                  else ""))


def quiet_logging():
    """Our progress lines, not TensorFlow's INFO logs (unless --verbosity is given)."""
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)


def run_command(module):
    """Run a tool's `main` as absl's app, parsing flags with its FLAGS_PARSER (parse_flags)."""
    app.run(module.main, flags_parser=getattr(module, "FLAGS_PARSER", parse_flags))
