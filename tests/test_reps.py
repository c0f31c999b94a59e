"""REPS's dual (methods/reps.py) on the observations real tasks have, and its discounted
constraint with the initial-state term, against hand-computed values."""
import numpy as np
import pytest

from trpo_tf.methods import reps
from tests.test_sampling import make_sampler, zero_policy

GAMMA = 0.99


def structured_paths(kind, rng, n=2000, path=200, terminals=False):
    """A batch of paths of `n` transitions whose observations obey a fixed equation:
    circle [cos, sin, thetadot] (Pendulum-like), one-hot codes, or a constant column."""
    if kind == "circle":
        angle = np.cumsum(rng.normal(0, 0.3, n + 1))
        o = np.stack([np.cos(angle), np.sin(angle), rng.normal(0, 1, n + 1)], 1)
    elif kind == "one-hot":
        o = np.eye(5)[rng.integers(0, 5, n + 1)]
    else:
        o = np.concatenate([rng.normal(size=(n + 1, 2)), np.full((n + 1, 1), 3.0)], 1)
    obs, following = o[:-1], o[1:]
    path_end, start, terminal = np.zeros(n), np.zeros(n), np.zeros(n)
    path_end[path - 1::path], start[::path] = 1.0, 1.0
    if terminals:
        terminal[path // 2::path] = 1.0
        path_end[terminal > 0] = 1.0
        start[path // 2 + 1::path] = 1.0
    rewards = o[:-1] @ np.linspace(-1.0, 1.0, o.shape[1]) + rng.normal(0, 0.1, n)
    return obs, following[path_end > 0], terminal, path_end, start, rewards


def solved(obs, end_obs, terminal, path_end, start, rewards, epsilon=0.5, extra=None):
    """(x, w over the transitions and z, the constraint's rows, log p); `extra`: a column
    appended to the rows."""
    initial = reps.InitialStates(obs.shape[1])
    initial.add(obs[start > 0])
    dphi = reps.feature_differences(obs, end_obs, terminal, path_end, GAMMA, initial)
    if extra is not None:
        dphi = np.concatenate([dphi, extra[:, None]], 1)
    log_p = reps.sampling_log_weights(terminal, GAMMA)
    rewards = np.append(rewards / np.sqrt(np.mean(rewards ** 2)), 0.0)
    x, _, _ = reps.solve_dual(rewards, dphi, epsilon, 100, log_p)
    return x, reps.sample_weights(x, rewards, dphi, log_p), dphi, log_p


@pytest.mark.parametrize("terminals", [False, True])
@pytest.mark.parametrize("kind", ["circle", "one-hot", "constant column"])
def test_dual_is_bounded_on_structured_observations(kind, terminals):
    """A feature combination constant in every state leaves g flat (the old dual fell along it
    without bound: eta ~ 1e53, |theta| ~ 1e55 on the circle, 1e21 / 1e23 on one-hot codes, the
    constraint missed by 0.2 - 1.6): here eta and theta stay at the data's scale, the weights
    meet the constraint and use the whole KL bound."""
    x, w, dphi, log_p = solved(*structured_paths(kind, np.random.default_rng(0),
                                                 terminals=terminals))
    assert 1e-3 < x[0] < 10.0 and np.abs(x[1:]).max() < 10.0
    np.testing.assert_allclose(w @ dphi, 0.0, atol=1e-3)
    assert reps.sample_kl(w, log_p) == pytest.approx(0.5, abs=1e-3)


def test_a_constant_feature_changes_nothing():
    """A constant feature, 1 in every state but z (there 0): with theta_z it is V + c, a null
    direction; appended, it leaves the weights as they were."""
    path = structured_paths("constant column", np.random.default_rng(1), terminals=True)
    terminal = path[2]
    _, w, _, _ = solved(*path)
    constant = np.append(GAMMA * (1.0 - terminal) - 1.0 + (1.0 - GAMMA), 1.0 - GAMMA)
    _, w2, _, _ = solved(*path, extra=constant)
    np.testing.assert_allclose(w2, w, atol=1e-6)


def test_initial_state_feature_mean_from_moments():
    rng = np.random.default_rng(2)
    starts = rng.normal(1.0, 2.0, (50, 3))
    initial = reps.InitialStates(3)
    initial.add(starts[:20])
    initial.add(starts[20:])
    mean, std = np.array([0.5, -1.0, 2.0]), np.array([1.5, 0.7, 3.0])
    np.testing.assert_allclose(initial.feature_mean(mean, std),
                               reps.quadratic_features((starts - mean) / std).mean(0), rtol=1e-10)
    saved = reps.InitialStates(3)
    saved.load_state(initial.state())
    np.testing.assert_allclose(saved.feature_mean(mean, std), initial.feature_mean(mean, std))


def test_dual_with_the_initial_state_term_by_hand():
    """Three transitions of a 1-d observation in one episode started at s_0 = 0 and cut by the
    batch (no terminal): the dual is the Bellman errors' log-mean-exp plus the initial-state
    term (1 - gamma) theta^T E_mu0[phi], written out by hand; after a terminal the term is
    (1 - gamma + gamma) phibar_0 for that sample."""
    obs, end_obs = np.array([[0.0], [1.0], [2.0]]), np.array([[4.0]])
    path_end, start = np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])
    mean, std = 1.0, np.std([0.0, 1.0, 2.0]) + 1e-6
    phi = lambda v: np.array([(v - mean) / std, ((v - mean) / std) ** 2])
    initial = reps.InitialStates(1)
    initial.add(obs[start > 0])
    rewards, theta, eta, epsilon = np.array([1.0, -0.5, 0.25]), np.array([0.3, -0.2]), 0.7, 0.4
    bellman = [rewards[0] + theta @ (GAMMA * phi(1.0) - phi(0.0)),
               rewards[1] + theta @ (GAMMA * phi(2.0) - phi(1.0)),
               rewards[2] + theta @ (GAMMA * phi(4.0) - phi(2.0))]
    expected = (eta * epsilon + eta * np.log(np.mean(np.exp(np.array(bellman) / eta)))
                + (1 - GAMMA) * theta @ phi(0.0) + 0.5 * reps.RIDGE * theta @ theta)
    x = np.concatenate([[eta], theta, [5.0]])  # theta_z = V(z): no terminal, no part in g
    dphi = reps.feature_differences(obs, end_obs, np.zeros(3), path_end, GAMMA, initial)
    log_p = reps.sampling_log_weights(np.zeros(3), GAMMA)
    value = reps.dual(x, np.append(rewards, 0.0), dphi, epsilon, log_p)[0]
    assert value - 12.5 * reps.RIDGE == pytest.approx(expected, rel=1e-12)
    # the last step ends the episode in z: gamma V(z) for gamma phi(s'), and z's own row
    terminal = np.array([0.0, 0.0, 1.0])
    dphi = reps.feature_differences(obs, end_obs, terminal, path_end, GAMMA, initial)
    np.testing.assert_allclose(dphi[2], np.append(-phi(2.0) + (1 - GAMMA) * phi(0.0), GAMMA),
                               rtol=1e-12)
    np.testing.assert_allclose(dphi[3], np.append((1 - GAMMA) * phi(0.0), GAMMA - 1),
                               rtol=1e-12)


