import keras
import numpy as np
import pytest
import tensorflow as tf

from trpo_tf.distributions import Bernoulli, Categorical, DiagGaussian, MultiCategorical
from trpo_tf.methods import update as U
from trpo_tf.policies import build_policy


def small_policy(dist, obs_dim=3, hidden=(5,), seed=0):
    keras.utils.set_random_seed(seed)
    policy = build_policy((obs_dim,), dist, hidden, normalize_obs=False, init_log_std=-0.3)
    return policy


def perturb(policy, scale, seed):
    """Move the parameters away from the near-zero output init so every term matters."""
    theta = U.get_flat(policy.trainable_variables)
    noise = np.random.default_rng(seed).standard_normal(theta.shape).astype(np.float32)
    U.set_flat(policy.trainable_variables, theta + scale * noise)


def test_get_set_flat_round_trip():
    policy = small_policy(DiagGaussian(2))
    variables = policy.trainable_variables
    theta = U.get_flat(variables).numpy()
    n = sum(int(np.prod(v.shape)) for v in variables)
    assert theta.shape == (n,)
    new = np.arange(n, dtype=np.float32)
    U.set_flat(variables, new)
    np.testing.assert_array_equal(U.get_flat(variables).numpy(), new)
    np.testing.assert_array_equal(policy.log_std.numpy(), new[:2])  # first variable is log_std


# every action family, and a linear Gaussian policy (hidden=()) beside the MLPs
POLICY_FAMILIES = [(DiagGaussian(2), ()), (DiagGaussian(2), (5,)), (Categorical(3), (5,)),
                   (Bernoulli(3), (5,)), (MultiCategorical([2, 3]), (5,))]
FAMILY_IDS = ["linear_gaussian", "mlp_gaussian", "categorical", "bernoulli", "multicategorical"]


def explicit_kl_hessian(kl_fn, variables):
    """The Hessian of kl_fn() in the flat parameters, row by row (a jacobian of the gradient)."""
    n = sum(int(np.prod(v.shape)) for v in variables)
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            kl = kl_fn()
        grad = U.flat_concat(inner.gradient(kl, variables))
    jacobians = outer.jacobian(grad, variables)  # one [n, *var.shape] per variable
    return tf.concat([tf.reshape(j, [n, -1]) for j in jacobians], axis=1).numpy()


@pytest.mark.parametrize("dist, hidden", POLICY_FAMILIES, ids=FAMILY_IDS)
def test_fisher_vector_products_equal_explicit_kl_hessian_and_finite_differences(dist, hidden):
    """Both forms of A v at theta_old: J^T M J v (forward mode, then one backprop: what the
    learner runs) and the double-backprop reference, against the explicit Hessian of the mean
    KL; the reference also against finite differences of the KL's gradient."""
    policy = small_policy(dist, hidden=hidden)
    perturb(policy, 0.5, seed=1)
    variables = policy.trainable_variables
    obs = tf.constant(np.random.default_rng(2).standard_normal((16, 3)), tf.float32)
    old = tf.stop_gradient(policy(obs))
    kl_fn = lambda: U.mean_kl(dist, old, policy(obs))
    theta0 = U.get_flat(variables)
    hessian = explicit_kl_hessian(kl_fn, variables)
    assert np.allclose(hessian, hessian.T, atol=1e-5)

    for seed in (3, 4):
        v = np.random.default_rng(seed).standard_normal(theta0.shape[0]).astype(np.float32)
        expected = hessian @ v
        scale = np.abs(expected).max()
        reference = U.kl_hessian_vector_product(kl_fn, variables, tf.constant(v)).numpy()
        analytic = U.fisher_vector_product(dist, lambda: policy(obs), old, variables,
                                           tf.constant(v)).numpy()
        np.testing.assert_allclose(reference, expected, rtol=1e-4, atol=1e-5 * scale)
        np.testing.assert_allclose(analytic, expected, rtol=1e-4, atol=1e-5 * scale)

    fd = finite_difference_hessian_product(kl_fn, variables, v)
    np.testing.assert_allclose(reference, fd, rtol=2e-2, atol=2e-3 * scale)


def finite_difference_hessian_product(fn, variables, v, eps=1e-2):
    """Central finite differences of the gradient of fn() along v: (g(theta + eps v) -
    g(theta - eps v)) / 2 eps, the variables left as they were."""
    theta0 = U.get_flat(variables)

    def grad_at(theta):
        U.set_flat(variables, theta)
        with tf.GradientTape() as tape:
            value = fn()
        return U.flat_concat(tape.gradient(value, variables)).numpy()

    fd = (grad_at(theta0 + eps * v) - grad_at(theta0 - eps * v)) / (2 * eps)
    U.set_flat(variables, theta0)
    return fd


