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
    # an unbounded dimension: infinite draws reach the env as the largest finite values
    space = gym.spaces.Box(np.array([-np.inf, 0.5], np.float32), np.array([np.inf, 2.0], np.float32))
    out = env_action_fn(space, DiagGaussian(2))(
        np.array([[np.nan, np.inf], [np.inf, np.nan], [-np.inf, 0.7]], np.float32))
    big = np.finfo(np.float32).max
    np.testing.assert_array_equal(out, np.array([[0.0, 2.0], [big, 0.5], [-big, 0.7]], np.float32))
    assert np.isfinite(out).all()


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


@pytest.mark.filterwarnings("error::RuntimeWarning")  # an Inf reward warned from NumPy
@pytest.mark.parametrize("env", ["NaNRewardOnce-v0", "InfRewardOnce-v0"])
def test_a_non_finite_reward_skips_its_iteration_only_with_reward_scaling_on(tmp_path, env):
    """The NaN (Inf) at step 30 of a 1000-step episode: its batch is skipped; the
    discounted-return carry that reward scaling reads restarts, so the next batches train (it
    used to stay NaN until the episode ended and stop the run at --max_faults)."""
    trainer = Trainer(Config(env=env, env_backend="gymnasium", iterations=4,
                             batch_steps=40, num_envs=2, logdir=str(tmp_path), quiet=True,
                             max_faults=2, eval_every=0, normalize_rewards=True))
    try:
        history = trainer.run()
    finally:
        trainer.close()
    assert [m["faults"] for m in history] == [0, 1, 1, 1]  # batch 2 (steps 21-40) held the NaN
    assert all(np.isfinite(m["kl"]) for m in history if "kl" in m) and "kl" in history[-1]
    assert np.isfinite(history[-1]["reward_scale"])


def test_an_env_without_a_time_limit_has_bounded_evaluation_and_play_episodes():
    from trpo_tf.distributions import Categorical
    from trpo_tf.run.evaluate import Evaluator

    spec = envs.resolve_env("NeverEnds-v0")
    dist = Categorical(2)
    params = lambda obs: np.zeros((len(obs), 2), np.float32)  # noqa: E731
    lengths = []
    for limit, expected in ((None, envs.EPISODE_LIMIT), (40, 40)):  # --max_path_length wins
        evaluator = Evaluator(spec, dist, 2, np.random.SeedSequence(0), limit)
        try:
            assert evaluator(params)["eval_return_mean"] == expected  # reward 1 per step
        finally:
            evaluator.close()
        env = envs.make_bounded_env(spec, limit)  # what play acts in
        env.reset(seed=0)
        steps, done = 0, False
        while not done:
            steps, done = steps + 1, any(env.step(0)[2:4])
        lengths.append(steps)
        env.close()
    assert lengths == [envs.EPISODE_LIMIT, 40]
    # an env with its own limit keeps it
    env = envs.make_bounded_env(envs.resolve_env("NaNRewardOnce-v0"))
    assert env.spec.max_episode_steps == 1000
    env.close()


@pytest.mark.parametrize("iterations", [3, 1])
def test_an_evaluation_env_that_raises_is_one_error_after_its_iteration_is_saved(tmp_path,
                                                                                iterations):
    """The run stops after the iteration whose evaluation failed, its update saved; after the
    last iteration the policy is exported before the error."""
    trainer = Trainer(Config(env="Cartpole", env_backend="gymnasium", iterations=iterations,
                             batch_steps=200, num_envs=2, logdir=str(tmp_path), quiet=True,
                             eval_every=1, eval_episodes=2, checkpoint_every=5))
    trainer.evaluator.envs = [faulty_envs.RaiseAfter(env, 3) for env in trainer.evaluator.envs]
    try:
        with pytest.raises(envs.EnvStepError, match=r"^InvertedPendulum-v5 evaluation env 0 of "
                           r"2 raised FloatingPointError: simulator diverged$"):
            trainer.run()
        assert trainer.checkpointer.restore_latest()[0] == 1  # the iteration's update is kept
        assert (tmp_path / "policy" / "saved_model.pb").exists() == (iterations == 1)
    finally:
        trainer.close()


def test_an_evaluation_env_of_a_module_is_named_as_training_names_it():
    """module:Id-v0, as --env gave it and the training envs' errors name it (the evaluation's
    dropped the module)."""
    from trpo_tf.run.evaluate import Evaluator

    evaluator = Evaluator(envs.resolve_env("faulty_envs:RaiseAfter5-v0"), DiagGaussian(1), 2,
                          np.random.SeedSequence(0))
    try:
        with pytest.raises(envs.EnvStepError, match=r"^faulty_envs:RaiseAfter5-v0 evaluation "
                                                    r"env 0 of 2 raised FloatingPointError"):
            evaluator(lambda obs: np.zeros((len(obs), 2), np.float32))
    finally:
        evaluator.close()


