"""Runs that survive: exact resume after a clean stop, SIGTERM, and kill -9 at a random point."""
import os
import pty
import random
import select
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import zygote
from test_train import event_steps
from trpo_tf.config import Config
from trpo_tf.flat import get_flat
from trpo_tf.run import outputs
from trpo_tf.run.train import Trainer


def final_params(cfg):
    trainer = Trainer(cfg)
    try:
        trainer.run()
        variables = trainer.policy.variables + trainer.method.value_net.variables
        return get_flat(variables).numpy()
    finally:
        trainer.close()


def test_resume_after_a_clean_stop_gives_the_same_parameters_as_one_run(tmp_path):
    base = dict(env="Hopper", env_backend="gymnasium", batch_steps=600, num_envs=3, seed=4,
                quiet=True)
    straight = final_params(Config(iterations=4, logdir=str(tmp_path / "a"), **base))
    final_params(Config(iterations=2, logdir=str(tmp_path / "b"), **base))
    resumed = final_params(Config(iterations=4, logdir=str(tmp_path / "b"), **base))
    np.testing.assert_array_equal(resumed, straight)  # policy, value net, normaliser


def launch(logdir, iterations, **kwargs):
    cmd = [sys.executable, "-m", "trpo_tf.launch", "--env=Cartpole", "--env_backend=gymnasium",
           "--batch_steps=2000", "--num_envs=2", f"--iterations={iterations}", f"--logdir={logdir}"]
    return zygote.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def wait_for_iterations(proc, count):
    """Read progress lines until `count` iterations are reported."""
    seen = 0
    while seen < count:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        seen += line.startswith("it ")


def test_sigterm_finishes_the_iteration_checkpoints_and_exports(tmp_path):
    proc = launch(tmp_path, 50)
    wait_for_iterations(proc, 2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "stopping after iteration" in out and "exported policy to" in out
    stopped_at = int(out.split("stopping after iteration ")[1].split()[0])
    assert os.path.isfile(tmp_path / "policy" / "saved_model.pb")
    assert event_steps(str(tmp_path), "Train/EnvSteps") == list(range(1, stopped_at + 1))
    assert os.path.isfile(tmp_path / "checkpoints" / f"ckpt-{stopped_at}.index")


def test_kill_9_at_a_random_iteration_then_resume_loses_and_repeats_nothing(tmp_path):
    """kill -9 right after a random number of reported iterations (an event, not a sleep, so
    the kill lands mid-run on any machine): the resumed run reports the rest, and TensorBoard
    gets every iteration exactly once."""
    iterations = 8
    reported = random.Random(os.getpid()).randint(1, iterations // 2)
    proc = launch(tmp_path, iterations)
    wait_for_iterations(proc, reported)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.kill()
    proc.wait()
    out, err = launch(tmp_path, iterations).communicate(timeout=300)
    assert "resuming" in out, err
    lines = out.strip().splitlines()
    done = int(lines[0].split("after iteration ")[1].split()[0])
    assert reported <= done < iterations  # nothing reported was lost
    assert [int(line.split()[1].split("/")[0]) for line in lines if line.startswith("it ")] == \
        list(range(done + 1, iterations + 1))
    for tag in ("Train/EnvSteps", "Policy/MeanKL", "Time/Iteration"):
        assert event_steps(str(tmp_path), tag) == list(range(1, iterations + 1)), tag


def read_until(fd, needle, timeout=300):
    """Read a pseudo-terminal until `needle` appears -> everything read (waits on output, not
    on the clock: the timeout only bounds a hang)."""
    seen, deadline = b"", time.monotonic() + timeout
    while needle.encode() not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no {needle!r} within {timeout}s: {seen[-500:]!r}"
        seen += os.read(fd, 4096)
    return seen.decode(errors="replace")


def test_on_a_terminal_a_long_batch_has_a_heartbeat_and_a_second_ctrl_c_stops_at_once(tmp_path):
    """400K Hopper steps in one env are a minute of sampling here (10 s on a 6x faster
    machine): the heartbeat shows within 2 s, the first Ctrl-C is acknowledged at once, the
    second ends the process mid-batch with one line, no traceback."""
    master, slave = pty.openpty()
    proc = zygote.Popen(
        [sys.executable, "-m", "trpo_tf.launch", "--env=Hopper", "--env_backend=gymnasium",
         "--num_envs=1", "--batch_steps=400000", "--iterations=2", f"--logdir={tmp_path}"],
        stdout=slave, stderr=subprocess.PIPE, text=True)
    os.close(slave)
    try:
        read_until(master, "sampling:")  # the heartbeat, rewritten in place with \r
        proc.send_signal(signal.SIGINT)
        read_until(master, "SIGINT: stopping after this iteration (send it again to stop at once)")
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=300)[1]
    finally:
        proc.kill()
        os.close(master)
    assert proc.returncode == 130
    assert err.strip().splitlines() == [  # the first iteration was cut: there is no checkpoint
        "error: interrupted; no checkpoint was written yet (nothing to resume)"]


def test_ctrl_c_with_several_seeds_stops_the_whole_command_and_pipes_get_no_heartbeat(tmp_path):
    cmd = [sys.executable, "-m", "trpo_tf.launch", "--env=Cartpole", "--env_backend=gymnasium",
           "--batch_steps=2000", "--num_envs=2", "--iterations=30", "--seeds=2",
           f"--logdir={tmp_path}"]
    proc = zygote.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_iterations(proc, 1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "stopping after iteration" in out and "== seed 1" not in out
    assert "\r" not in out and "sampling:" not in out


@pytest.mark.parametrize("signal_name, said, code", [("SIGINT", "interrupted", 130),
                                                    ("SIGTERM", "terminated", 143)])
def test_ctrl_c_or_sigterm_during_start_up_is_one_line(tmp_path, signal_name, said, code):
    """The signal while TensorFlow loads (simulated: importing the trainer raises it in the
    main thread, whose handler runs before the import returns). SIGTERM killed the process
    without a word, its logdir holding a lock file."""
    source = ("import os, signal, sys, types\n"
              # as in a terminal's foreground job (one started with & by a shell without job
              # control ignores SIGINT, and so does Python in it)
              "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
              "class Interrupted(types.ModuleType):\n"
              "    def __getattr__(self, name):\n"
              f"        signal.raise_signal(signal.{signal_name})\n"
              "sys.modules['trpo_tf.run.train'] = Interrupted('trpo_tf.run.train')\n"
              "from absl import app\n"
              "import trpo_tf.launch as launch\n"
              f"sys.argv = ['launch', '--logdir={tmp_path}']\n"
              "app.run(launch.main, flags_parser=launch.parse_flags)\n")
    out = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == code, out.stderr
    assert out.stderr.strip().splitlines() == [f"error: {said}"]
    assert not os.path.exists(tmp_path / outputs.LOCK_FILE)  # the logdir is let go
