"""Recurrent policies (--policy_rnn): the Fisher-vector products of the recurrent mean KL
against the double-backprop reference and finite differences of its gradient; the parameters
the update recomputes along a batch's sequences against those the sampler computed step by
step (across episode ends and batch boundaries); the export run step by step in plain
TensorFlow; an exact resume; the refusals; and a partially observed CartPole where the
recurrent policy learns and the feed-forward one cannot."""
import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import pomdp_envs  # noqa: F401  (registers CartPoleNoVelocity-v1)
from test_spaces import cli
from test_update import finite_difference_hessian_product, perturb
from trpo_tf.config import Config, check_recurrent_policy, validate
from trpo_tf.distributions import (Bernoulli, Categorical, DiagGaussian, MultiCategorical,
                                   masked_logits)
from trpo_tf.envs import make_env_group, resolve_env
from trpo_tf.errors import ConfigError, EnvError
from trpo_tf.graph import traced
from trpo_tf.methods import update as U
from trpo_tf.pipeline import policy_input_spec
from trpo_tf.policies import Sequences, build_policy
from trpo_tf.run.distributed import ShareSampler, merge_batches
from trpo_tf.run.export import export_policy
from trpo_tf.run.train import train
from trpo_tf.sampling.single_path import SinglePathSampler

ROWS = [6, 5, 7]       # three sequences of a batch (one per env)
STARTS = [3, 9, 14]    # rows where an episode starts inside a sequence (the state is reset)


def tiny_rnn_policy(dist, cell, obs_dim=3, units=4, seed=0):
    keras.utils.set_random_seed(seed)
    policy = build_policy((obs_dim,), dist, (), normalize_obs=False, init_log_std=-0.3, rnn=cell,
                          rnn_units=units)
    perturb(policy, 0.5, seed=seed + 1)  # off the tiny output init, so the memory matters
    return policy


def random_sequences(state_size, seed, obs_dim=3):
    rng = np.random.default_rng(seed)
    starts = np.zeros(sum(ROWS), np.float32)
    starts[STARTS] = 1.0
    return Sequences(tf.constant(rng.standard_normal((sum(ROWS), obs_dim)), tf.float32),
                     tf.constant(starts), tf.constant(rng.standard_normal((len(ROWS), state_size)),
                                                      tf.float32),
                     tf.constant(ROWS, tf.int32))


def learner(policy, dist, fisher="analytic", fvp_subsample=1.0):
    specs = [policy_input_spec(tf.TensorSpec((None, 3), tf.float32), policy.state_size),
             tf.TensorSpec((None,) + dist.act_shape, tf.as_dtype(dist.act_dtype)),
             tf.TensorSpec((None,), tf.float32)]
    return U.TRPOLearner(policy, dist, U.single_path_gain(dist), specs, max_kl=0.01, cg_iters=10,
                         cg_damping=0.0, fvp_subsample=fvp_subsample, ls_shrink=0.8,
                         ls_max_backtracks=10, fisher=fisher)


FAMILIES = [(DiagGaussian(2), "gru"), (Categorical(3), "lstm"), (Bernoulli(2), "gru"),
            (MultiCategorical([2, 3]), "lstm")]


@pytest.mark.parametrize("dist, cell", FAMILIES, ids=["gaussian-gru", "categorical-lstm",
                                                      "bernoulli-gru", "multicategorical-lstm"])