def test_fisher_vector_product_of_the_atari_cnn_equals_double_backprop():
    dist = Categorical(4)
    keras.utils.set_random_seed(0)
    policy = build_policy((2, 16, 16), dist, (8,), normalize_obs=False)
    perturb(policy, 0.3, seed=1)
    variables = policy.trainable_variables
    rng = np.random.default_rng(2)
    obs = tf.constant(rng.integers(0, 256, (8, 2, 16, 16)), tf.uint8)
    old = tf.stop_gradient(policy(obs))
    v = tf.constant(rng.standard_normal(U.get_flat(variables).shape[0]), tf.float32)
    reference = U.kl_hessian_vector_product(lambda: U.mean_kl(dist, old, policy(obs)), variables, v)
    analytic = U.fisher_vector_product(dist, lambda: policy(obs), old, variables, v)
    scale = float(tf.reduce_max(tf.abs(reference)))
    assert scale > 0.0
    np.testing.assert_allclose(analytic.numpy(), reference.numpy(), rtol=1e-4, atol=1e-5 * scale)


def test_conjugate_gradient_matches_direct_solve():
    rng = np.random.default_rng(0)
    m = rng.standard_normal((8, 8))
    a = (m @ m.T + 0.5 * np.eye(8)).astype(np.float64)
    b = rng.standard_normal(8)
    x, residual = U.conjugate_gradient(lambda p: tf.linalg.matvec(a, p), tf.constant(b), 8)
    np.testing.assert_allclose(x.numpy(), np.linalg.solve(a, b), rtol=1e-6, atol=1e-8)
    assert float(residual) < 1e-6
    # fewer iterations: a worse but honest answer, its residual reported
    x3, r3 = U.conjugate_gradient(lambda p: tf.linalg.matvec(a, p), tf.constant(b), 3)
    np.testing.assert_allclose(float(r3), np.linalg.norm(b - a @ x3.numpy()), rtol=1e-6)


def test_max_step_length_puts_quadratic_kl_at_delta():
    a = np.diag([2.0, 8.0])
    s = np.array([1.0, 1.0])
    beta = float(U.max_step_length(tf.constant(s), tf.constant(a @ s), 0.01))
    assert 0.5 * (beta * s) @ a @ (beta * s) == pytest.approx(0.01)


def test_surrogate_gradient_at_theta_old_is_the_policy_gradient():
    dist = DiagGaussian(2)
    policy = small_policy(dist)
    perturb(policy, 0.3, seed=4)
    variables = policy.trainable_variables
    rng = np.random.default_rng(5)
    obs = tf.constant(rng.standard_normal((32, 3)), tf.float32)
    act = tf.constant(rng.standard_normal((32, 2)), tf.float32)
    adv = tf.constant(rng.standard_normal(32), tf.float32)
    old_logp = dist.log_prob(policy(obs), act)
    with tf.GradientTape() as tape:
        gain = U.surrogate_gain(dist, policy(obs), act, tf.stop_gradient(old_logp), adv)
    g_surr = U.flat_concat(tape.gradient(gain, variables)).numpy()
    with tf.GradientTape() as tape:
        pg = tf.reduce_mean(dist.log_prob(policy(obs), act) * adv)  # E[grad log pi * A]
    g_pg = U.flat_concat(tape.gradient(pg, variables)).numpy()
    np.testing.assert_allclose(g_surr, g_pg, rtol=1e-5, atol=1e-7)
    # and the policy gradient against a numerical derivative of the surrogate
    theta0 = U.get_flat(variables).numpy()
    eps, i = 1e-3, 2
    e = np.zeros_like(theta0)
    e[i] = eps

    def gain_at(theta):
        U.set_flat(variables, theta)
        return float(U.surrogate_gain(dist, policy(obs), act, old_logp, adv))

    numeric = (gain_at(theta0 + e) - gain_at(theta0 - e)) / (2 * eps)
    assert numeric == pytest.approx(g_pg[i], rel=1e-2, abs=1e-4)


