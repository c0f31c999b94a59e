import math

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

from trpo_tf.distributions import (Bernoulli, Categorical, DiagGaussian, MultiCategorical,
                                   for_action_space)


def test_gaussian_log_prob_matches_density_by_hand():
    dist = DiagGaussian(2)
    params = tf.constant([[0.5, -1.0, math.log(2.0), 0.0]])  # mean (0.5, -1), std (2, 1)
    x = tf.constant([[1.5, 0.0]])
    # log N(1.5; 0.5, 2^2) + log N(0; -1, 1) = (-0.125 - log 2 - 0.5 log 2pi) + (-0.5 - 0.5 log 2pi)
    expected = -0.125 - math.log(2.0) - 0.5 - math.log(2.0 * math.pi)
    np.testing.assert_allclose(dist.log_prob(params, x).numpy(), [expected], rtol=1e-6)


def test_gaussian_kl_closed_form_and_monte_carlo():
    dist = DiagGaussian(1)
    p0 = tf.constant([[0.0, 0.0]])             # N(0, 1)
    p1 = tf.constant([[1.0, math.log(2.0)]])   # N(1, 4)
    # KL = log 2 + (1 + 1) / (2 * 4) - 1/2
    np.testing.assert_allclose(dist.kl(p0, p1).numpy(), [math.log(2.0) - 0.25], rtol=1e-6)
    x = np.random.default_rng(0).standard_normal((200_000, 1)).astype(np.float32)
    mc = np.mean(dist.log_prob(tf.repeat(p0, len(x), 0), x) - dist.log_prob(tf.repeat(p1, len(x), 0), x))
    assert abs(mc - (math.log(2.0) - 0.25)) < 0.01
    np.testing.assert_allclose(dist.kl(p1, p1).numpy(), [0.0], atol=1e-7)


def test_gaussian_entropy():
    dist = DiagGaussian(2)
    params = tf.constant([[0.0, 0.0, 0.0, math.log(3.0)]])
    expected = 2 * 0.5 * math.log(2 * math.pi * math.e) + math.log(3.0)
    np.testing.assert_allclose(dist.entropy(params).numpy(), [expected], rtol=1e-6)


def test_categorical_kl_log_prob_entropy_by_hand():
    dist = Categorical(2)
    l0 = tf.math.log(tf.constant([[0.5, 0.5]]))
    l1 = tf.math.log(tf.constant([[0.25, 0.75]]))
    expected_kl = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    np.testing.assert_allclose(dist.kl(l0, l1).numpy(), [expected_kl], rtol=1e-6)
    np.testing.assert_allclose(dist.log_prob(l1, tf.constant([1])).numpy(), [math.log(0.75)], rtol=1e-6)
    np.testing.assert_allclose(dist.entropy(l0).numpy(), [math.log(2.0)], rtol=1e-6)


def test_numpy_samplers_follow_their_distribution():
    rng = np.random.default_rng(1)
    g = DiagGaussian(1).sample_np(np.tile([[2.0, math.log(0.5)]], (100_000, 1)).astype(np.float32), rng)
    assert abs(g.mean() - 2.0) < 0.01 and abs(g.std() - 0.5) < 0.01
    probs = np.array([0.2, 0.3, 0.5])
    c = Categorical(3).sample_np(np.tile(np.log(probs), (100_000, 1)), rng)
    np.testing.assert_allclose(np.bincount(c, minlength=3) / len(c), probs, atol=0.01)


def test_for_action_space_dispatch_and_error():
    assert isinstance(for_action_space(gym.spaces.Box(-1, 1, (3,))), DiagGaussian)
    assert isinstance(for_action_space(gym.spaces.Discrete(4)), Categorical)
    assert isinstance(for_action_space(gym.spaces.MultiDiscrete([2, 3])), MultiCategorical)
    assert isinstance(for_action_space(gym.spaces.MultiBinary(3)), Bernoulli)
    with pytest.raises(ValueError, match="unsupported action space"):
        for_action_space(gym.spaces.Box(-1, 1, (2, 2)))


@pytest.mark.parametrize("dist", [DiagGaussian(2), Categorical(3), Bernoulli(3), MultiCategorical([2, 3])],
                         ids=["gaussian", "categorical", "bernoulli", "multicategorical"])
def test_fisher_product_is_the_kl_hessian_in_the_parameters(dist):
    """M u = (d^2/dp^2 KL(p0 || p) at p = p0) u, per state, the Hessian taken by autodiff."""
    rng = np.random.default_rng(0)
    p0 = tf.constant(rng.standard_normal((4, dist.param_dim)), tf.float32)
    u = tf.constant(rng.standard_normal((4, dist.param_dim)), tf.float32)
    p = tf.Variable(p0)
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            kl = tf.reduce_sum(dist.kl(p0, p))  # states are independent: the sum's Hessian is block diagonal
        grad = inner.gradient(kl, p)
    hessians = outer.batch_jacobian(grad, p).numpy()  # [4, P, P]
    expected = np.einsum("bij,bj->bi", hessians, u.numpy())
    np.testing.assert_allclose(dist.fisher_product(p0, u).numpy(), expected, rtol=1e-5, atol=1e-6)
