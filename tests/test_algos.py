"""Section 8.1's methods: the TRPO ablations (natural gradient, empirical FIM, max KL),
CEM and CMA, RWR; each also runs end to end on cart-pole."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from trpo_tf import methods
from trpo_tf.config import Config
from trpo_tf.distributions import DiagGaussian
from trpo_tf.methods import update as U
from trpo_tf.methods.cem import CEM
from trpo_tf.methods.cma import CMA
from trpo_tf.methods.weighted_fit import RWRLearner
from trpo_tf.policies import build_policy
from trpo_tf.run import summaries

OBS = tf.TensorSpec((None, 2), tf.float32)
ACT = tf.TensorSpec((None, 1), tf.float32)
PER_STEP = tf.TensorSpec((None,), tf.float32)


def linear_gaussian(seed=0, log_std=-0.5):
    keras.utils.set_random_seed(seed)
    dist = DiagGaussian(1)
    policy = build_policy((2,), dist, (), normalize_obs=False, init_log_std=log_std)
    U.set_flat(policy.mean_variables(), tf.constant([0.4, -0.3, 0.1]))  # kernel [2, 1], bias
    return policy, dist


def learner(policy, dist, **kw):
    return U.TRPOLearner(policy, dist, U.single_path_gain(dist), [OBS, ACT, PER_STEP],
                         max_kl=0.01, cg_iters=20, cg_damping=1e-3, fvp_subsample=1.0,
                         ls_shrink=0.8, ls_max_backtracks=10, **kw)


def test_empirical_fim_equals_the_analytic_fim_in_expectation():
    """E_a[g g^T] = Hessian of the KL at theta_old (section 6). With 40k actions drawn from
    the policy, F_emp v matches A v within sampling error for several v."""
    policy, dist = linear_gaussian()
    variables = policy.trainable_variables
    rng = np.random.default_rng(0)
    obs = tf.constant(rng.standard_normal((40_000, 2)), tf.float32)
    old = tf.stop_gradient(policy(obs))
    actions = tf.constant(dist.sample_np(old.numpy(), rng))
    for seed in range(3):
        v = tf.constant(np.random.default_rng(seed).standard_normal(4), tf.float32)
        analytic = U.fisher_vector_product(dist, lambda: policy(obs), old, variables, v)
        empirical = U.empirical_fisher_vector_product(
            lambda: dist.log_prob(policy(obs), actions), variables, v)
        np.testing.assert_allclose(empirical.numpy(), analytic.numpy(), rtol=0.06,
                                   atol=0.06 * float(tf.norm(analytic)))


def test_empirical_fvp_equals_the_explicit_mean_outer_product_of_scores():
    policy, dist = linear_gaussian()
    variables = policy.trainable_variables
    rng = np.random.default_rng(1)
    obs = tf.constant(rng.standard_normal((7, 2)), tf.float32)
    actions = tf.constant(rng.standard_normal((7, 1)), tf.float32)
    with tf.GradientTape() as tape:
        log_p = dist.log_prob(policy(obs), actions)
    jac = tape.jacobian(log_p, variables)
    scores = tf.concat([tf.reshape(j, [7, -1]) for j in jac], 1).numpy()  # [N, P]
    v = rng.standard_normal(4).astype(np.float32)
    expected = scores.T @ (scores @ v) / 7
    got = U.empirical_fisher_vector_product(lambda: dist.log_prob(policy(obs), actions),
                                            variables, tf.constant(v))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-6)


def heterogeneous_batch(n=400, seed=0):
    """States of very different scales, so per-state KLs of one step differ a lot."""
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n, 2)) * np.where(rng.uniform(size=(n, 1)) < 0.05, 8.0, 0.5)
    act = rng.standard_normal((n, 1))
    adv = obs[:, 0] * act[:, 0] + 0.1 * rng.standard_normal(n)
    return [tf.constant(x, tf.float32) for x in (obs, act, adv)]


def test_max_kl_step_respects_the_per_state_bound():
    obs, act, adv = heterogeneous_batch()
    policy, dist = linear_gaussian()
    mean_step = learner(policy, dist).step(obs, act, adv)
    assert float(mean_step["kl_max"]) > 0.01  # the mean constraint lets some states move more
    policy, dist = linear_gaussian()
    before = policy(obs)
    m = learner(policy, dist, constraint="max").step(obs, act, adv)
    per_state = dist.kl(before, policy(obs)).numpy()
    assert float(m["step_accepted"]) == 1.0
    assert per_state.max() <= 0.01 * (1 + 1e-4)
    assert per_state.max() == pytest.approx(float(m["kl_max"]), rel=1e-4)
    assert float(m["surrogate_after"]) > float(m["surrogate_before"])


def test_natural_gradient_takes_the_fixed_step_along_a_direct_solve():
    """theta_new - theta_old = npg_step * (A + damping I)^-1 g, with A built explicitly."""
    policy, dist = linear_gaussian()
    obs, act, adv = heterogeneous_batch(n=60)
    variables = policy.trainable_variables
    theta0 = U.get_flat(variables).numpy()
    old = tf.stop_gradient(policy(obs))
    with tf.GradientTape() as tape:
        gain = U.single_path_gain(dist)(policy(obs), old, act, adv)
    g = U.flat_concat(tape.gradient(gain, variables)).numpy()
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            kl = U.mean_kl(dist, old, policy(obs))
        grad_kl = U.flat_concat(inner.gradient(kl, variables))
    a = tf.concat([tf.reshape(j, [4, -1]) for j in outer.jacobian(grad_kl, variables)], 1).numpy()
    expected = 0.05 * np.linalg.solve(a + 1e-3 * np.eye(4), g)
    m = learner(policy, dist, fixed_step=0.05).step(obs, act, adv)
    np.testing.assert_allclose(U.get_flat(variables).numpy() - theta0, expected, rtol=1e-3, atol=1e-6)
    assert "linesearch_steps" not in m and "step_accepted" not in m  # no line search


def quadratic_returns(candidates, optimum):
    return -np.sum((candidates - optimum) ** 2, axis=1)


@pytest.mark.parametrize("make", [
    lambda x0: CEM(x0, init_std=1.0, elite_frac=0.2, extra_noise=0.01, noise_decay=0.9, seed=0),
    lambda x0: CMA(x0, sigma0=1.0, population=20, seed=0),
], ids=["cem", "cma"])
def test_derivative_free_search_improves_a_known_quadratic(make):
    optimum = np.array([1.5, -2.0, 0.5, 3.0])
    search = make(np.zeros(4))
    start = np.linalg.norm(search.mean - optimum)
    for _ in range(40):
        candidates = search.ask(20)
        search.tell(candidates, quadratic_returns(candidates, optimum))
    assert np.linalg.norm(search.mean - optimum) < 0.05 * start


def test_rwr_moves_the_mean_toward_the_best_action_of_a_one_step_bandit():
    """Reward -(a - 2)^2 at a single state: the weighted refit moves the mean (0) toward 2
    and, the weights favouring actions near 2, shrinks the spread."""
    keras.utils.set_random_seed(0)
    dist = DiagGaussian(1)
    policy = build_policy((1,), dist, (), normalize_obs=False, init_log_std=0.0)
    rwr = RWRLearner(policy, dist, [tf.TensorSpec((None, 1), tf.float32), ACT, PER_STEP],
                     temperature=0.5, epochs=200, learning_rate=0.05)
    rng = np.random.default_rng(0)
    obs = np.zeros((2000, 1), np.float32)
    means = []
    for _ in range(3):
        params = policy(obs).numpy()
        actions = dist.sample_np(params, rng).astype(np.float32)
        rwr.step(obs, actions, -(actions[:, 0] - 2.0) ** 2)
        means.append(float(policy(obs[:1]).numpy()[0, 0]))
    assert 0.5 < means[0] < means[1] < means[2] < 2.2
    assert float(policy.log_std.numpy()[0]) < 0.0


@pytest.mark.parametrize("algo,sampler", list(methods.REGISTRY))
def test_each_method_runs_two_iterations_on_cartpole_and_writes_its_summaries(tmp_path, algo,
                                                                             sampler):
    from test_train import event_steps
    from trpo_tf.run.train import train

    cfg = Config(algo=algo, sampler=sampler, iterations=2, batch_steps=1000, population=8,
                 vine_states=50, logdir=str(tmp_path), quiet=True)
    history = train(cfg)
    assert len(history) == 2 and all(m["env_steps"] > 0 for m in history)
    assert event_steps(str(tmp_path), "Train/EpisodeReturnMean") == [1, 2]
    # the method reports exactly the metrics it names, each a number it has, and they are
    # written under its tags; the progress line times its own stages
    method = methods.method_for(cfg)
    reported = {k: v for k, v in history[-1].items() if k not in summaries.TAGS}
    assert set(reported) == set(method.tags) and all(np.isfinite(list(reported.values())))
    for key, tag in method.tags.items():
        assert event_steps(str(tmp_path), tag) == [1, 2], tag
    assert method.stages and all(key in method.tags for _, key in method.stages)
    if algo in ("trpo", "empirical_fim"):
        assert all(m["kl"] <= cfg.max_kl for m in history)
    if algo == "max_kl":
        assert all(m["kl_max"] <= cfg.max_kl for m in history)
    if algo in ("cem", "cma"):
        assert event_steps(str(tmp_path), "Search/Spread") == [1, 2]


def test_the_entropy_bonus_adds_coef_times_the_mean_entropy_and_its_gradient():
    """A diagonal Gaussian's entropy is sum(log std) + const per state, so the bonus adds
    exactly coef to the log std's gradient and nothing to the mean's."""
    policy, dist = linear_gaussian()
    obs, act, adv = heterogeneous_batch(n=60)
    variables = policy.trainable_variables
    old = tf.stop_gradient(policy(obs))

    def gain_and_grad(gain_fn):
        with tf.GradientTape() as tape:
            gain = gain_fn(policy(obs), old, act, adv)
        return float(gain), U.flat_concat(tape.gradient(gain, variables)).numpy()

    plain, g0 = gain_and_grad(U.single_path_gain(dist))
    bonus, g1 = gain_and_grad(U.with_entropy_bonus(U.single_path_gain(dist), dist, 0.3))
    entropy = -0.5 + 0.5 * np.log(2 * np.pi * np.e)  # log std -0.5, one action dimension
    assert bonus - plain == pytest.approx(0.3 * entropy, rel=1e-5)
    expected = np.concatenate([np.full(int(np.prod(v.shape)), 0.3 if "log_std" in v.name else 0.0)
                               for v in variables])
    np.testing.assert_allclose(g1 - g0, expected, atol=1e-6)


def test_with_zero_advantages_only_the_entropy_bonus_moves_the_policy():
    """No advantage, no gradient: the step is empty without the bonus; with it the step widens
    the policy (higher entropy), within delta."""
    obs, act, _ = heterogeneous_batch(n=60)
    zero = tf.zeros([60])
    entropies = []
    for coef in (0.0, 0.1):
        policy, dist = linear_gaussian()
        gain = U.single_path_gain(dist)
        step = U.TRPOLearner(policy, dist, U.with_entropy_bonus(gain, dist, coef) if coef else gain,
                             [OBS, ACT, PER_STEP], max_kl=0.01, cg_iters=20, cg_damping=1e-3,
                             fvp_subsample=1.0, ls_shrink=0.8, ls_max_backtracks=10).step
        before = float(tf.reduce_mean(dist.entropy(policy(obs))))
        m = step(obs, act, zero)
        entropies.append(float(tf.reduce_mean(dist.entropy(policy(obs)))) - before)
        if coef:
            assert float(m["step_accepted"]) == 1.0 and 0.005 < float(m["kl"]) <= 0.01
        else:
            assert float(m["grad_norm"]) == 0.0
    assert entropies[0] == 0.0 and entropies[1] > 0.05


def test_entropy_coef_reaches_the_runs_surrogate(tmp_path):
    from trpo_tf.config import Config
    from trpo_tf.run.train import Trainer

    trainer = Trainer(Config(env="Cartpole", batch_steps=100, num_envs=2, eval_every=0,
                             entropy_coef=0.5, logdir=str(tmp_path), quiet=True))
    try:
        obs = tf.random.normal([7, 4])
        params = trainer.policy(obs)
        act = trainer.dist.sample(params)
        gain = trainer.method.learner.gain_fn(params, params, act, tf.zeros([7]))
        expected = 0.5 * tf.reduce_mean(trainer.dist.entropy(params))
        assert float(gain) == pytest.approx(float(expected), rel=1e-6) and float(gain) != 0.0
    finally:
        trainer.close()
