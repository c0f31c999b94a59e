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


@pytest.mark.parametrize("dist,hidden,activation", [
    (DiagGaussian(3), (16, 8), "tanh"), (Categorical(4), (16,), "tanh"), (DiagGaussian(1), (), "tanh"),
    (DiagGaussian(3), (16, 8), "relu"), (Categorical(4), (16,), "elu")])
def test_numpy_fast_path_equals_keras_model(dist, hidden, activation):
    """The sampler's NumPy copy of the policy (and CEM / CMA's population path) computes what
    the Keras model does, for each --activation."""
    keras.utils.set_random_seed(0)
    policy = build_policy((5,), dist, hidden, normalize_obs=True, init_log_std=-0.5,
                          activation=activation)
    rng = np.random.default_rng(0)
    policy.normalizer.update(rng.normal(3.0, 2.0, (500, 5)).astype(np.float32))
    for layer in policy.mlp.layers:  # move off the tiny output init
        layer.kernel.assign(rng.standard_normal(layer.kernel.shape).astype(np.float32))
    obs = rng.normal(3.0, 2.0, (64, 5)).astype(np.float32)
    expected = policy(obs).numpy()
    np.testing.assert_allclose(policy.numpy_fn()(obs), expected, rtol=1e-5, atol=1e-5)
    flat = np.concatenate([v.numpy().ravel() for v in policy.mean_variables()])
    means = policy.population_fn(flat[None])(obs, np.zeros(len(obs), int))
    np.testing.assert_allclose(means, expected[:, :dist.head_dim], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("activation", ["relu", "elu"])
def test_the_activation_is_the_one_asked_for_in_every_hidden_layer(activation):
    """On inputs whose first hidden layer sees both signs, the Keras layers apply the named
    nonlinearity (tanh would give other values) and the output layer stays linear."""
    policy = build_policy((2,), DiagGaussian(1), (3,), normalize_obs=False, activation=activation)
    value = build_value_net(policy, (2,), (3,), activation=activation)
    x = np.array([[2.0, -1.0], [-3.0, 0.5]], np.float32)
    for net in (policy.mlp, value.mlp):
        hidden, out = net.layers
        pre = x @ hidden.kernel.numpy() + hidden.bias.numpy()
        want = np.maximum(pre, 0) if activation == "relu" else np.where(pre > 0, pre, np.expm1(pre))
        np.testing.assert_allclose(hidden(x).numpy(), want, rtol=1e-5, atol=1e-6)
        assert out.get_config()["activation"] == "linear"


@pytest.mark.parametrize("recurrent", [False, True])
def test_orthogonal_init_gives_orthogonal_kernels_of_the_baselines_gains(recurrent):
    """--orthogonal_init: each kernel W [in, out] has orthogonal rows or columns (W^T W or
    W W^T = gain^2 I, whichever is the smaller), gain sqrt(2) for hidden layers, 0.01 for the
    policy's output and 1 for the value's; biases zero. Without it, the hidden kernels are
    Glorot's (not orthogonal)."""
    keras.utils.set_random_seed(3)
    rnn = "gru" if recurrent else "none"
    policy = build_policy((5,), DiagGaussian(2), (8, 64), True, rnn=rnn, rnn_units=6,
                          orthogonal_init=True)
    value = build_value_net(policy, (5,), (64, 8), rnn=rnn, rnn_units=6, orthogonal_init=True)

    def gram(w):
        return w.T @ w if w.shape[1] <= w.shape[0] else w @ w.T

    for net, out_gain in ((policy.mlp, 0.01), (value.mlp, 1.0)):
        gains = [np.sqrt(2.0)] * (len(net.layers) - 1) + [out_gain]
        for layer, gain in zip(net.layers, gains):
            w = layer.kernel.numpy()
            np.testing.assert_allclose(gram(w), gain ** 2 * np.eye(min(w.shape)), atol=1e-5 * gain ** 2 + 1e-6)
            assert not layer.bias.numpy().any()
    glorot = build_policy((5,), DiagGaussian(2), (64, 64), True).mlp.layers[1].kernel.numpy()
    assert np.abs(gram(glorot) - 2.0 * np.eye(64)).max() > 0.5


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
