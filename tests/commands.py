"""The command-line tools run in the test's own process: what a subprocess would give
(returncode, stdout, stderr) without a Python and TensorFlow start-up per case. The tests that
need the process itself (signals, kill -9, exit codes after a crash) still start one."""
import subprocess


def launch_here(capsys, *args):
    """`python -m trpo_tf.launch *args`, in this process."""
    from trpo_tf import launch

    capsys.readouterr()  # what the test printed before is not the command's
    launch.FLAGS.unparse_flags()  # a process of its own would start from the defaults
    try:
        launch.main(launch.parse_flags_with_preset(["trpo_tf.launch", *args]))
        code = 0
    except SystemExit as done:
        code = done.code
    finally:
        launch.FLAGS.unparse_flags()
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)
