"""Invalid-action masks: the masked categorical's maths by hand, its Fisher-vector products
against the explicit Hessian of the masked KL, sampling that never picks an illegal action,
masks through the sampler, the update, the export and evaluation, the one-line errors, and a
maze where masking learns faster than no masking."""
import math

import numpy as np
import pytest
import tensorflow as tf

import mask_envs
from commands import launch_here
from test_spaces import cli
from test_update import explicit_kl_hessian, perturb, small_policy
from trpo_tf.config import Config
from trpo_tf.distributions import Categorical, MultiCategorical, masked_logits
from trpo_tf.envs import GymnasiumEnvs, resolve_env
from trpo_tf.methods import update as U
from trpo_tf.run.export import MASKED_SIGNATURE, export_policy, load_signatures
from trpo_tf.run.train import train
from trpo_tf.sampling.single_path import SinglePathSampler

LOGITS0 = [[1.0, 2.0, 0.5, -1.0]]
LOGITS1 = [[0.0, -1.0, 2.0, 1.5]]
MASK = [[True, False, True, True]]  # action 1 is illegal


def legal_probs(logits, mask):
    """softmax over the legal actions alone, 0 elsewhere (NumPy, by hand)."""
    e = np.exp(np.asarray(logits)) * np.asarray(mask)
    return e / e.sum(-1, keepdims=True)


def test_masked_categorical_log_prob_kl_and_entropy_by_hand():
    dist, mask = Categorical(4), tf.constant(MASK)
    l0, l1 = masked_logits(tf.constant(LOGITS0), mask), masked_logits(tf.constant(LOGITS1), mask)
    p0, p1 = legal_probs(LOGITS0, MASK)[0], legal_probs(LOGITS1, MASK)[0]
    legal = [0, 2, 3]
    kl = sum(p0[a] * math.log(p0[a] / p1[a]) for a in legal)
    entropy = -sum(p0[a] * math.log(p0[a]) for a in legal)
    assert float(dist.log_prob(l0, tf.constant([2]))[0]) == pytest.approx(math.log(p0[2]), rel=1e-6)
    assert float(dist.kl(l0, l1)[0]) == pytest.approx(kl, rel=1e-5)
    assert float(dist.entropy(l0)[0]) == pytest.approx(entropy, rel=1e-6)
    np.testing.assert_allclose(tf.nn.softmax(l0).numpy()[0], p0, rtol=1e-6, atol=0)
    assert float(tf.nn.softmax(l0)[0, 1]) == 0.0
    # the mask matters here: the unmasked values are far from the masked ones
    unmasked0, unmasked1 = tf.constant(LOGITS0), tf.constant(LOGITS1)
    assert abs(float(dist.kl(unmasked0, unmasked1)[0]) - kl) > 0.1
    assert abs(float(dist.entropy(unmasked0)[0]) - entropy) > 0.1
    assert abs(float(dist.log_prob(unmasked0, tf.constant([2]))[0]) - math.log(p0[2])) > 0.1
    # the argmax (logit 2.0) is illegal: the mode is the best legal action
    assert int(dist.mode(l0)[0]) == 0 and int(dist.mode_np(l0.numpy())[0]) == 0


def test_masked_multi_categorical_is_the_sum_of_its_masked_heads():
    dist = MultiCategorical([2, 3])
    logits0, logits1 = [[0.3, -0.2, 1.0, 2.0, 0.0]], [[1.0, 0.5, -1.0, 0.5, 2.0]]
    mask = [[True, True, True, False, True]]  # head 1's action 1 is illegal
    l0 = masked_logits(tf.constant(logits0), tf.constant(mask))
    l1 = masked_logits(tf.constant(logits1), tf.constant(mask))
    heads0 = [legal_probs(np.array(logits0)[:, s], np.array(mask)[:, s])[0] for s in (slice(0, 2), slice(2, 5))]
    heads1 = [legal_probs(np.array(logits1)[:, s], np.array(mask)[:, s])[0] for s in (slice(0, 2), slice(2, 5))]
    kl = sum(p * math.log(p / q) for h0, h1 in zip(heads0, heads1) for p, q in zip(h0, h1) if p > 0)
    entropy = -sum(p * math.log(p) for h in heads0 for p in h if p > 0)
    log_prob = math.log(heads1[0][1]) + math.log(heads1[1][2])
    assert float(dist.log_prob(l1, tf.constant([[1, 2]]))[0]) == pytest.approx(log_prob, rel=1e-6)
    assert float(dist.kl(l0, l1)[0]) == pytest.approx(kl, rel=1e-5)
    assert float(dist.entropy(l0)[0]) == pytest.approx(entropy, rel=1e-6)
    assert abs(float(dist.kl(tf.constant(logits0), tf.constant(logits1))[0]) - kl) > 0.1
    np.testing.assert_array_equal(dist.mode(l0).numpy(), [[0, 0]])  # not head 1's argmax 1


