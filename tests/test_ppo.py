"""PPO (methods/ppo.py): the clipped surrogate by hand, and a run whose own optimiser state is
checkpointed (a resumed run continues bit for bit) and rolled back with a skipped iteration."""
import os

import numpy as np
import tensorflow as tf

from test_train import event_steps
from trpo_tf.config import Config
from trpo_tf.methods.ppo import clipped_surrogate
from trpo_tf.flat import get_flat
from trpo_tf.run.train import Trainer


class LogProbIsParams:
    """A stand-in distribution whose log pi(a|s) is the params themselves."""

    @staticmethod
    def log_prob(params, actions):
        del actions
        return params


def test_clipped_surrogate_and_its_gradient_by_hand():
    """r = 0.5, 1, 1.5, 1.5 with A = 1, -1, 2, -2 and eps = 0.2:
    min(rA, clip(r)A) = min(0.5, 0.8) = 0.5, -1, min(3, 2.4) = 2.4, min(-3, -2.4) = -3, mean
    -0.275. d/d log pi: rA / 4 where the unclipped term is the min, 0 where the clipped one is
    (sample 2: the incentive to raise r past 1 + eps is gone)."""
    ratio = np.array([0.5, 1.0, 1.5, 1.5])
    adv = tf.constant([1.0, -1.0, 2.0, -2.0], tf.float64)
    log_p = tf.Variable(np.log(ratio))
    with tf.GradientTape() as tape:
        value = clipped_surrogate(LogProbIsParams, log_p, None, tf.zeros(4, tf.float64), adv, 0.2)
    assert abs(float(value) - (-0.275)) < 1e-12
    np.testing.assert_allclose(tape.gradient(value, log_p).numpy(), [0.125, -0.25, 0.0, -0.75],
                               rtol=0, atol=1e-12)


def ppo_config(tmp_path, **kw):
    settings = dict(algo="ppo", env="Cartpole", iterations=2, batch_steps=512, num_envs=4,
                    eval_every=0, ppo_epochs=2, ppo_minibatch=128, logdir=str(tmp_path),
                    quiet=True)
    return Config(**{**settings, **kw})


def trained(cfg):
    """(policy parameters, PPO's Adam variables) after cfg's run."""
    trainer = Trainer(cfg)
    try:
        history = trainer.run()
        return (history, get_flat(trainer.policy.trainable_variables).numpy(),
                [v.numpy() for v in trainer.method.learner.optimizer.variables])
    finally:
        trainer.close()


def test_ppo_trains_logs_exports_and_resumes_with_its_own_optimizer_state(tmp_path):
    """Two iterations straight, against one then a resume for the second: the same parameters
    and Adam moments bit for bit (a resume with a fresh Adam or minibatch order would differ)."""
    history, theta, adam = trained(ppo_config(tmp_path / "straight"))
    assert len(history) == 2 and all(0 <= m["clip_fraction"] <= 1 for m in history)
    assert all(m["kl"] > 0 and m["surrogate_after"] > m["surrogate_before"] for m in history)
    for tag in ("PPO/ClipFraction", "Policy/MeanKL", "Value/ExplainedVariance"):
        assert event_steps(str(tmp_path / "straight"), tag) == [1, 2], tag
    assert os.path.isfile(tmp_path / "straight" / "policy" / "saved_model.pb")
    trained(ppo_config(tmp_path / "split", iterations=1))
    _, theta_resumed, adam_resumed = trained(ppo_config(tmp_path / "split"))
    np.testing.assert_array_equal(theta_resumed, theta)
    for v, w in zip(adam_resumed, adam):
        np.testing.assert_array_equal(v, w)
    # --ppo_lr is a flag, not state: a resume takes the command line's (the checkpoint's
    # Adam holds the rate it was saved with)
    history, _, adam_changed = trained(ppo_config(tmp_path / "split", iterations=3, ppo_lr=0.05))
    assert len(history) == 1 and adam_changed[1] == np.float32(0.05)


def test_a_skipped_ppo_iteration_rolls_back_its_optimizer(tmp_path):
    """A step that poisons Adam's moments and reports a fault: the loop restores them with
    the policy (Method.trackables), and the next iteration trains on finite state."""
    trainer = Trainer(ppo_config(tmp_path, iterations=3))
    learner = trainer.method.learner
    real_step, calls = learner.step, []

    def poisoned_step(*inputs):
        calls.append(1)
        if len(calls) != 2:
            return real_step(*inputs)
        variables = learner.variables
        learner.optimizer.apply_gradients(
            [(tf.fill(v.shape, float("nan")), v) for v in variables])
        return {"fault": tf.constant(1.0)}

    try:
        learner.step = poisoned_step
        history = trainer.run()
        adam = [v.numpy() for v in learner.optimizer.variables]
        theta = get_flat(learner.variables).numpy()
    finally:
        trainer.close()
    assert [m["faults"] for m in history] == [0, 1, 1] and "kl" in history[2]
    assert all(np.all(np.isfinite(v)) for v in adam) and np.all(np.isfinite(theta))


def test_ppo_measures_its_step_from_the_policy_that_sampled_before_the_normaliser_moved():
    """With zero advantages PPO's Adam does not move the weights, so the whole change from the
    sampling policy pi(theta, N_k) is the normaliser's (N_k -> N_k+1 on a shifted batch): the
    KL it reports is that change, not 0 (as it would be if pi_old were read after the update)."""
    from trpo_tf.distributions import DiagGaussian
    from trpo_tf.methods.base import update_normalizer
    from trpo_tf.methods.ppo import PPOLearner
    from trpo_tf.policies import build_policy

    dist = DiagGaussian(2)
    policy = build_policy((3,), dist, (8,), normalize_obs=True)
    obs = tf.constant(np.random.default_rng(0).normal(3.0, 2.0, (256, 3)), tf.float32)
    specs = [tf.TensorSpec((None, 3), tf.float32), tf.TensorSpec((None, 2), tf.float32),
             tf.TensorSpec((None,), tf.float32), tf.TensorSpec((None, 4), tf.float32)]
    learner = PPOLearner(policy, dist, specs, 0.2, 2, 64, 1e-3, seed=0)
    (behaviour,) = update_normalizer(policy, obs)
    moved = policy(obs)
    assert float(tf.reduce_mean(dist.kl(behaviour, moved))) > 1e-4  # the normaliser's change
    theta = get_flat(policy.trainable_variables).numpy()
    m = learner.step(obs, dist.mode(behaviour), tf.zeros(256), behaviour)
    np.testing.assert_array_equal(get_flat(policy.trainable_variables).numpy(), theta)
    expected = float(tf.reduce_mean(dist.kl(behaviour, moved)))
    assert abs(float(m["kl"]) - expected) <= 1e-6 * max(1.0, expected)
