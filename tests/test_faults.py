"""Numerical and env faults: NaN never reaches the parameters, a crash names the env."""
import os

import gymnasium as gym
import numpy as np
import pytest

import faulty_envs
from trpo_tf import envs
from trpo_tf.config import Config
from trpo_tf.distributions import DiagGaussian
from trpo_tf.flat import get_flat
from trpo_tf.run.train import Trainer, TrainingFault
from trpo_tf.sampling import env_action_fn

faulty_envs.register()


def make(env, tmp_path, iterations=6):
    # 2 gymnasium envs x 250 steps per batch: global steps 1200.. fall in iteration 3
    return Trainer(Config(env=env, env_backend="gymnasium", iterations=iterations, batch_steps=500,
                          num_envs=2, logdir=str(tmp_path), quiet=True, max_faults=3))


def test_a_nan_batch_is_skipped_and_counted_then_training_goes_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where MuJoCo would write its log of NaN controls
    faulty_envs.NaNObservations.steps = 0
    trainer = make("NaNOnce-v0", tmp_path)
    try:
        history = trainer.run()
        theta = get_flat(trainer.policy.trainable_variables).numpy()
        norm = trainer.policy.normalizer.mean.numpy()
    finally:
        trainer.close()
    assert [m["faults"] for m in history] == [0, 0, 1, 1, 1, 1]
    assert "kl" not in history[2] and all("kl" in m for i, m in enumerate(history) if i != 2)
    assert np.all(np.isfinite(theta)) and np.all(np.isfinite(norm))
    from test_train import event_steps

    assert event_steps(str(tmp_path), "Faults/SkippedIterations") == [1, 2, 3, 4, 5, 6]
    assert not os.path.exists("MUJOCO_LOG.TXT")  # the simulator never got a NaN action


def test_non_finite_actions_reach_the_env_as_finite_values_in_the_box():
    space = gym.spaces.Box(np.array([-1.0, 0.5], np.float32), np.array([1.0, 2.0], np.float32))
    to_env = env_action_fn(space, DiagGaussian(2))
    out = to_env(np.array([[np.nan, np.inf], [-np.inf, 0.7], [3.0, -3.0]]))
    np.testing.assert_array_equal(out, [[0.0, 2.0], [-1.0, 0.7], [1.0, 0.5]])


def test_repeated_nan_batches_stop_the_run_with_the_last_good_checkpoint(tmp_path):
    faulty_envs.NaNObservations.steps = 0
    trainer = make("NaNForever-v0", tmp_path, iterations=10)
    try:
        with pytest.raises(TrainingFault, match=r"3 iterations in a row had non-finite "
                                                r"observations or rewards; stopped with the last "
                                                r"good checkpoint \(iteration 4\)"):
            trainer.run()
        assert np.all(np.isfinite(get_flat(trainer.policy.trainable_variables).numpy()))
    finally:
        trainer.close()
    # the checkpoints hold finite parameters and resume from there
    again = make("NaNForever-v0", tmp_path, iterations=6)  # resume() restores, samples nothing
    try:
        assert again.resume()[0] == 4
        assert np.all(np.isfinite(get_flat(again.policy.trainable_variables).numpy()))
    finally:
        again.close()


def test_a_crashing_env_is_reported_with_its_id_and_the_checkpoint_survives(tmp_path):
    trainer = make("RaiseAfter-v0", tmp_path)
    try:
        with pytest.raises(envs.EnvStepError,
                           match=r"RaiseAfter-v0 env 0 of 2 raised FloatingPointError: simulator diverged"):
            trainer.run()
        assert trainer.checkpointer.restore_latest()[0] == 2  # 250 steps per env per batch
    finally:
        trainer.close()
