"""TensorFlow's C++ start-up lines, held to TF_CPP_MIN_LOG_LEVEL at their source.

TensorFlow 2.21 logs through absl before anything calls absl::InitializeLog(), so while
`import tensorflow` runs, its lines ("oneDNN custom operations are on ..." on CPUs where
oneDNN is on, twice, each after absl's "All log messages before absl::InitializeLog() ..."
notice) go straight to file descriptor 2 and ignore TF_CPP_MIN_LOG_LEVEL. trpo_tf's
__init__ installs a `WrappedImport` of it, so whichever module imports TensorFlow first
does so with descriptor 2 piped through a small relay process that passes on every line whose
severity the variable keeps, in order, as it comes. Anything that is not an absl / TensorFlow
log line (a Python warning, a crash message) always passes.

After the import the same variable is handed to absl itself (`hold_runtime_logs`): TensorFlow
2.21's kernels log through absl, whose minimum level the variable does not set, so lines such
as "E0000 ... util.cc:131] oneDNN supports DT_UINT8 only on platforms with AVX-512. Falling
back to the default Eigen-based implementation" (one per dtype - uint8, bool, int64, half - on
CPUs without AVX-512 with oneDNN on: a note on a slower kernel, logged at ERROR) would reach
the terminal mid-run. Real errors still reach the user: TensorFlow raises them as Python
exceptions, and fatal lines are never held.

A command's own process (cli.main_guard, a Ray sampling worker) also imports TensorFlow
without the optional modules Keras loads with it when they are installed, for what no trpo_tf
command does (`skip_optional_modules`).
"""
import ctypes
import importlib.abc
import importlib.util
import mmap
import os
import re
import signal
import subprocess
import sys

ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called"
# absl: "I0000 00:00:1796039369.188395    2288 port.cc:153] ..."; TensorFlow's own logger:
# "2025-09-17 14:44:05.157831: I external/...". The letter is the severity.
LOG_LINE = re.compile(r"^(?:([IWEF])\d{4} \d\d:\d\d:\d\d|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: ([IWEF]) )")
SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}  # TF_CPP_MIN_LOG_LEVEL=n hides severities < n


def min_log_level():
    """TF_CPP_MIN_LOG_LEVEL as TensorFlow reads it (unset or not a number: 0, show all)."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def keeps(line, level):
    """Whether `line` is shown under TF_CPP_MIN_LOG_LEVEL=level (fatal lines always are)."""
    if line.startswith(ABSL_NOTICE):  # a note on where INFO lines go: INFO-grade itself
        return level <= 0
    match = LOG_LINE.match(line)
    if match is None:
        return True
    return SEVERITY[match.group(1) or match.group(2)] >= min(level, SEVERITY["F"])


def relay(level, source, sink):
    """Copy the lines of `source` to `sink` as they come, less those `keeps` drops."""
    for line in source:
        if keeps(line.decode(errors="replace"), level):
            sink.write(line)
            sink.flush()


def filtered_fd2(load, level):
    """Run load() with file descriptor 2 going through a relay process (this file run as a
    script) that passes on, as they come, the lines `keeps` keeps: a process that dies inside
    load() (a fatal CPU check aborts) still shows its last words. If no relay can be started,
    load() runs unfiltered."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
        read_end, write_end = os.pipe()
    except OSError:  # no stderr to filter
        return load()
    try:
        relay_process = subprocess.Popen([sys.executable, "-I", os.path.abspath(__file__),
                                          str(level)], stdin=read_end, stdout=saved, stderr=saved)
    except OSError:
        for fd in (saved, read_end, write_end):
            os.close(fd)
        return load()
    os.close(read_end)
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        return load()
    finally:
        sys.stderr.flush()  # Python's own writes during load() keep their place
        os.dup2(saved, 2)  # the pipe's last writer closes: the relay drains it and ends
        os.close(saved)
        relay_process.wait()


# absl::SetMinLogLevel(absl::LogSeverityAtLeast), exported by libtensorflow_framework.so.2; its
# mangled name carries absl's LTS namespace (lts_20250814 in TensorFlow 2.21), found in the file.
SET_MIN_LOG_LEVEL = re.compile(rb"_ZN4absl\d+lts_\d+14SetMinLogLevelENS0_18LogSeverityAtLeastE(?=\0)")