@pytest.mark.parametrize("dist", [Categorical(4), MultiCategorical([2, 3])], ids=["categorical", "multicategorical"])
def test_masked_log_prob_kl_entropy_and_their_gradients_are_finite(dist):
    rng = np.random.default_rng(0)
    logits = tf.Variable(rng.standard_normal((64, dist.param_dim)).astype(np.float32))
    mask = rng.random((64, dist.param_dim)) < 0.5
    for head in np.split(np.arange(dist.param_dim), np.cumsum(getattr(dist, "nvec", [4]))[:-1]):
        mask[np.arange(64), rng.choice(head, 64)] = True  # every head keeps a legal action
    old = masked_logits(tf.constant(rng.standard_normal((64, dist.param_dim)), tf.float32), mask)
    actions = dist.sample(old)
    with tf.GradientTape(persistent=True) as tape:
        params = masked_logits(logits, mask)
        values = [dist.log_prob(params, actions), dist.kl(old, params), dist.kl(params, old),
                  dist.entropy(params)]
        sums = [tf.reduce_sum(value) for value in values]
    for value, total in zip(values, sums):
        assert np.isfinite(value.numpy()).all()
        grad = tape.gradient(total, logits).numpy()
        assert np.isfinite(grad).all() and (grad[~mask] == 0.0).all()


@pytest.mark.parametrize("dist", [Categorical(4), MultiCategorical([2, 3])], ids=["categorical", "multicategorical"])
def test_fisher_vector_products_of_the_masked_policy_equal_the_hessian_of_its_masked_kl(dist):
    """The learner's products (damped_fvp_fn, no damping, every state), J^T M J and double
    backprop, with masks, against the explicit Hessian of the masked mean KL (J^T M J needs
    only M masked: M's rows and columns of illegal actions are 0); the unmasked products are
    not that Hessian (the test sees a mask that is ignored)."""
    policy = small_policy(dist)
    perturb(policy, 0.5, seed=1)
    variables = policy.trainable_variables
    rng = np.random.default_rng(2)
    obs = tf.constant(rng.standard_normal((16, 3)), tf.float32)
    mask = np.ones((16, dist.param_dim), bool)
    mask[::2, 1] = mask[1::3, -1] = False  # a different mask per state
    mask = tf.constant(mask)
    params_fn = lambda: masked_logits(policy(obs), mask)
    old = tf.stop_gradient(params_fn())
    hessian = explicit_kl_hessian(lambda: U.mean_kl(dist, old, params_fn()), variables)
    specs = [tf.TensorSpec((None, 3), tf.float32), tf.TensorSpec((None,) + dist.act_shape, tf.int32),
             tf.TensorSpec((None,), tf.float32), tf.TensorSpec((None, dist.param_dim), tf.bool)]
    learners = [U.TRPOLearner(policy, dist, U.single_path_gain(dist), specs, max_kl=0.01,
                              cg_iters=10, cg_damping=0.0, fvp_subsample=1.0, ls_shrink=0.8,
                              ls_max_backtracks=10, fisher=fisher, action_masks=True)
                for fisher in ("analytic", "kl_hessian")]
    for seed in (3, 4):
        v = tf.constant(np.random.default_rng(seed).standard_normal(hessian.shape[0]), tf.float32)
        expected = hessian @ v.numpy()
        atol = 1e-5 * np.abs(expected).max()
        for learner in learners:
            masked_fvp = learner.damped_fvp_fn(obs, old, None, mask)
            np.testing.assert_allclose(masked_fvp(v).numpy(), expected, rtol=1e-4, atol=atol)
            unmasked = learner.damped_fvp_fn(obs, policy(obs), None, None)(v).numpy()
            assert np.abs(unmasked - expected).max() > 100 * atol