def test_line_search_takes_first_improving_step_within_kl():
    # gain(theta) = theta, kl(theta) = theta^2: the full step 1.0 violates KL <= 0.3;
    # shrink 0.5 -> 0.5 (kl 0.25) is accepted after 2 tries.
    evaluate = lambda th: (th[0], th[0] ** 2, 2 * th[0] ** 2)
    theta, accepted, tried, gain, kl, kl_max = U.backtracking_line_search(
        evaluate, tf.constant([0.0]), tf.constant([1.0]), tf.constant(0.0), 0.3, 0.5, 10)
    assert bool(accepted) and int(tried) == 2
    assert float(theta[0]) == pytest.approx(0.5) and float(kl) == pytest.approx(0.25)
    assert float(kl_max) == pytest.approx(0.5)
    # bounding the max KL instead (eq. 12): 0.5 has max KL 0.5 > 0.3; 0.25 (0.125) is taken
    theta, accepted, tried, *_ = U.backtracking_line_search(
        evaluate, tf.constant([0.0]), tf.constant([1.0]), tf.constant(0.0), 0.3, 0.5, 10,
        constrain_max=True)
    assert bool(accepted) and int(tried) == 3 and float(theta[0]) == pytest.approx(0.25)


def test_line_search_rejects_when_nothing_improves_or_is_finite():
    for evaluate in (lambda th: (-th[0], th[0] ** 2, th[0] ** 2),          # only worse
                     lambda th: (th[0] * np.nan, th[0] ** 2, th[0] ** 2)):  # NaN gain
        theta, accepted, tried, gain, kl, _ = U.backtracking_line_search(
            evaluate, tf.constant([0.0]), tf.constant([1.0]), tf.constant(0.0), 0.3, 0.5, 4)
        assert not bool(accepted) and int(tried) == 4
        assert float(theta[0]) == 0.0 and float(kl) == 0.0


def make_learner(dist, policy, max_kl=0.01, kl_states=False, fisher="analytic"):
    obs_spec = tf.TensorSpec((None, 3), tf.float32)
    act_spec = (tf.TensorSpec((None,), tf.int32) if dist.discrete
                else tf.TensorSpec((None, dist.act_dim), tf.float32))
    adv_spec = tf.TensorSpec((None,), tf.float32)
    specs = [obs_spec, act_spec, adv_spec] + [obs_spec] * kl_states
    return U.TRPOLearner(policy, dist, U.single_path_gain(dist), specs,
                         max_kl=max_kl, cg_iters=10, cg_damping=0.01, fvp_subsample=0.5,
                         ls_shrink=0.8, ls_max_backtracks=10, kl_states=kl_states, fisher=fisher)


def random_batch(dist, n, seed):
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n, 3)).astype(np.float32)
    act = (rng.integers(0, dist.num_actions, n).astype(np.int32) if dist.discrete
           else rng.standard_normal((n, dist.act_dim)).astype(np.float32))
    adv = (obs[:, 0] + 0.1 * rng.standard_normal(n)).astype(np.float32)
    return obs, act, adv


@pytest.mark.parametrize("dist", [DiagGaussian(2), Categorical(3)], ids=["gaussian", "categorical"])
def test_trpo_step_respects_kl_bound_improves_surrogate_and_traces_once(dist):
    policy = small_policy(dist)
    learner = make_learner(dist, policy, max_kl=0.01)
    for i, n in enumerate((200, 333, 257)):  # new batch sizes must not retrace
        obs, act, adv = random_batch(dist, n, seed=i)
        before = policy(obs)
        m = learner.step(obs, act, adv)
        assert float(m["step_accepted"]) == 1.0
        assert float(m["surrogate_after"]) > float(m["surrogate_before"])
        kl = float(U.mean_kl(dist, before, policy(obs)))
        assert kl == pytest.approx(float(m["kl"]), rel=1e-4)
        assert 0.0 < kl <= 0.01
    assert learner.trace_count == 1


@pytest.mark.parametrize("dist", [DiagGaussian(2), Categorical(3)], ids=["gaussian", "categorical"])
def test_separate_kl_states_bound_the_step_over_those_states(dist):
    """Vine's learner: the gain on the batch, the trust region (KL and FVPs) over other states."""
    obs, act, adv = random_batch(dist, 200, seed=0)
    kl_obs = np.random.default_rng(1).normal(2.0, 1.5, (1000, 3)).astype(np.float32)
    policy = small_policy(dist)
    before_kl, before_batch = policy(kl_obs), policy(obs)
    m = make_learner(dist, policy, kl_states=True).step(obs, act, adv, kl_obs)
    assert float(m["step_accepted"]) == 1.0
    kl = float(U.mean_kl(dist, before_kl, policy(kl_obs)))
    assert kl == pytest.approx(float(m["kl"]), rel=1e-4) and 0.0 < kl <= 0.01
    # the batch's own KL is another number: the constraint really ran over kl_obs
    assert float(U.mean_kl(dist, before_batch, policy(obs))) != pytest.approx(kl, rel=0.05)