def absl_set_min_log_level(library):
    """ctypes handle on absl::SetMinLogLevel in the shared library at `library`, or None."""
    try:
        with open(library, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            match = SET_MIN_LOG_LEVEL.search(data)
            name = None if match is None else match.group().decode()
        return None if name is None else getattr(ctypes.CDLL(library), name)
    except (OSError, ValueError, AttributeError):
        return None


def hold_runtime_logs(tensorflow, level):
    """Set absl's minimum log level inside the loaded TensorFlow to TF_CPP_MIN_LOG_LEVEL's (absl
    numbers its severities as TensorFlow does: INFO 0 ... FATAL 3). Without the symbol (another
    TensorFlow build) the run's lines are left as TensorFlow writes them."""
    if level <= 0:
        return
    library = os.path.join(os.path.dirname(tensorflow.__file__), "libtensorflow_framework.so.2")
    set_min_log_level = absl_set_min_log_level(library)
    if set_min_log_level is not None:
        set_min_log_level(ctypes.c_int(min(level, SEVERITY["F"])))


# What Keras imports with TensorFlow if it is installed, each in a try / except ImportError,
# for what no trpo_tf command does: IPython (showing a saved model's files in a notebook),
# pandas (DataFrames in Model.fit) and matplotlib (keras.visualization's image galleries; the
# commands that plot import it themselves, after TensorFlow). 0.9 s of the 5.4 s
# `import trpo_tf.run.evaluate` took here for the first two, 0.43 s more for matplotlib.pyplot
# (-X importtime, 2026-12-07).
OPTIONAL_FOR_COMMANDS = ("IPython", "pandas", "matplotlib")
_skipped = []  # those of them the coming TensorFlow import leaves out


def skip_optional_modules(also=()):
    """Have this process's TensorFlow import (if it is still to come) leave out those of
    OPTIONAL_FOR_COMMANDS and of the command's own `also` not imported yet: for a command's
    own process only, as Keras then goes on without them; a program that imports trpo_tf as a
    library keeps Keras whole."""
    if "tensorflow" not in sys.modules:
        _skipped[:] = [name for name in (*OPTIONAL_FOR_COMMANDS, *also)
                       if name not in sys.modules]


def without_modules(names, load):
    """load() while those of the modules `names` not imported yet cannot be imported (an import
    of one raises ImportError); afterwards they can be again. Nested calls leave the
    outermost's in place."""
    added = [name for name in names if name not in sys.modules]
    for name in added:
        sys.modules[name] = None
    try:
        return load()
    finally:
        for name in added:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def filtered_tensorflow(load, module):
    """TensorFlow's import: its lines filtered, then absl's level set; without the skipped
    optional modules (TensorFlow loads keras.src through keras._tf_keras after the keras
    package's own body has run: the keras hook alone would not hold them back)."""
    level = min_log_level()
    filtered_fd2(lambda: without_modules(_skipped, load), level)
    hold_runtime_logs(module, level)


def keras_without_skipped_modules(load, module):
    """Keras's import (which may come first and import TensorFlow inside): without the skipped
    optional modules."""
    del module
    without_modules(_skipped, load)


class _WrappedLoader(importlib.abc.Loader):
    """A package's own loader, but its module body runs through `around(load, module)`."""

    def __init__(self, loader, around):
        self._loader, self._around = loader, around

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._around(lambda: self._loader.exec_module(module), module)

    def __getattr__(self, name):  # resource readers, get_data, ...: the real loader's
        return getattr(self._loader, name)


class WrappedImport(importlib.abc.MetaPathFinder):
    """A sys.meta_path entry that finds the package `name` once, as the next finders would,
    and hands back its spec with the loader wrapped by `around`; it then leaves sys.meta_path."""

    def __init__(self, name, around):
        self.name, self.around = name, around

    def find_spec(self, name, path=None, target=None):
        if name != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _WrappedLoader(spec.loader, self.around)
        return spec


def install():
    """Filter TensorFlow's import-time lines and let a command's process skip optional
    modules, for each of TensorFlow and Keras that is not loaded yet nor hooked already."""
    for name, around in (("tensorflow", filtered_tensorflow),
                         ("keras", keras_without_skipped_modules)):
        if name not in sys.modules and not any(
                isinstance(f, WrappedImport) and f.name == name for f in sys.meta_path):
            sys.meta_path.insert(0, WrappedImport(name, around))


if __name__ == "__main__":  # the relay of filtered_fd2: stdin -> stdout, until the pipe closes
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the importing process's to take
    relay(int(sys.argv[1]), sys.stdin.buffer, sys.stdout.buffer)