@pytest.mark.parametrize("dist", [Categorical(5), MultiCategorical([2, 3])], ids=["categorical", "multicategorical"])
def test_a_sampled_masked_action_is_never_illegal_in_100k_draws(dist):
    """NumPy (the sampler's Gumbel-max) and TensorFlow (the export's) draws, random logits
    and masks per row; the legal actions are drawn in their renormalised proportions."""
    n, rng = 100_000, np.random.default_rng(0)
    logits = (3.0 * rng.standard_normal((n, dist.param_dim))).astype(np.float32)
    heads = np.split(np.arange(dist.param_dim), np.cumsum(getattr(dist, "nvec", [5]))[:-1])
    mask = rng.random((n, dist.param_dim)) < 0.4
    for head in heads:
        mask[np.arange(n), rng.choice(head, n)] = True
    masked = masked_logits(logits, mask)
    for draws in (dist.sample_np(masked, rng), dist.sample(tf.constant(masked)).numpy()):
        draws = draws.reshape(n, -1)
        for h, head in enumerate(heads):
            assert mask[np.arange(n), head[draws[:, h]]].all()
    fixed = np.tile(masked[:1], (n, 1))
    counts = np.bincount(dist.sample_np(fixed, rng).reshape(n, -1)[:, 0], minlength=len(heads[0]))
    expected = legal_probs(logits[:1, heads[0]], mask[:1, heads[0]])[0]
    np.testing.assert_allclose(counts / n, expected, atol=0.01)


@pytest.mark.parametrize("env", ["MaskedGrid-v0", "MaskedMatch-v0"])
def test_the_sampler_stores_each_steps_mask_and_acts_within_it(env):
    """info["action_mask"] (the maze) and an action_masks() method returning per-head masks
    (MultiDiscrete): the batch's masks are the envs' and every action is legal under them."""
    envs = GymnasiumEnvs(resolve_env(env), 4, seed=0, action_masks=True)
    assert envs.mask_source == ("info" if env == "MaskedGrid-v0" else "method")
    dist = Categorical(4) if env == "MaskedGrid-v0" else MultiCategorical([3, 4])
    sampler = SinglePathSampler(envs, dist, 200, seed=0)
    batch = sampler.sample(lambda obs: np.zeros((len(obs), dist.param_dim), np.float32))
    mask, act = batch["action_mask"], batch["act"].reshape(len(batch["act"]), -1)
    assert mask.shape == (800, dist.param_dim) and mask.dtype == bool and not mask.all()
    offsets = np.cumsum([0] + list(getattr(dist, "nvec", [4]))[:-1])
    assert mask[np.arange(800)[:, None], act + offsets].all()
    if env == "MaskedGrid-v0":  # no episode ended on an illegal move (-1)
        assert (batch["rew"] > -1.0).all()
    envs.close()


def test_masking_learns_the_maze_faster_than_no_masking(tmp_path):
    """The maze, 8 iterations of 1,024 steps, seed 0: with masks the training return is near
    the best (0.84) while without them the policy still loses most episodes to illegal moves
    (README, "Action masks": 3 seeds, 10 iterations)."""
    returns = {}
    for masks in ("auto", "off"):
        history = train(Config(env="MaskedGrid-v0", action_masks=masks, iterations=8,
                               batch_steps=1024, num_envs=4, eval_every=0, quiet=True,
                               logdir=str(tmp_path / masks)))
        returns[masks] = history[-1]["return_mean"]
    assert returns["auto"] > 0.6 and returns["off"] < -0.5, returns


