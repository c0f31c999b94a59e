"""Runs that survive: exact resume after a clean stop, SIGTERM, and kill -9 at a random point."""
import os
import random
import signal
import subprocess
import sys

import numpy as np

from test_train import event_steps
from trpo_tf.config import Config
from trpo_tf.train import Trainer
from trpo_tf.update import get_flat


def final_params(cfg):
    trainer = Trainer(cfg)
    try:
        trainer.run()
        variables = trainer.policy.variables + trainer.value_net.variables
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
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


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
    out, err = proc.communicate(timeout=120)
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
    iterations = 12
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