@pytest.mark.parametrize("dist", [DiagGaussian(2), Categorical(3)], ids=["gaussian", "categorical"])
def test_kl_states_equal_to_the_batch_give_the_single_path_step(dist):
    obs, act, adv = random_batch(dist, 200, seed=2)
    steps = []
    for kl_states in (False, True):
        policy = small_policy(dist)
        make_learner(dist, policy, kl_states=kl_states).step(obs, act, adv, *[obs] * kl_states)
        steps.append(U.get_flat(policy.trainable_variables).numpy())
    scale = np.abs(steps[0]).max()
    np.testing.assert_allclose(steps[1], steps[0], rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("dist", [DiagGaussian(2), Categorical(3)], ids=["gaussian", "categorical"])
def test_the_step_with_j_m_j_products_equals_the_step_with_double_backprop(dist):
    """The learner's two forms of the KL Hessian (on half the batch: fvp_subsample=0.5) take
    the same step, up to float rounding."""
    obs, act, adv = random_batch(dist, 300, seed=3)
    steps, metrics = [], []
    for fisher in ("analytic", "kl_hessian"):
        policy = small_policy(dist)
        perturb(policy, 0.3, seed=5)
        theta_old = U.get_flat(policy.trainable_variables).numpy()
        metrics.append(make_learner(dist, policy, fisher=fisher).step(obs, act, adv))
        steps.append(U.get_flat(policy.trainable_variables).numpy() - theta_old)
    assert float(metrics[0]["step_accepted"]) == 1.0 and np.abs(steps[0]).max() > 1e-3
    np.testing.assert_allclose(steps[0], steps[1], rtol=0, atol=1e-4 * np.abs(steps[1]).max())
    assert int(metrics[0]["linesearch_steps"]) == int(metrics[1]["linesearch_steps"])


def test_vine_estimators_by_hand_and_eq17_ignores_a_constant_added_to_q():
    dist = Categorical(2)
    params = tf.math.log(tf.constant([[0.25, 0.75]]))      # pi_theta
    old = tf.math.log(tf.constant([[0.5, 0.5]]))           # pi_old
    actions = tf.constant([[0, 1]])
    q = tf.constant([[1.0, 3.0]])
    # eq. 16: 0.25 * 1 + 0.75 * 3
    assert float(U.vine_gain(dist, "all")(params, old, actions, q)) == pytest.approx(2.5)
    # eq. 17, q = pi_old: w = (0.5, 1.5), (0.5 * 1 + 1.5 * 3) / 2
    is_gain = U.vine_gain(dist, "policy")
    assert float(is_gain(params, old, actions, q)) == pytest.approx(2.5)
    # uniform proposal: w proportional to pi_theta: (0.25 * 1 + 0.75 * 3) / 1
    assert float(U.vine_gain(dist, "uniform")(params, old, actions, q)) == pytest.approx(2.5)
    # a repeated action: w = (0.5, 0.5) -> the mean of its two Q-hats
    assert float(is_gain(params, old, tf.constant([[0, 0]]), q)) == pytest.approx(2.0)

    def value_and_grad(q_hat):
        p = tf.Variable(tf.constant([[0.3, -0.2]]))
        with tf.GradientTape() as tape:
            value = is_gain(p, old, actions, q_hat)
        return float(value), tape.gradient(value, p).numpy()

    v0, g0 = value_and_grad(q)
    v1, g1 = value_and_grad(q + 100.0)
    assert v1 == pytest.approx(v0 + 100.0)
    np.testing.assert_allclose(g1, g0, atol=1e-5)


def test_vine_gain_for_gaussian_branches():
    dist = DiagGaussian(1)
    params = tf.constant([[0.0, 0.0], [1.0, 0.0]])               # N(0,1), N(1,1)
    actions = tf.constant([[[0.0], [1.0]], [[1.0], [1.0]]])       # [N=2, K=2, 1]
    q = tf.constant([[2.0, 4.0], [5.0, 7.0]])
    # at theta = theta_old every weight is 1: the mean Q-hat per state, then over states
    assert float(U.vine_gain(dist, "policy")(params, params, actions, q)) == pytest.approx(4.5)
