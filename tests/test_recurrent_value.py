"""The recurrent value baseline (--policy_rnn with --value_rnn=auto): its unroll with resets
against a step-by-step NumPy computation of the same cell; its end-of-segment bootstrap
values; padded steps outside the fit; the fit learning a target that depends on a past
observation where the MLP baseline cannot; the sampler's carried value states against the
unroll; Ray shares; an exact resume; and the run record's refusal of another value choice."""
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf

from trpo_tf.config import Config, validate
from trpo_tf.distributions import Categorical
from trpo_tf.envs import make_env_group, resolve_env
from trpo_tf.errors import ConfigError
from trpo_tf.flat import get_flat
from trpo_tf.pipeline import policy_input_spec
from trpo_tf.pipeline.value import (SequenceValueFitter, ValueFitter, masked_mse,
                                    padded_sequences)
from trpo_tf.policies import (Sequences, build_policy, build_value_net,
                              numpy_cell_fn, unroll_sequences)
from trpo_tf.run.distributed import ShareSampler, acting_weights, merge_batches
from trpo_tf.run.evaluate import open_policy, run_episodes
from trpo_tf.run.train import Trainer, train
from trpo_tf.sampling.single_path import SinglePathSampler, value_step_kwargs

ROWS = [5, 4]         # two envs' sequences
STARTS = [0, 3, 5]    # episode starts: env 0's first row and its row 3; env 1's first row
PATH_ENDS = [2, 4, 8]  # env 0's episode ends at its row 2, both sequences end at the cut


def value_net_of(cell, obs_dim=3, units=4, hidden=(5,), normalize_obs=True, seed=0):
    """A recurrent value net (and its policy, whose normaliser it shares), the normaliser off
    its identity so that the test sees it applied."""
    tf.keras.utils.set_random_seed(seed)
    policy = build_policy((obs_dim,), Categorical(2), (), normalize_obs, rnn=cell, rnn_units=units)
    if normalize_obs:
        rng = np.random.default_rng(seed)
        policy.normalizer.update(rng.normal(0.5, 2.0, (40, obs_dim)).astype(np.float32))
    return policy, build_value_net(policy, (obs_dim,), hidden, cell, units)


def numpy_values(value_net, states):
    """V read from cell states [B, S] in NumPy: the MLP's tanh layers and linear output."""
    x = states[:, :value_net.units]
    layers = value_net.mlp.layers
    for layer in layers[:-1]:
        x = np.tanh(x @ layer.kernel.numpy() + layer.bias.numpy())
    return (x @ layers[-1].kernel.numpy() + layers[-1].bias.numpy())[:, 0]


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_the_value_unroll_with_resets_equals_the_numpy_cell_step_by_step(cell):
    """Two envs, env 0's sequence holding an episode start at its row 3: the values of every
    row and the bootstrap values of the segment ends (the cell stepped once more, on the end
    observation, from the state after the segment's last row, not reset) equal a NumPy loop of
    the same cell from the stored start states, reset (h <- 0) before each episode's first row."""
    _, value = value_net_of(cell)
    rng = np.random.default_rng(1)
    obs = rng.standard_normal((sum(ROWS), 3)).astype(np.float32)
    end_obs = rng.standard_normal((len(PATH_ENDS), 3)).astype(np.float32)
    starts, path_end = np.zeros(sum(ROWS), np.float32), np.zeros(sum(ROWS), np.float32)
    starts[STARTS], path_end[PATH_ENDS] = 1.0, 1.0
    initial = rng.standard_normal((2, value.state_size)).astype(np.float32)
    inputs = Sequences(*(tf.constant(x) for x in (obs, starts, initial, np.int32(ROWS))))

    step = numpy_cell_fn(value)
    expected_states, end_states, row = [], [], 0
    for env, length in enumerate(ROWS):
        state = initial[env:env + 1]
        for _ in range(length):
            state = np.zeros_like(state) if starts[row] else state
            state = step(obs[row:row + 1], state)
            expected_states.append(state[0])
            if path_end[row]:
                end_states.append(step(end_obs[len(end_states)][None], state)[0])
            row += 1
    expected_states, end_states = np.stack(expected_states), np.stack(end_states)
    assert not np.allclose(expected_states[3], step(obs[3:4], expected_states[2:3])[0])  # a reset

    np.testing.assert_allclose(unroll_sequences(value, inputs).numpy(), expected_states,
                               rtol=0, atol=1e-5)
    values, end_values = value.values_and_end_values(inputs, tf.constant(end_obs),
                                                     tf.constant(path_end))
    np.testing.assert_allclose(values.numpy(), numpy_values(value, expected_states), rtol=0,
                               atol=1e-5)
    np.testing.assert_allclose(end_values.numpy(), numpy_values(value, end_states), rtol=0,
                               atol=1e-5)
    np.testing.assert_allclose(value(inputs).numpy(), values.numpy(), rtol=0, atol=0)