def test_a_second_signal_says_truly_what_the_checkpoints_hold(tmp_path):
    trainer = Trainer(Config(env="Cartpole", env_backend="gymnasium", iterations=3,
                             batch_steps=200, num_envs=2, logdir=str(tmp_path), quiet=True,
                             eval_every=1, eval_episodes=1, checkpoint_every=1))
    calls = []

    def evaluate(params_fn):  # the second signal arrives in the second evaluation
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return {"eval_return_mean": 1.0}

    trainer.evaluator = evaluate
    try:
        with pytest.raises(KeyboardInterrupt) as caught:
            trainer.run()
    finally:
        trainer.evaluator = None
        trainer.close()
    assert caught.value.args == (f"the last checkpoint (iteration 1, in {tmp_path}/checkpoints) "
                                 "is intact: run the same command to resume",)


def test_observations_of_the_wrong_shape_are_one_line_at_reset_or_step():
    with pytest.raises(envs.EnvError, match=r"^--env='BadShapeAtReset-v0': BadShapeAtReset-v0 "
                       r"returned an observation of shape \(3,\); its observation_space is Box"):
        envs.check_spaces(envs.resolve_env("BadShapeAtReset-v0"))
    group = envs.GymnasiumEnvs(envs.resolve_env("BadShapeAtStep-v0"), 2, 0)
    group.reset()
    with pytest.raises(envs.EnvStepError, match=r"^BadShapeAtStep-v0 env 0 of 2 returned an "
                       r"observation of shape \(3,\); its observation_space is Box"):
        for _ in range(60):
            group.step(np.zeros(2, np.int64))
    group.close()


@pytest.mark.parametrize("env, said", [
    ("StringsAtStep-v0", "returned an observation of dtype <U1; its observation_space is "
                         "Box(-inf, inf, (2,), float64)"),
    ("ArrayRewardAtStep-v0", "returned a reward of shape (2,) and dtype float64: it must be a number"),
    ("FourValuesAtStep-v0", "returned 4 values: gymnasium's API is reset() -> (obs, info), step() "
                            "-> (obs, reward, terminated, truncated, info)"),
    ("TwoValuesAtStep-v0", "returned 2 values: gymnasium's API is reset() -> (obs, info), step() "
                           "-> (obs, reward, terminated, truncated, info)"),
    ("NoneAtStep-v0", "returned NoneType: gymnasium's API is reset() -> (obs, info), step() "
                      "-> (obs, reward, terminated, truncated, info)"),
])
def test_what_an_env_returns_wrong_is_named_where_it_is_stepped(env, said):
    """Not '... raised ValueError' (trpo_tf's unpacking raised), nor a traceback (strings):
    one line saying what the env returned, in the sampler's group, its per-step path
    (evaluation, vine) and on a wrapper's unpacking (TimeLimit: the old API's hint)."""
    group = envs.GymnasiumEnvs(envs.resolve_env(env), 2, 0)
    group.reset()
    try:
        with pytest.raises(envs.EnvStepError) as caught:
            for _ in range(60):
                group.step(np.zeros(2, np.int64))
    finally:
        group.close()
    assert str(caught.value) == f"{env} env 0 of 2 {said}"
    single = envs.make_env(envs.resolve_env(env))
    single.reset(seed=0)
    with pytest.raises(envs.EnvStepError) as caught:
        for _ in range(60):
            envs.checked(lambda: single.step(0), single, "one", 5)
    assert str(caught.value) == f"one {said}"
    if env == "FourValuesAtStep-v0":
        timed = gym.wrappers.TimeLimit(single, 1000)
        timed.reset(seed=0)
        with pytest.raises(envs.EnvStepError, match=r"^one raised ValueError: not enough values "
                           r"to unpack \(expected 5, got 4\) \(a step\(\) of the old gym API"):
            for _ in range(60):
                envs.checked(lambda: timed.step(0), timed, "one", 5)
    single.close()


def test_an_object_array_of_numbers_is_an_observation_as_before():
    """NumPy reads floats in an object array as numbers: such an env trained before the
    output checks and still does (sampler group, per-step path)."""
    group = envs.GymnasiumEnvs(envs.resolve_env("ObjectArrayObs-v0"), 2, 0)
    group.reset()
    try:
        for _ in range(60):
            obs = group.step(np.zeros(2, np.int64))[0]
    finally:
        group.close()
    assert obs.dtype == np.float64 and obs.shape == (2, 2)  # the space's dtype
    single = envs.make_env(envs.resolve_env("ObjectArrayObs-v0"))
    single.reset(seed=0)
    assert envs.checked(lambda: single.step(0), single, "one", 5)[1] == 1.0
    single.close()


def test_a_crashing_env_in_vine_sampling_is_one_line_naming_it():
    from trpo_tf.sampling.vine import VineSampler

    group = envs.GymnasiumEnvs(envs.resolve_env("RaiseAfter5-v0"), 2, 0)
    dist = DiagGaussian(1)
    sampler = VineSampler(group, dist, trunk_paths=2, trunk_length=30, num_states=3,
                          actions_per_state=2, rollout_length=5, gamma=0.99, proposal="policy",
                          crn=True, seed=0, kl_states=0)
    try:
        with pytest.raises(envs.EnvStepError, match=r"^RaiseAfter5-v0 env 0 of 2 raised "
                                                    r"FloatingPointError: simulator diverged$"):
            sampler.sample(lambda obs: np.zeros((len(obs), 2), np.float32))
    finally:
        group.close()
