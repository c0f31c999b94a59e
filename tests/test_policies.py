import keras
import numpy as np
import pytest

from trpo_tf import envs
from trpo_tf.distributions import Categorical, DiagGaussian, for_action_space
from trpo_tf.policies import build_policy, build_value_net


def test_cartpole_linear_policy_has_exactly_six_parameters():
    env = envs.make_env(envs.resolve_env("Cartpole"))
    dist = for_action_space(env.action_space)
    policy = build_policy(env.observation_space.shape, dist,
                          envs.SHORT_NAMES["Cartpole"].policy_hidden, normalize_obs=True)
    shapes = sorted(tuple(v.shape) for v in policy.trainable_variables)
    assert shapes == [(1,), (1,), (4, 1)]  # bias, log-std, 4 weights: the paper's 6 parameters
    assert sum(int(np.prod(s)) for s in shapes) == 6
    env.close()


@pytest.mark.parametrize("dist,hidden", [(DiagGaussian(3), (16, 8)), (Categorical(4), (16,)),
                                         (DiagGaussian(1), ())])
def test_numpy_fast_path_equals_keras_model(dist, hidden):
    keras.utils.set_random_seed(0)
    policy = build_policy((5,), dist, hidden, normalize_obs=True, init_log_std=-0.5)
    rng = np.random.default_rng(0)
    policy.normalizer.update(rng.normal(3.0, 2.0, (500, 5)).astype(np.float32))
    for layer in policy.mlp.layers:  # move off the tiny output init
        layer.kernel.assign(rng.standard_normal(layer.kernel.shape).astype(np.float32))
    obs = rng.normal(3.0, 2.0, (64, 5)).astype(np.float32)
    np.testing.assert_allclose(policy.numpy_fn()(obs), policy(obs).numpy(), rtol=1e-5, atol=1e-5)


def test_normalizer_running_moments_equal_moments_of_all_data():
    value = build_value_net(build_policy((3,), DiagGaussian(1), (), normalize_obs=True), (3,), (4,))
    norm = value.normalizer
    rng = np.random.default_rng(1)
    chunks = [rng.normal(i, 1 + i, (n, 3)).astype(np.float32) for i, n in enumerate((100, 7, 250))]
    for c in chunks:
        norm.update(c)
    data = np.concatenate(chunks)
    np.testing.assert_allclose(norm.mean.numpy(), data.mean(0), rtol=1e-5)
    np.testing.assert_allclose(norm.var.numpy(), data.var(0), rtol=1e-4)
    z = norm(data).numpy()
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-3)
