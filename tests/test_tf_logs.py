"""TensorFlow's import-time C++ lines are held to TF_CPP_MIN_LOG_LEVEL; nothing else is."""
import importlib
import os
import subprocess
import sys

import pytest

from trpo_tf import tf_logs

ONEDNN = ("I0000 00:00:1796039369.188395    2288 port.cc:153] oneDNN custom operations are on. "
          "You may see slightly different numerical results ...\n")
NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
TSL_ERROR = "2025-09-17 14:44:05.176998: E external/local_xla/cuda_fft.cc:467] Unable to register\n"
FATAL = "F0000 00:00:1758131045.203198 3722035 check.cc:10] Check failed: x\n"
OTHER = "/some/module.py:12: DeprecationWarning: this is not a C++ log line\n"


@pytest.mark.parametrize("level, kept", [
    (0, [NOTICE, ONEDNN, TSL_ERROR, FATAL, OTHER]),
    (1, [TSL_ERROR, FATAL, OTHER]),
    (2, [TSL_ERROR, FATAL, OTHER]),
    (3, [FATAL, OTHER]),
])
def test_lines_are_kept_by_severity_as_tf_cpp_min_log_level_says(level, kept):
    lines = [NOTICE, ONEDNN, TSL_ERROR, FATAL, OTHER]
    assert [line for line in lines if tf_logs.keeps(line, level)] == kept


def test_a_filtered_load_writes_back_what_it_keeps_in_order(capfd):
    def load():
        for line in (NOTICE, ONEDNN, OTHER, NOTICE, ONEDNN, FATAL):
            os.write(2, line.encode())
        return 42

    assert tf_logs.filtered_fd2(load, level=3) == 42
    assert capfd.readouterr().err == OTHER + FATAL


def test_a_failing_load_still_restores_stderr_and_shows_its_lines(capfd):
    def load():
        os.write(2, OTHER.encode())
        raise ImportError("broken")

    with pytest.raises(ImportError, match="broken"):
        tf_logs.filtered_fd2(load, level=3)
    print("after", file=sys.stderr)
    assert capfd.readouterr().err == OTHER + "after\n"


def import_code(command, tensorflow_first=False):
    """Import trpo_tf and TensorFlow as a library does, or as a command's process does
    (cli.main_guard first), Keras first (trpo_tf.policies imports it before TensorFlow, as
    training does) or TensorFlow first (as play does: Keras then loads inside it), run an op,
    log an ERROR line from a kernel, and print which of tf_logs.OPTIONAL_FOR_COMMANDS were
    loaded."""
    return ("import sys\n"
            "from trpo_tf import cli, tf_logs\n"
            + ("cli.main_guard(lambda: None)\n" if command else "")
            + ("import tensorflow as tf, trpo_tf.policies\n" if tensorflow_first
               else "import trpo_tf.policies, tensorflow as tf\n")
            + "print(tf.reduce_sum(tf.ones(3)).numpy())\n"
            "tf.raw_ops.PrintV2(input=tf.constant('kernel-line'), output_stream='log(error)')\n"
            "print(sorted(set(tf_logs.OPTIONAL_FOR_COMMANDS) & set(sys.modules)))\n")


@pytest.mark.parametrize("onednn, command", [("0", False), ("1", True)],
                         ids=["0-library", "1-command"])
def test_importing_trpo_tf_and_tensorflow_prints_nothing_on_stderr(onednn, command):
    """With oneDNN on, TensorFlow 2.21 writes 4 lines at import that TF_CPP_MIN_LOG_LEVEL does
    not stop; trpo_tf's import filter does. Set to 0, the variable shows them again (so this
    test can tell the filter works). An ERROR line a kernel logs at run time is held too
    under trpo_tf's default level (3). A command's process loads Keras without the optional
    modules no command uses, whichever of Keras and TensorFlow it imports first; a library's
    keeps those installed."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["TF_ENABLE_ONEDNN_OPTS"] = onednn
    code = import_code(command)
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, timeout=300)
    installed = sorted(m for m in tf_logs.OPTIONAL_FOR_COMMANDS if importlib.util.find_spec(m))
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == f"3.0\n{[] if command else installed}\n"
    assert quiet.stderr == ""
    if onednn == "1":
        loud = subprocess.run([sys.executable, "-c", import_code(command, tensorflow_first=True)],
                              capture_output=True, text=True,
                              env={**env, "TF_CPP_MIN_LOG_LEVEL": "0"}, timeout=300)
        assert "oneDNN custom operations are on" in loud.stderr
        assert loud.stdout == quiet.stdout


def test_without_modules_makes_them_unimportable_only_while_loading():
    sys.modules.pop("colorsys", None)

    def load():
        with pytest.raises(ImportError):
            importlib.import_module("colorsys")
        return 7

    assert tf_logs.without_modules(["colorsys"], load) == 7
    assert importlib.import_module("colorsys").rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)


def test_a_process_that_dies_while_loading_still_shows_its_last_lines():
    """A fatal CPU check aborts inside `import tensorflow`: its F line must reach the user."""
    code = ("import os\n"
            "from trpo_tf import tf_logs\n"
            "def load():\n"
            f"    os.write(2, {ONEDNN.encode()!r})\n"
            f"    os.write(2, {FATAL.encode()!r})\n"
            "    os._exit(134)\n"
            "tf_logs.filtered_fd2(load, 3)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 134 and out.stderr == FATAL


def test_the_pinned_tensorflow_exports_the_absl_level_setter():
    """hold_runtime_logs falls back to doing nothing without the symbol: on the pinned
    TensorFlow it must find it, or the runtime lines below would only pass by luck."""
    import tensorflow as tf

    library = os.path.join(os.path.dirname(tf.__file__), "libtensorflow_framework.so.2")
    assert tf_logs.absl_set_min_log_level(library) is not None
    assert tf_logs.absl_set_min_log_level(sys.executable) is None  # no such symbol: None


def test_an_error_line_a_kernel_logs_shows_under_level_2_and_not_under_3(capfd):
    """Kernels log through absl at run time (on CPUs without AVX-512 oneDNN's notes on uint8,
    bool, int64 and half kernels come at ERROR severity): the level hold_runtime_logs sets
    from TF_CPP_MIN_LOG_LEVEL shows an ERROR line under 2 and hides it under 3, trpo_tf's
    default (set here in this process, as the import sets it in a fresh one)."""
    import tensorflow as tf

    try:
        for level, shown in ((2, True), (3, False)):
            tf_logs.hold_runtime_logs(tf, level)
            tf.raw_ops.PrintV2(input=tf.constant("kernel-line"), output_stream="log(error)")
            assert ("kernel-line" in capfd.readouterr().err) == shown, level
    finally:
        tf_logs.hold_runtime_logs(tf, tf_logs.min_log_level())