def test_recurrent_fisher_vector_products_equal_double_backprop_and_finite_differences(dist, cell):
    """The learner's product J^T M J v (J v by the tangent carried along the unroll) equals
    the double-backprop Hessian of the mean KL over the whole sequences, states recomputed
    from their starts and reset at the episode starts inside them; that reference equals
    central finite differences of the KL's gradient. With --fvp_subsample=0.5 the product is
    that of every other sequence, whole."""
    policy = tiny_rnn_policy(dist, cell)
    variables = policy.trainable_variables
    inputs = random_sequences(policy.state_size, seed=2)
    old = tf.stop_gradient(policy(inputs))
    kl_fn = lambda: U.mean_kl(dist, old, policy(inputs))
    v = tf.constant(np.random.default_rng(3).standard_normal(U.get_flat(variables).shape[0]),
                    tf.float32)
    reference = U.kl_hessian_vector_product(kl_fn, variables, v).numpy()
    scale = np.abs(reference).max()
    for fisher in ("analytic", "kl_hessian"):
        product = learner(policy, dist, fisher).damped_fvp_fn(inputs, old, None, None)(v).numpy()
        np.testing.assert_allclose(product, reference, rtol=1e-4, atol=1e-5 * scale)

    fd = finite_difference_hessian_product(kl_fn, variables, v.numpy())
    np.testing.assert_allclose(reference, fd, rtol=2e-2, atol=2e-3 * scale)

    # every other sequence (0 and 2), whole: the Hessian of their own mean KL
    halves = Sequences(tf.concat([inputs.obs[:6], inputs.obs[11:]], 0),
                       tf.concat([inputs.starts[:6], inputs.starts[11:]], 0),
                       inputs.states[::2], inputs.rows[::2])
    old_halves = tf.stop_gradient(policy(halves))
    expected = U.kl_hessian_vector_product(lambda: U.mean_kl(dist, old_halves, policy(halves)),
                                           variables, v).numpy()
    product = learner(policy, dist, fvp_subsample=0.5).damped_fvp_fn(inputs, old, None, None)(v)
    np.testing.assert_allclose(product.numpy(), expected, rtol=1e-4,
                               atol=1e-5 * np.abs(expected).max())


def explicit_jacobian(outputs_fn, variables):
    """d outputs_fn() / d variables as an [N * K, P] matrix (rows of outputs, flattened)."""
    with tf.GradientTape(persistent=True) as tape:
        outputs = outputs_fn()
    jac = tape.jacobian(outputs, variables, experimental_use_pfor=False)
    rows = int(np.prod(outputs.shape))
    return np.concatenate([tf.reshape(j, [rows, -1]).numpy() for j in jac], 1)


