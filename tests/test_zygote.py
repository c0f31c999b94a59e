"""tests/zygote.py, the forked `python -m` processes the command tests run: the same exit code,
output and signal behaviour as a fresh interpreter."""
import os
import signal
import subprocess
import sys

import zygote

REFUSAL = [sys.executable, "-m", "trpo_tf.launch", "--env=NoSuchEnv-v9"]


def test_a_forked_command_exits_and_prints_as_a_fresh_interpreter(tmp_path):
    fresh = subprocess.run(REFUSAL, capture_output=True, text=True, timeout=120)
    forked = zygote.run(REFUSAL, capture_output=True, text=True, timeout=120)
    assert forked.returncode == fresh.returncode == 2
    assert (forked.stdout, forked.stderr) == (fresh.stdout, fresh.stderr)
    assert fresh.stderr.startswith("error: --env='NoSuchEnv-v9'")
    user_module = tmp_path / "hello_cmd.py"  # PYTHONPATH and cwd reach the child, as argv does
    user_module.write_text("import os, sys\nprint(os.getcwd(), sys.argv[1:])\nsys.exit(-2)\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{zygote.ROOT}"}
    cmd = [sys.executable, "-m", "hello_cmd", "a", "b"]
    assert zygote.forkable(cmd, env, tmp_path)
    out = zygote.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert (out.returncode, out.stdout) == (254, f"{tmp_path} ['a', 'b']\n")  # as exit(-2)


def test_a_forked_commands_training_runs_fork_from_the_server_too(tmp_path):
    """As bench/returns.py's runs: subprocess.run in a forked child forks a training run
    (`python -m trpo_tf.launch`) from the server too (its parent is the server, not the
    child: the user env module it imports says), and runs any other command (here a module
    as play's video renderer is one) as a plain subprocess of the child."""
    (tmp_path / "ppid_env.py").write_text("import os\nprint('parent', os.getppid())\n")
    (tmp_path / "ppid_cmd.py").write_text("import os\nprint('parent', os.getppid())\n")
    (tmp_path / "outer_cmd.py").write_text(
        "import os, subprocess, sys\n"
        "trains = subprocess.run([sys.executable, '-m', 'trpo_tf.launch', "
        "'--env=ppid_env:Nothing-v0', '--logdir=run'], capture_output=True, text=True)\n"
        "other = subprocess.run([sys.executable, '-m', 'ppid_cmd'], capture_output=True, "
        "text=True)\n"
        "print(os.getpid(), os.getppid(), trains.returncode, trains.stdout.split()[1], "
        "other.stdout.split()[1])\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{zygote.ROOT}"}
    out = zygote.run([sys.executable, "-m", "outer_cmd"], capture_output=True, text=True,
                     timeout=120, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    pid, server, code, launch_parent, other_parent = out.stdout.split()
    assert code == "2"  # no such env in the module: one line, exit 2
    assert launch_parent == server != pid and other_parent == pid


def test_a_bench_script_forks_and_exits_as_a_fresh_interpreter(tmp_path):
    cmd = [sys.executable, "bench/returns.py", "--seeds=0"]
    assert zygote.forkable(cmd, os.environ, zygote.ROOT)
    assert not zygote.forkable(cmd, os.environ, tmp_path)  # no such script there
    (tmp_path / "script.py").write_text("pass\n")
    assert not zygote.forkable([sys.executable, str(tmp_path / "script.py")], os.environ)
    fresh = subprocess.run(cmd, capture_output=True, text=True, cwd=zygote.ROOT, timeout=120)
    forked = zygote.run(cmd, capture_output=True, text=True, cwd=zygote.ROOT, timeout=120)
    assert forked.returncode == fresh.returncode == 2
    assert (forked.stdout, forked.stderr) == (fresh.stdout, fresh.stderr)
    assert "--seeds and --steps must be >= 1" in fresh.stderr


def test_a_forked_command_takes_signals_as_its_own_process(tmp_path):
    (tmp_path / "wait_cmd.py").write_text(
        "import time\nprint('ready', flush=True)\nwhile True:\n    time.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    cmd = [sys.executable, "-m", "wait_cmd"]
    # A shell's background job (`cmd &` without job control) starts with SIGINT ignored, and
    # so would both children (Python's rule, as the zygote keeps it): Python's own handler
    # for the children of this test, whatever the suite was started from.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        signals_end_forked_and_plain_children_alike(cmd, env)
    finally:
        signal.signal(signal.SIGINT, before)


def signals_end_forked_and_plain_children_alike(cmd, env):
    for signum, code in ((signal.SIGKILL, -9), (signal.SIGTERM, -15), (signal.SIGINT, -2)):
        children = [zygote.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=env),
                    subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)]
        assert isinstance(children[0], zygote.Child)
        errors = []
        for child in children:
            assert child.stdout.readline() == "ready\n" and child.poll() is None
            child.send_signal(signum)
            errors.append(child.communicate(timeout=60)[1])
            assert child.returncode == code
        # Python's own SIGINT handler in both: the traceback ends in KeyboardInterrupt
        assert [e.rstrip().endswith("KeyboardInterrupt") for e in errors] == [code == -2] * 2


def test_what_a_fork_cannot_reproduce_runs_as_a_plain_subprocess():
    onednn = "0" if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1" else "1"
    flipped = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn}
    assert zygote.env_differences(os.environ) == [] and zygote.forkable(REFUSAL, os.environ)
    assert not zygote.forkable(REFUSAL, flipped)  # read when TensorFlow is imported
    assert not zygote.forkable(REFUSAL, {**os.environ, "OMP_NUM_THREADS": "7"})
    assert not zygote.forkable(REFUSAL, {**os.environ, "LANG": "xx_XX.UTF-8"})
    assert not zygote.forkable(REFUSAL, {})
    assert zygote.forkable(REFUSAL, {**os.environ, "RAY_ADDRESS": "x"})  # read after loading
    assert not zygote.forkable(REFUSAL, os.environ, cwd="/")  # no trpo_tf to import there
    assert not zygote.forkable(REFUSAL, {**os.environ, "PYTHONPATH": "/"}, cwd="/")
    assert not zygote.forkable([sys.executable, "-c", "pass"], os.environ)
    assert not zygote.forkable(["qemu-x86_64", sys.executable, "-m", "trpo_tf.play"], os.environ)