def test_the_export_takes_the_mask_and_never_picks_an_illegal_action(tmp_path):
    """The masked signature's mode equals the masked policy's, under random masks; its
    default signature is the unmasked policy."""
    dist = MultiCategorical([3, 4])
    policy = small_policy(dist, obs_dim=4)
    perturb(policy, 1.0, seed=0)
    path = export_policy(policy, dist, tf.TensorSpec((None, 4), tf.float32), "MaskedMatch-v0",
                         str(tmp_path / "policy"))
    signatures = load_signatures(path)[0]
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((500, 4)).astype(np.float32)
    mask = rng.random((500, 7)) < 0.5
    mask[np.arange(500), rng.integers(0, 3, 500)] = mask[np.arange(500), rng.integers(3, 7, 500)] = True
    out = signatures[MASKED_SIGNATURE](obs=tf.constant(obs), action_mask=tf.constant(mask))
    mode = out["deterministic_action"].numpy()
    np.testing.assert_array_equal(mode, dist.mode_np(masked_logits(policy(obs).numpy(), mask)))
    for draws in (mode, out["action"].numpy()):
        assert mask[np.arange(500)[:, None], draws + [0, 3]].all()
    unmasked = signatures["serving_default"](obs=tf.constant(obs))["deterministic_action"].numpy()
    assert (unmasked != mode).any()
    no_legal = mask.copy()
    no_legal[7, 3:] = False  # row 7's second part: nothing legal
    for bad, says in ((no_legal, "a row with no legal action"), (mask[:-1], "one row per obs")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=says):
            signatures[MASKED_SIGNATURE](obs=tf.constant(obs), action_mask=tf.constant(bad))


def test_a_masked_run_trains_exports_and_plays_under_the_envs_masks(tmp_path, capsys):
    """MultiDiscrete masks from an action_masks() method, through launch and play: the
    evaluation and play never take an illegal entry (each costs 1)."""
    out = launch_here(capsys, "--env=mask_envs:MaskedMatch-v0", "--iterations=2", "--batch_steps=400",
              "--num_envs=2", "--eval_every=1", f"--logdir={tmp_path}")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert "policy, 5127 parameters, action masks, 2 gymnasium envs" in out.stdout  # header
    off = launch_here(capsys, "--env=mask_envs:MaskedMatch-v0", "--iterations=3",
                      "--batch_steps=400", "--num_envs=2", "--action_masks=off",
                      f"--logdir={tmp_path}")
    assert off.returncode == 2 and ("holds a run trained with the env's action masks "
                                    "(--action_masks=auto), these settings give no action masks "
                                    "(--action_masks=off, or an env without them)") in off.stderr
    played = cli("play", f"--policy={tmp_path / 'policy'}", "--episodes=3")
    assert played.returncode == 0, played.stderr
    for line in played.stdout.strip().splitlines():
        assert float(line.split("(min ")[1].split(",")[0]) >= 0.0, line


def test_a_mask_with_no_legal_action_is_one_line_naming_the_env_and_step(tmp_path, capsys):
    out = launch_here(capsys, "--env=mask_envs:NoLegalAction-v0", "--iterations=1", "--batch_steps=40",
              "--num_envs=2", f"--logdir={tmp_path}")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert ("mask_envs:NoLegalAction-v0 env 0 of 2 gave an action mask with no legal action at "
            "step 3 of its episode") in lines[0]


@pytest.mark.parametrize("algo", ["cem", "rwr"])
def test_a_method_that_cannot_use_masks_refuses_a_masked_env_in_one_line(tmp_path, algo):
    out = cli("launch", "--env=mask_envs:MaskedGrid-v0", f"--algo={algo}", f"--logdir={tmp_path}")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert (f"--algo={algo} --sampler=single_path cannot use action masks" if algo == "rwr"
            else f"--algo={algo}") in lines[0]
    assert "--action_masks=off" in lines[0] and "--algo=trpo|" in lines[0]


def test_a_multidiscrete_mask_with_a_part_that_has_no_legal_action_is_one_error():
    """Each part of a MultiDiscrete action needs a legal value: [1 1 | 0 0 0] would leave the
    second part's softmax uniform over illegal values (the whole mask is not all False)."""
    import types

    import gymnasium as gym

    from trpo_tf import envs

    env = types.SimpleNamespace(action_space=gym.spaces.MultiDiscrete([2, 3]))
    ok = envs.action_mask(env, {"action_mask": ([1, 0], [0, 0, 1])}, "info", "toy env", 4)
    np.testing.assert_array_equal(ok, [True, False, False, False, True])
    with pytest.raises(envs.EnvStepError, match=r"^toy env gave an action mask with no legal "
                       r"action for one of its action's parts at step 4 of its episode$"):
        envs.action_mask(env, {"action_mask": ([1, 1], [0, 0, 0])}, "info", "toy env", 4)
