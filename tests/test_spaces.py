"""The spaces users bring: MultiDiscrete / MultiBinary actions, Discrete, Dict / Tuple and
2-D observations flattened; anything else refused in one line."""
import math
import os
import sys

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

import zygote
import space_envs
from commands import launch_here
from trpo_tf.config import Config
from trpo_tf.distributions import Bernoulli, Categorical, MultiCategorical
from trpo_tf.run.train import train
from trpo_tf.sampling import env_action_fn

TESTS = os.path.dirname(os.path.abspath(__file__))


def test_multi_categorical_is_the_sum_of_its_heads():
    dist = MultiCategorical([2, 3])
    p0 = tf.math.log(tf.constant([[0.5, 0.5, 0.2, 0.3, 0.5]]))
    p1 = tf.math.log(tf.constant([[0.25, 0.75, 1 / 3, 1 / 3, 1 / 3]]))
    a = tf.constant([[1, 2]])
    assert float(dist.log_prob(p1, a)[0]) == pytest.approx(math.log(0.75) + math.log(1 / 3), rel=1e-6)
    kl = (0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
          + sum(p * math.log(p * 3) for p in (0.2, 0.3, 0.5)))
    assert float(dist.kl(p0, p1)[0]) == pytest.approx(kl, rel=1e-5)
    ent = math.log(2) - sum(p * math.log(p) for p in (0.2, 0.3, 0.5))
    assert float(dist.entropy(p0)[0]) == pytest.approx(ent, rel=1e-6)
    np.testing.assert_array_equal(dist.mode(p1).numpy(), [[1, 0]])
    np.testing.assert_array_equal(dist.mode_np(p1.numpy()), [[1, 0]])
    draws = dist.sample_np(np.repeat(p0.numpy(), 20000, 0), np.random.default_rng(0))
    np.testing.assert_allclose(np.bincount(draws[:, 1]) / 20000, [0.2, 0.3, 0.5], atol=0.015)


def test_bernoulli_log_prob_kl_entropy_and_sampling_by_hand():
    dist = Bernoulli(2)
    p, q = 1 / (1 + math.exp(-1.0)), 1 / (1 + math.exp(2.0))  # sigmoid(1), sigmoid(-2)
    l0, l1 = tf.constant([[0.0, 0.0]]), tf.constant([[1.0, -2.0]])
    assert float(dist.log_prob(l1, tf.constant([[1, 0]]))[0]) == pytest.approx(
        math.log(p) + math.log(1 - q), rel=1e-6)
    kl = (0.5 * math.log(0.5 / p) + 0.5 * math.log(0.5 / (1 - p))
          + 0.5 * math.log(0.5 / q) + 0.5 * math.log(0.5 / (1 - q)))
    assert float(dist.kl(l0, l1)[0]) == pytest.approx(kl, rel=1e-5)
    assert float(dist.entropy(l0)[0]) == pytest.approx(2 * math.log(2), rel=1e-6)
    draws = dist.sample_np(np.repeat(l1.numpy(), 20000, 0), np.random.default_rng(0))
    np.testing.assert_allclose(draws.mean(0), [p, q], atol=0.015)
    np.testing.assert_array_equal(dist.mode_np(l1.numpy()), [[1, 0]])


def test_discrete_actions_that_start_elsewhere_than_zero_are_shifted():
    space = gym.spaces.Discrete(3, start=-1)
    np.testing.assert_array_equal(env_action_fn(space, Categorical(3))(np.array([0, 2])), [-1, 1])


@pytest.mark.parametrize("env, chance, reached", [("MatchMultiDiscrete-v0", 11.7, 18.0),
                                                  ("MatchMultiBinary-v0", 40.0, 47.0)])
def test_multidiscrete_and_multibinary_policies_learn_their_match_game(tmp_path, env, chance, reached):
    """Chance earns 20 x (1/3 + 1/4) = 11.7 (MultiDiscrete [3, 4], Dict observations) or 40
    (MultiBinary(4)); 10 iterations reach 25 and 54 here (max 40, 80)."""
    cfg = Config(env=env, env_backend="gymnasium", iterations=10, batch_steps=2000,
                 logdir=str(tmp_path), quiet=True)
    history = train(cfg)
    assert history[0]["return_mean"] < chance + 3.0
    assert max(m["return_mean"] for m in history[-3:]) >= reached
    assert all(m["kl"] <= cfg.max_kl for m in history)


def cli(module, *args):
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return zygote.run([sys.executable, "-m", f"trpo_tf.{module}", *args], env=env,
                      capture_output=True, text=True, timeout=300)


def test_a_multidiscrete_policy_exports_and_plays_and_flattened_observations_train(tmp_path, capsys):
    out = launch_here(capsys, "--env=space_envs:MatchMultiDiscrete-v0", "--iterations=1",
              "--batch_steps=400", "--num_envs=2", f"--logdir={tmp_path / 'md'}")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    played = cli("play", f"--policy={tmp_path / 'md' / 'policy'}", "--episodes=1")
    assert played.returncode == 0, played.stderr
    assert "space_envs:MatchMultiDiscrete-v0 deterministic" in played.stdout
    for env in ("Box2DObs-v0", "Taxi-v4", "Blackjack-v1"):  # 2-D, Discrete, Tuple observations
        history = train(Config(env=env, env_backend="gymnasium", iterations=1, batch_steps=400,
                               num_envs=2, eval_episodes=2, logdir=str(tmp_path / env), quiet=True))
        assert history[0]["env_steps"] == 400 and history[0]["kl"] <= 0.01, env


@pytest.mark.parametrize("env, needle", [
    ("ImageObs-v0", "image observations Box(0, 255, (16, 16, 3), uint8) need a CNN"),
    ("MatrixAction-v0", "action space Box(-1.0, 1.0, (2, 2), float32) is not supported"),
    ("TextObs-v0", "observation space Text(1, 5, "),
])
def test_unsupported_spaces_are_one_line_naming_the_space(tmp_path, env, needle):
    out = cli("launch", f"--env=space_envs:{env}", f"--logdir={tmp_path}")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and needle in lines[0], out.stderr