@pytest.mark.parametrize("dist, cell", FAMILIES[:2], ids=["gaussian-gru", "categorical-lstm"])
def test_the_recurrent_tangent_pass_and_empirical_fvp_equal_the_explicit_jacobians(dist, cell):
    """params_and_jvp's J v (the tangent carried along the unroll, reset at episode starts),
    eager and traced with the batch's sizes unknown (as the learner traces it), equals the
    explicit Jacobian of the parameters times v; the learner's empirical FVP with it equals
    the mean outer product of the explicit per-row scores, under action masks for the
    categorical policy."""
    policy = tiny_rnn_policy(dist, cell)
    variables = policy.trainable_variables
    inputs = random_sequences(policy.state_size, seed=4)
    rng = np.random.default_rng(5)
    v = rng.standard_normal(U.get_flat(variables).shape[0]).astype(np.float32)
    params, j_v = policy.params_and_jvp(inputs, U.unflatten(tf.constant(v), variables))
    np.testing.assert_allclose(params.numpy(), policy(inputs).numpy(), rtol=1e-6, atol=1e-6)
    expected = (explicit_jacobian(lambda: policy(inputs), variables) @ v).reshape(params.shape)
    np.testing.assert_allclose(j_v.numpy(), expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    in_graph = traced(lambda seqs, v: policy.params_and_jvp(seqs, U.unflatten(v, variables)),
                      input_signature=[policy_input_spec(tf.TensorSpec((None, 3), tf.float32),
                                                         policy.state_size),
                                       tf.TensorSpec(v.shape, tf.float32)])
    np.testing.assert_allclose(in_graph(inputs, v)[1].numpy(), j_v.numpy(), rtol=1e-5,
                               atol=1e-6 * np.abs(expected).max())

    mask = None
    if dist.discrete:  # one illegal action per row
        mask = np.ones(params.shape, bool)
        mask[np.arange(len(mask)), rng.integers(0, params.shape[1], len(mask))] = False
    legal = masked_logits(params.numpy(), mask)
    actions = dist.sample_np(legal, np.random.default_rng(6))
    scores = explicit_jacobian(
        lambda: dist.log_prob(masked_logits(policy(inputs), mask), actions), variables)
    expected = scores.T @ (scores @ v) / len(scores)
    product = learner(policy, dist, "empirical").damped_fvp_fn(inputs, legal, actions, mask)(v)
    np.testing.assert_allclose(product.numpy(), expected, rtol=1e-4,
                               atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("backend", ["gymnasium", "envpool"])
def test_recomputed_parameters_equal_the_samplers_step_by_step_across_episodes_and_batches(backend):
    """CartPole-v1 with a recurrent policy, three batches of 40 steps from 3 envs (episodes of
    a random policy end every ~20 steps, so most sequences hold episode ends, and every batch
    but the first begins mid-episode): the update's unroll of each batch's sequences from the
    stored start states gives the parameters the sampler computed step by step (EnvPool: its
    reset rows dropped)."""
    dist = Categorical(2)
    policy = tiny_rnn_policy(dist, "gru", obs_dim=4, units=8)
    policy.normalizer.update(np.random.default_rng(0).normal(0.0, 0.5, (50, 4)).astype(np.float32))
    envs = make_env_group(resolve_env("CartPole-v1"), backend, 3, seed=0)
    sampler = SinglePathSampler(envs, dist, 40, seed=0, state_size=policy.state_size)
    step, recorded = policy.numpy_fn(), []

    def recording_step(obs, state):
        params, state = step(obs, state)
        recorded.append((params, ~sampler._resetting))  # the row is dropped if the env only resets
        return params, state

    for i in range(3):
        recorded.clear()
        batch = sampler.sample(recording_step)
        params, valid = (np.stack(x) for x in zip(*recorded))  # [T, E, P], [T, E]
        expected = np.swapaxes(params, 0, 1)[np.swapaxes(valid, 0, 1)]  # env-major, valid rows
        first_rows = np.cumsum(batch["env_rows"]) - batch["env_rows"]
        assert batch["path_start"].sum() > len(first_rows)  # episodes start inside sequences
        assert (batch["path_start"][first_rows] == 0).any() == (i > 0)  # some go on from a batch
        inputs = Sequences(*(tf.constant(batch[k]) for k in ("obs", "path_start", "rnn_state",
                                                               "env_rows")))
        np.testing.assert_allclose(policy(inputs).numpy(), expected, rtol=0, atol=1e-5)
    envs.close()


PLAIN_TF = """
import json, sys
import numpy as np
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
serve, initial = model.signatures["serving_default"], model.signatures["initial_state"]
state = initial(batch_size=tf.constant(1))["state"]
actions, forgetful = [], []
for obs in np.load(sys.argv[2]):
    out = serve(obs=tf.constant(obs[None]), state=state)
    state = out["state"]
    actions.append(int(out["deterministic_action"][0]))
    blank = serve(obs=tf.constant(obs[None]), state=initial(batch_size=tf.constant(1))["state"])
    forgetful.append(int(blank["deterministic_action"][0]))
try:  # a state batch that is not the observations'
    serve(obs=tf.constant(np.load(sys.argv[2])[:2]), state=state)
    refused = ""
except tf.errors.InvalidArgumentError as err:
    refused = err.message
print(json.dumps({"actions": actions, "forgetful": forgetful, "refused": refused,
                  "trpo_tf": any(m.startswith("trpo_tf") for m in sys.modules)}))
"""


def test_the_export_run_step_by_step_in_plain_tensorflow_reproduces_a_recorded_episode(tmp_path):
    """An episode of CartPole-v1 played by the policy's NumPy step (as the sampler and the
    evaluation act): the SavedModel, loaded in a process that never imports trpo_tf, fed its
    observations one at a time from its initial_state, takes the same actions; fed a fresh
    state at every step instead, it does not (the memory is in the export)."""
    import gymnasium as gym

    dist = Categorical(2)
    policy = tiny_rnn_policy(dist, "lstm", obs_dim=4, units=8, seed=3)
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    step, state = policy.numpy_fn(), np.zeros((1, policy.state_size), np.float32)
    observations, actions, done = [], [], False
    while not done:
        observations.append(obs.astype(np.float32))
        params, state = step(obs[None], state)
        actions.append(int(dist.mode_np(params)[0]))
        obs, _, term, trunc, _ = env.step(actions[-1])
        done = term or trunc
    assert len(actions) > 20
    path = export_policy(policy, dist, tf.TensorSpec((None, 4), tf.float32), "CartPole-v1",
                         str(tmp_path / "policy"))
    np.save(tmp_path / "obs.npy", np.stack(observations))
    out = subprocess.run([sys.executable, "-c", PLAIN_TF, path, str(tmp_path / "obs.npy")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    played = json.loads(out.stdout.strip().splitlines()[-1])
    assert not played["trpo_tf"]
    assert played["actions"] == actions
    assert played["forgetful"] != actions
    assert "state: one row per observation" in played["refused"]


def test_ray_workers_shares_merge_into_one_batch_of_sequences():
    """Two workers' shares (ShareSampler, here in one process as the Ray tests' reference):
    the merged batch holds each worker's envs' sequences and start states in worker order, and
    the update's unroll of it is the shares' unrolls side by side."""
    cfg = validate(Config(env="CartPole-v1", env_backend="gymnasium", num_envs=2, batch_steps=160,
                          policy_rnn="gru", policy_rnn_units=8, workers=2))
    shares = [ShareSampler(cfg, w, 2) for w in range(2)]
    weights = shares[0].policy.get_weights()
    batches = [share.sample(weights, {}) for share in shares]
    merged = merge_batches(batches)
    assert merged["rnn_state"].shape == (4, 8) and list(merged["env_rows"]) == [40] * 4
    sequences = lambda b: Sequences(*(tf.constant(b[k]) for k in ("obs", "path_start",
                                                                   "rnn_state", "env_rows")))
    policy = shares[0].policy
    np.testing.assert_allclose(policy(sequences(merged)).numpy(),
                               np.concatenate([policy(sequences(b)).numpy() for b in batches]),
                               rtol=0, atol=1e-6)


REFUSED = [("cem", "single_path"), ("cma", "single_path"), ("rwr", "single_path"),
           ("reps", "single_path"), ("ppo", "single_path"), ("trpo", "vine")]


@pytest.mark.parametrize("algo, sampler", REFUSED)
def test_methods_without_a_recurrent_policy_refuse_it_in_one_line(algo, sampler):
    with pytest.raises(ConfigError) as err:
        validate(Config(algo=algo, sampler=sampler, policy_rnn="gru", env_backend="gymnasium"))
    message = str(err.value)
    assert "\n" not in message and message.startswith("--policy_rnn=gru: ")
    assert f"--algo={algo} --sampler={sampler}" in message
    assert "--algo=trpo|natural_gradient|empirical_fim|max_kl" in message


def test_atari_frames_refuse_a_recurrent_policy_before_tensorflow_loads(tmp_path):
    with pytest.raises(EnvError, match="--policy_rnn=lstm takes vector observations"):
        check_recurrent_policy(Config(policy_rnn="lstm"), resolve_env("Pong"))
    out = cli("launch", "--env=Pong", "--policy_rnn=gru", f"--logdir={tmp_path}")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and "--policy_rnn=gru" in lines[0], out.stderr


def test_on_cartpole_without_velocities_the_recurrent_policy_learns_and_the_mlp_cannot(tmp_path):
    """tests/pomdp_envs.py's CartPole seeing positions only, seed 0, 8 iterations of 2,048
    steps, delta 0.03: the GRU policy's deterministic evaluation is far above the feed-forward
    policy's (measured 2026-12-07, oneDNN on and off alike, evaluating after every iteration:
    the GRU's 152, 136, 451, 379, 500 at iterations 4-8, the MLP's 39-50 throughout; README,
    "Recurrent policies": 3 seeds, 25 iterations)."""
    evals = {}
    for rnn in ("gru", "none"):
        history = train(validate(Config(env="pomdp_envs:CartPoleNoVelocity-v1", policy_rnn=rnn,
                                        policy_rnn_units=32, iterations=8, batch_steps=2048,
                                        num_envs=16, max_kl=0.03, eval_every=8, quiet=True,
                                        logdir=str(tmp_path / rnn))))
        evals[rnn] = history[-1]["eval_return_mean"]
    assert evals["gru"] > 150 and evals["none"] < 100, evals
