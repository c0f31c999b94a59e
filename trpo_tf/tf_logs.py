"""TensorFlow's C++ start-up lines, held to TF_CPP_MIN_LOG_LEVEL at their source.

TensorFlow 2.21 logs through absl before anything calls absl::InitializeLog(), so while
`import tensorflow` runs, its lines ("oneDNN custom operations are on ..." on CPUs where
oneDNN is on, twice, each after absl's "All log messages before absl::InitializeLog() ..."
notice) go straight to file descriptor 2 and ignore TF_CPP_MIN_LOG_LEVEL. trpo_tf's
__init__ installs `FilteredTensorFlowImport`, so whichever module imports TensorFlow first
does so with descriptor 2 piped through a small relay process that passes on every line whose
severity the variable keeps, in order, as it comes. Anything that is not an absl / TensorFlow
log line (a Python warning, a crash message) always passes.
"""
import importlib.abc
import importlib.util
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


class _FilteredLoader(importlib.abc.Loader):
    """The package's own loader, but its module body runs under `filtered_fd2`."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        filtered_fd2(lambda: self._loader.exec_module(module), min_log_level())

    def __getattr__(self, name):  # resource readers, get_data, ...: the real loader's
        return getattr(self._loader, name)


class FilteredTensorFlowImport(importlib.abc.MetaPathFinder):
    """A sys.meta_path entry that finds `tensorflow` once, as the next finders would, and
    hands back its spec with the loader wrapped; it then leaves sys.meta_path."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _FilteredLoader(spec.loader)
        return spec


def install():
    """Filter TensorFlow's import-time lines, unless TensorFlow is already loaded or the
    filter is installed."""
    if "tensorflow" in sys.modules or any(
            isinstance(f, FilteredTensorFlowImport) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, FilteredTensorFlowImport())


if __name__ == "__main__":  # the relay of filtered_fd2: stdin -> stdout, until the pipe closes
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the importing process's to take
    relay(int(sys.argv[1]), sys.stdin.buffer, sys.stdout.buffer)