def fitter_and_padded(targets_seed=0):
    """A GRU value net's SequenceValueFitter, and PaddedSequences of ROWS (env 1's padded to 5)."""
    _, value = value_net_of("gru")
    spec = policy_input_spec(tf.TensorSpec((None, 3), tf.float32), value.state_size)
    fitter = SequenceValueFitter(value, spec, 1e-2, epochs=1, minibatch=16)
    rng = np.random.default_rng(targets_seed)
    starts = np.zeros(sum(ROWS), np.float32)
    starts[STARTS] = 1.0
    inputs = Sequences(tf.constant(rng.standard_normal((sum(ROWS), 3)), tf.float32),
                       tf.constant(starts), tf.zeros((2, value.state_size)), tf.constant(ROWS))
    targets = tf.constant(rng.standard_normal(sum(ROWS)), tf.float32)
    return fitter, padded_sequences(inputs, targets)


def with_padded_step_changed(seqs):
    """`seqs` with env 1's padded step (its row 4) given another target and observation."""
    pad = tf.constant([[0.0] * 5, [0.0] * 4 + [1.0]])
    return seqs._replace(targets=seqs.targets + 100.0 * pad,
                         obs=seqs.obs + 50.0 * pad[:, :, None])


def test_padded_steps_contribute_nothing_to_the_value_fit():
    """Env 1's sequence is one row shorter: its padded step's target and observation change
    neither the masked loss nor the weights after an epoch of Adam steps; a real step's do."""
    fitter, seqs = fitter_and_padded()
    assert seqs.valid.numpy().tolist() == [[1.0] * 5, [1.0] * 4 + [0.0]]
    changed = with_padded_step_changed(seqs)
    assert float(fitter.loss(changed)) == float(fitter.loss(seqs))
    real = seqs._replace(targets=seqs.targets + tf.constant([[0.0] * 4 + [1.0], [0.0] * 5]))
    assert float(fitter.loss(real)) != float(fitter.loss(seqs))
    values = fitter.value_net.padded_values(seqs.obs, seqs.starts, seqs.states)
    assert float(masked_mse(values, seqs.targets, seqs.valid)) == float(fitter.loss(seqs))

    weights_after = []
    for s in (seqs, changed):
        fitter, _ = fitter_and_padded()  # the same initial weights and Adam state
        order, weights = tf.constant([[1, 0]]), tf.ones((1, 2))
        fitter.fit_epoch(s, order, weights)
        weights_after.append([v.numpy() for v in fitter.value_net.trainable_variables])
    for a, b in zip(*weights_after):
        np.testing.assert_array_equal(a, b)