def test_the_absorbing_state_holds_the_sampled_occupancy_after_terminals():
    """(1 - gamma) m_z = gamma (1 - m_z) P(terminal): a quarter of the steps terminal at
    gamma 0.9 -> m_z = 0.225 / 0.325, the rest shared by the transitions; none: m_z = 0."""
    log_p = reps.sampling_log_weights(np.array([0.0, 1.0, 0.0, 0.0]), 0.9)
    np.testing.assert_allclose(np.exp(log_p), [0.1 / 0.325 / 4] * 4 + [0.225 / 0.325])
    np.testing.assert_allclose(np.exp(reps.sampling_log_weights(np.zeros(4), 0.9)),
                               [0.25] * 4 + [0.0])


def test_weights_meet_the_discounted_constraint_with_its_initial_state_term():
    """No terminals: E_w[gamma phi' - phi] = -(1 - gamma) E_mu0[phi(s_0)] (the issue's form),
    with starts far from the batch's typical state so the term is large."""
    rng = np.random.default_rng(3)
    obs, end_obs, terminal, path_end, start, rewards = structured_paths("circle", rng)
    obs[start > 0, 2] += 3.0
    x, w, _, _ = solved(obs, end_obs, terminal, path_end, start, rewards)
    assert w[-1] == 0.0  # no terminal: z has no mass
    w = w[:-1]
    mean, std = obs.mean(0), obs.std(0) + 1e-6
    phi = reps.quadratic_features((obs - mean) / std)
    nxt = np.concatenate([phi[1:], reps.quadratic_features((end_obs[-1:] - mean) / std)])
    nxt[path_end > 0] = reps.quadratic_features((end_obs - mean) / std)
    phi0 = phi[start > 0].mean(0)
    assert np.abs((1 - GAMMA) * phi0).max() > 0.05  # the term matters here
    np.testing.assert_allclose(w @ (GAMMA * nxt - phi), -(1 - GAMMA) * phi0, atol=1e-3)


def test_sampler_marks_episode_starts():
    """path_start: the first row of the first batch and each row after an episode's end,
    never the row after a batch cut (that episode goes on)."""
    sampler, dist = make_sampler("Swimmer", num_envs=2, steps=15, max_path_length=10)
    first = sampler.sample(zero_policy(dist))
    second = sampler.sample(zero_policy(dist))
    np.testing.assert_array_equal(np.flatnonzero(first["path_start"]), [0, 10, 15, 25])
    np.testing.assert_array_equal(np.flatnonzero(second["path_start"]), [5, 20])