def remember_the_first_observation(envs=16, length=32, episode=8, seed=0):
    """Sequences whose target is the sign (+-1) an episode showed at its first step; the
    observation is 0 at every later step, so only a memory can predict it there."""
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], (envs, length // episode))
    targets = np.repeat(signs, episode, axis=1).reshape(-1).astype(np.float32)
    starts = np.tile(np.arange(length) % episode == 0, envs).astype(np.float32)
    obs = (targets * starts)[:, None].astype(np.float32)
    return obs, starts, targets


def test_the_fit_learns_a_target_of_a_past_observation_where_the_mlp_cannot():
    """Targets given by an episode's first observation, 0 observed afterwards: the recurrent
    fit (whole sequences from their start states) brings the loss far below the MLP
    baseline's, which can only predict the mean (~0) where it sees 0 (loss ~ 7/8)."""
    obs, starts, targets = remember_the_first_observation()
    policy, rnn_value = value_net_of("gru", obs_dim=1, units=8, hidden=(16,),
                                     normalize_obs=False)
    inputs = Sequences(tf.constant(obs), tf.constant(starts), tf.zeros((16, 8)),
                       tf.constant([32] * 16))
    rnn_fit = SequenceValueFitter(rnn_value, policy_input_spec(tf.TensorSpec((None, 1)), 8),
                                  1e-2, epochs=40, minibatch=64, seed=0)
    mlp_value = build_value_net(policy, (1,), (16,))
    mlp_fit = ValueFitter(mlp_value, tf.TensorSpec((None, 1)), 1e-2, epochs=40, minibatch=64)
    rnn, mlp = rnn_fit.fit(inputs, tf.constant(targets)), mlp_fit.fit(obs, tf.constant(targets))
    assert float(rnn["loss_after"]) < 0.5 * float(rnn["loss_before"])
    assert float(mlp["loss_after"]) > 0.7
    assert float(rnn["loss_after"]) < 0.2, (float(rnn["loss_after"]), float(mlp["loss_after"]))


def test_the_samplers_value_states_are_the_unrolls_across_batches():
    """CartPole-v1, 3 envs, three batches of 40 steps (episodes end inside them): each batch's
    stored value states are those the unroll of the batch before reaches at its last rows
    (with the weights unchanged: the sampler's NumPy cell and the unroll agree)."""
    dist = Categorical(2)
    policy, value = value_net_of("lstm", obs_dim=4, units=6)
    envs = make_env_group(resolve_env("CartPole-v1"), "gymnasium", 3, seed=0)
    sampler = SinglePathSampler(envs, dist, 40, seed=0, state_size=policy.state_size,
                                value_state_size=value.state_size)
    previous = None
    for _ in range(3):
        batch = sampler.sample(policy.numpy_fn(), **value_step_kwargs(value))
        assert batch["value_state"].shape == (3, value.state_size)
        if previous is not None:
            inputs = Sequences(*(tf.constant(previous[k]) for k in ("obs", "path_start",
                                                                    "value_state", "env_rows")))
            last_rows = np.cumsum(previous["env_rows"]) - 1
            np.testing.assert_allclose(unroll_sequences(value, inputs).numpy()[last_rows],
                                       batch["value_state"], rtol=0, atol=1e-5)
        assert batch["path_start"].sum() > 3
        previous = batch
    envs.close()


def test_ray_workers_carry_the_value_state_and_get_the_learners_value_weights():
    """Two workers' shares (ShareSampler, in one process as the Ray tests' reference) sent the
    learner's policy and value weights: each worker's value copy takes them, and the merged
    batch holds every env's value start state in worker order."""
    cfg = validate(Config(env="CartPole-v1", env_backend="gymnasium", num_envs=2, batch_steps=160,
                          policy_rnn="gru", policy_rnn_units=8, value_rnn="auto", workers=2))
    shares = [ShareSampler(cfg, w, 2) for w in range(2)]
    learner = shares[0]
    for v in learner.value_net.trainable_variables:
        v.assign(v + 0.25)
    weights = acting_weights(learner.policy, learner.value_net)
    batches = [share.sample(weights, {}) for share in shares]
    for a, b in zip(shares[1].value_net.trainable_variables, learner.value_net.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    merged = merge_batches(batches)
    assert merged["value_state"].shape == (4, 8) and merged["rnn_state"].shape == (4, 8)
    assert all(np.abs(s._value_state).sum() > 0 for s in (shares[0].sampler, shares[1].sampler))


BASE = dict(env="Cartpole", env_backend="gymnasium", batch_steps=300, num_envs=3, seed=4,
            policy_rnn="lstm", policy_rnn_units=6, value_rnn="auto", eval_every=0, quiet=True)


def test_a_recurrent_run_resumes_bit_for_bit_evaluates_exports_and_plays(tmp_path):
    """As the feed-forward resume test: 2 iterations straight equal a resume to 2 from the
    directory the straight run had after iteration 1 (copied then: its checkpoint). The
    policy's cell and the value's (weights, Adam state) are checkpointed with their nets, their
    per-env states in the sampler's checkpointed state; the evaluation stage runs every
    iteration; the export plays with its state carried (run_episodes, as `play`)."""
    base = dict(BASE, eval_every=1, eval_episodes=2)

    def keep_iteration_one(done, _):  # the directory a run stopped after iteration 1 leaves
        if done == 1:
            shutil.copytree(tmp_path / "a", tmp_path / "b")

    one_run = Trainer(Config(iterations=2, logdir=str(tmp_path / "a"), **base))
    try:
        one_run.run(on_iteration=keep_iteration_one)
        straight = get_flat(one_run.policy.variables + one_run.method.value_net.variables).numpy()
    finally:
        one_run.close()
    trainer = Trainer(Config(iterations=2, logdir=str(tmp_path / "b"), **base))
    try:
        assert trainer.method.value_net.state_size == 12  # an LSTM's h and c
        assert len(trainer.method.value_fitter.optimizer.variables) > 5
        trainer.run()
        resumed = trainer.policy.variables + trainer.method.value_net.variables
        np.testing.assert_array_equal(np.concatenate([v.numpy().ravel() for v in resumed]),
                                      straight)  # policy (its cell), value net, normaliser
    finally:
        trainer.close()
    serve, _, env = open_policy(str(tmp_path / "b" / "policy"))
    returns = run_episodes(serve, env, 2, seed=0, deterministic=True)
    assert len(returns) == 2 and (returns >= 1).all()
    env.close()
    # the run record holds value_rnn (the value cell, or none): the other choice is one line
    assert json.loads((tmp_path / "b" / "run.json").read_text())["value_rnn"] == "lstm"
    with pytest.raises(ConfigError) as err:
        Trainer(Config(iterations=3, logdir=str(tmp_path / "b"), **{**base, "value_rnn": "none"}))
    assert "\n" not in str(err.value)
    assert "holds a run trained with value_rnn=lstm, these settings give value_rnn=none" in str(
        err.value)


def test_an_old_run_record_without_value_rnn_means_the_mlp_baseline(tmp_path):
    """A record from before the key existed resumes as the MLP baseline (and so refuses the
    recurrent one)."""
    mlp = dict(BASE, value_rnn="none")
    train(Config(iterations=1, logdir=str(tmp_path / "mlp"), **mlp))
    record = json.loads((tmp_path / "mlp" / "run.json").read_text())
    assert record.pop("value_rnn") == "none"
    (tmp_path / "mlp" / "run.json").write_text(json.dumps(record))  # as written before the key
    resumed = Trainer(Config(iterations=2, logdir=str(tmp_path / "mlp"), **mlp))
    try:  # restores iteration 1 into the MLP value net (its second iteration adds nothing here)
        assert resumed.resume()[0] == 1 and not hasattr(resumed.method.value_net, "state_size")
    finally:
        resumed.close()
    with pytest.raises(ConfigError, match="value_rnn=none, these settings give value_rnn=lstm"):
        Trainer(Config(iterations=3, logdir=str(tmp_path / "mlp"), **BASE))


def test_a_bad_value_rnn_is_one_line():
    with pytest.raises(ConfigError) as err:
        validate(Config(value_rnn="gru", policy_rnn="gru", env_backend="gymnasium"))
    assert str(err.value) == "--value_rnn must be one of auto|none (got 'gru')"
