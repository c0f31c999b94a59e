"""Methods as plug-ins (methods/): the loop knows no method, every setting is declared once,
and REPS's dual, weights and end-to-end run."""
import dataclasses
import inspect
import os
import time

import numpy as np
import pytest

from trpo_tf import config, methods
from trpo_tf.config import Config
from trpo_tf.methods import reps
from trpo_tf.methods.base import SinglePathMethod, timed
from trpo_tf.run import train
from trpo_tf.settings import SETTINGS


def test_the_training_loop_names_no_method():
    """Everything method-specific is in methods/: train.py and launch.py branch on none."""
    from trpo_tf import launch

    source = inspect.getsource(train) + inspect.getsource(launch)
    for word in ("algo ==", "algo in", "sampler ==", "vine", "population", "cem", "cma", "rwr",
                 "reps", "natural_gradient", "empirical_fim", "max_kl", "DERIVATIVE_FREE"):
        assert word not in source.lower(), word


def test_every_algo_and_sampler_has_one_registered_method_with_a_module_of_its_own():
    assert set(config.ALGOS) == {"trpo", "natural_gradient", "empirical_fim", "max_kl", "cem",
                                 "cma", "rwr", "reps", "ppo"}
    modules = [m.__module__ for m in methods.METHODS]
    assert len(set(modules)) == len(modules) == len(methods.REGISTRY) == 10
    for (algo, sampler), method in methods.REGISTRY.items():
        cfg = Config(algo=algo, sampler=sampler)
        assert config.validate(cfg) is cfg and methods.method_for(cfg) is method


def test_each_setting_is_declared_once_and_is_both_a_config_field_and_a_flag():
    from trpo_tf import launch

    fields = {f.name: f.default for f in dataclasses.fields(Config)}
    assert fields == {name: s.default for name, s in SETTINGS.items()}
    flags = {name: launch.FLAGS[name] for name in SETTINGS if name not in config.NOT_FLAGS}
    for name, flag in flags.items():
        default = SETTINGS[name].default
        assert flag.default == (list(map(str, default)) if isinstance(default, tuple) else default)
        assert flag.help.endswith(SETTINGS[name].help)
    # a method's own settings are declared in its module
    assert SETTINGS["reps_epsilon"].group.endswith("reps")
    assert SETTINGS["npg_step"].group.endswith("natural_gradient")
    assert launch.FLAGS.find_module_defining_flag("rwr_lr") == "trpo_tf stage 4 method rwr"


def test_reps_dual_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    rewards, dphi = rng.normal(size=50), rng.normal(size=(50, 4))
    for x in (np.array([0.7, 0.3, -0.2, 0.5, 0.1]), np.array([3.0, -1.0, 0.0, 0.2, 0.4])):
        _, grad = reps.dual(x, rewards, dphi, 0.3)
        h = 1e-6
        numeric = [(reps.dual(x + h * e, rewards, dphi, 0.3)[0]
                    - reps.dual(x - h * e, rewards, dphi, 0.3)[0]) / (2 * h) for e in np.eye(5)]
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("epsilon", [0.05, 0.5])
def test_reps_weights_keep_the_kl_bound_and_the_feature_constraint(epsilon):
    """At the dual's optimum the reweighted samples are epsilon away (KL) from the sampled
    distribution, and their mean feature difference is zero (dg/dtheta = 0)."""
    rng = np.random.default_rng(1)
    rewards, dphi = rng.normal(size=400), rng.normal(size=(400, 3))
    x, _, _ = reps.solve_dual(rewards, dphi, epsilon, max_iters=200)
    w = reps.sample_weights(x, rewards, dphi)
    assert x[0] > 0 and w.sum() == pytest.approx(1.0)
    assert reps.sample_kl(w) <= epsilon + 1e-3
    assert reps.sample_kl(w) == pytest.approx(epsilon, abs=0.02)  # the bound is active here
    np.testing.assert_allclose(w @ dphi, 0.0, atol=1e-3)
    # the weights favour high Bellman errors: more weight on the best rewards than the worst
    order = np.argsort(rewards + dphi @ x[1:])
    assert w[order[-40:]].sum() > w[order[:40]].sum()


def test_reps_feature_differences_by_hand():
    """Two paths of a 1-d observation: the first cut by the batch (bootstrapped from end_obs),
    the second terminal (phi(s') = 0), episodes started at 0 and 2. Features of x
    standardised: [x, x^2]; the initial-state term (1 - gamma + gamma [terminal]) phibar_0."""
    obs = np.array([[0.0], [1.0], [2.0], [3.0]])
    end_obs = np.array([[5.0], [9.0]])
    path_end = np.array([0.0, 1.0, 0.0, 1.0])
    terminal = np.array([0.0, 0.0, 0.0, 1.0])
    mean, std = 1.5, np.std([0.0, 1.0, 2.0, 3.0]) + 1e-6
    phi = lambda v: np.array([(v - mean) / std, ((v - mean) / std) ** 2])
    phi0 = (phi(0.0) + phi(2.0)) / 2
    expected = [0.9 * phi(1.0) - phi(0.0) + 0.1 * phi0, 0.9 * phi(5.0) - phi(1.0) + 0.1 * phi0,
                0.9 * phi(3.0) - phi(2.0) + 0.1 * phi0, -phi(3.0) + phi0]
    initial = reps.InitialStates()
    initial.add(obs[[0, 2]])
    got = reps.feature_differences(obs, end_obs, terminal, path_end, 0.9, initial,
                                   reps.quadratic_features)
    np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_reps_trains_two_iterations_on_cartpole_logs_and_exports(tmp_path):
    from tests.test_train import event_steps

    cfg = Config(algo="reps", env="Cartpole", iterations=2, batch_steps=1000, num_envs=4,
                 eval_every=0, logdir=str(tmp_path), quiet=True)
    history = train.train(cfg)
    assert len(history) == 2
    for m in history:
        assert m["reps_eta"] > 0 and m["reps_kl"] <= cfg.reps_epsilon + 1e-3
        assert np.isfinite(m["kl"])
    for tag in ("REPS/Eta", "REPS/SampleKL", "Policy/MeanKL", "Train/EpisodeReturnMean"):
        assert event_steps(str(tmp_path), tag) == [1, 2], tag
    assert os.path.isfile(os.path.join(tmp_path, "policy", "saved_model.pb"))


def test_sampler_pickles_of_the_old_layout_still_load():
    """CEM / CMA searches were pickled (in the sampler state beside each checkpoint) from
    trpo_tf.derivative_free before the methods moved to trpo_tf/methods/."""
    import io
    import pickle

    from trpo_tf.methods.cem import CEM
    from trpo_tf.run.checkpoint import SamplerUnpickler

    search = CEM(np.zeros(3), 1.0, 0.2, 0.1, 0.9, seed=0)
    data = pickle.dumps({"optimizer": search}, protocol=0)  # protocol 0: module names as text
    old = data.replace(b"trpo_tf.methods.cem", b"trpo_tf.derivative_free")
    assert old != data
    loaded = SamplerUnpickler(io.BytesIO(old)).load()["optimizer"]
    assert isinstance(loaded, CEM)
    np.testing.assert_array_equal(loaded.ask(4), CEM(np.zeros(3), 1.0, 0.2, 0.1, 0.9, 0).ask(4))


def test_a_cem_search_resumes_even_when_the_envs_change(tmp_path):
    """CEM / CMA's sampler state is the search, not the envs: a resume with another
    --num_envs goes on with it (each candidate's episode depends only on its reset seed, drawn
    by the search), so the run matches one that was never stopped. CEM has no value baseline:
    its run records no --value_hidden, and a resume with another one is no change."""
    from trpo_tf.run import outputs

    cfg = Config(algo="cem", env="Cartpole", iterations=2, population=6, num_envs=2,
                 eval_every=0, logdir=str(tmp_path / "whole"), quiet=True)
    whole = train.train(cfg)
    split = dataclasses.replace(cfg, logdir=str(tmp_path / "split"))
    first = train.train(dataclasses.replace(split, iterations=1))
    assert "value_hidden" not in outputs.read_run_record(split.logdir)
    second = train.train(dataclasses.replace(split, num_envs=3, value_hidden=(7,)))
    for key in ("return_mean", "search_spread", "env_steps"):
        assert [m[key] for m in first + second] == [m[key] for m in whole], key


def test_run_records_from_before_workers_existed_mean_zero_workers(tmp_path):
    """A record without "workers" (written before --workers existed) means 0: resuming it
    with workers is a sampler change (the envs start new episodes), so the one in-process
    sampler state is never handed to the workers."""
    import json

    from trpo_tf.run.train import Trainer

    cfg = Config(env="Cartpole", iterations=1, batch_steps=400, num_envs=2, eval_every=0,
                 logdir=str(tmp_path), quiet=True)
    train.train(cfg)
    record = json.loads((tmp_path / "run.json").read_text())
    del record["workers"]
    (tmp_path / "run.json").write_text(json.dumps(record))
    trainer = Trainer(cfg)
    try:
        assert trainer.sampler_changes() == []
        trainer.record["workers"] = 2  # what a run with --workers=2 records
        assert trainer.sampler_changes() == ["workers 0 -> 2"]
    finally:
        trainer.close()


class Reinforce(SinglePathMethod):
    """A method as a contributor writes one, through the public interface only: REINFORCE on a
    minibatch that its own RNG draws, stepped by its own Adam, counting its updates in its
    JSON state. `poison_at`: the update (1-based) whose gradients are NaN."""
    algo = "reinforce"
    stages, _stage_tags = timed(("update", "time_update"))
    tags = {**_stage_tags, "reinforce_loss": "Reinforce/Loss"}
    poison_at = None

    def __init__(self, cfg, parts):
        super().__init__(cfg, parts)
        import keras
        import tensorflow as tf

        self.optimizer = keras.optimizers.Adam(0.01)
        self.optimizer.build(parts.policy.trainable_variables)
        self.rng = tf.random.Generator.from_seed(7)
        self.updates = 0

    def trackables(self):
        return {"reinforce_optimizer": self.optimizer, "reinforce_rng": self.rng}

    def state(self):
        return {**super().state(), "updates": self.updates}

    def load_state(self, saved):
        super().load_state(saved)
        self.updates = saved["updates"]

    def improve(self, batch, rew):
        import tensorflow as tf

        t0 = time.perf_counter()
        self.updates += 1
        pick = tf.argsort(self.rng.uniform([tf.shape(rew)[0]]))[:256]
        obs, act = tf.gather(batch["obs"], pick), tf.gather(batch["act"], pick)
        weight = tf.gather(tf.cast(batch["discounted_return"], tf.float32), pick)
        policy, variables = self.parts.policy, self.parts.policy.trainable_variables
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(self.parts.dist.log_prob(policy(obs), act)
                                   * (weight - tf.reduce_mean(weight)))
        grads = tape.gradient(loss, variables)
        if self.updates == self.poison_at:
            grads = [g * float("nan") for g in grads]
        self.optimizer.apply_gradients(zip(grads, variables))
        return {"reinforce_loss": float(loss), "time_update": time.perf_counter() - t0}, None


def method_state(trainer):
    """Everything the run's method and policy hold, as NumPy values and JSON."""
    from trpo_tf.flat import get_flat

    method = trainer.method
    return (get_flat(trainer.policy.trainable_variables).numpy(),
            [v.numpy() for v in method.optimizer.variables], method.rng.state.numpy(),
            method.state())


class Killed(Exception):
    """Stands for a kill -9 between two checkpoints: the process state is gone, the files stay."""


def run_reinforce(cfg, kill_after=None):
    """Train a Reinforce run -> (its history, method_state at its end); with `kill_after`, the
    run dies right after that iteration (its checkpoint, if any, written)."""
    def on_iteration(done, metrics):
        del metrics
        if done == kill_after:
            raise Killed

    trainer = train.Trainer(cfg)
    try:
        history = trainer.run(on_iteration=on_iteration)
        return history, method_state(trainer)
    finally:
        trainer.close()


def assert_same_state(got, expected):
    np.testing.assert_array_equal(got[0], expected[0])
    for v, w in zip(got[1], expected[1], strict=True):
        np.testing.assert_array_equal(v, w)
    np.testing.assert_array_equal(got[2], expected[2])
    assert got[3] == expected[3]


def test_a_method_registered_by_a_test_trains_resumes_bit_for_bit_and_rolls_back_a_fault(
        tmp_path, monkeypatch):
    """The contract of methods/base.py, kept by a method the package does not know: its
    trackables and state are checkpointed (killed after iteration 3 of 4, the checkpoint of
    iteration 2 resumes to the same end bit for bit) and rolled back with a skipped iteration
    (NaN gradients at its 2nd update leave policy, Adam, RNG and state as after the 1st); its
    tags are written."""
    from tests.test_train import event_steps

    monkeypatch.setitem(methods.REGISTRY, ("reinforce", "single_path"), Reinforce)
    settings = dict(algo="reinforce", env="Cartpole", iterations=4, batch_steps=512, num_envs=2,
                    checkpoint_every=2, eval_every=0, quiet=True)
    history, whole = run_reinforce(Config(logdir=str(tmp_path / "whole"), **settings))
    assert whole[3]["updates"] == 4 and np.isfinite(history[-1]["reinforce_loss"])
    assert event_steps(str(tmp_path / "whole"), "Reinforce/Loss") == [1, 2, 3, 4]

    killed = Config(logdir=str(tmp_path / "killed"), **settings)
    with pytest.raises(Killed):
        run_reinforce(killed, kill_after=3)
    assert_same_state(run_reinforce(killed)[1], whole)

    monkeypatch.setattr(Reinforce, "poison_at", 2)
    faulty = Config(logdir=str(tmp_path / "faulty"), **dict(settings, iterations=1))
    _, after_first = run_reinforce(faulty)
    history, after_skip = run_reinforce(dataclasses.replace(faulty, iterations=2))
    assert [m["faults"] for m in history] == [1] and "reinforce_loss" not in history[0]
    assert_same_state(after_skip, after_first)


def test_the_progress_line_shows_a_line_search_only_where_there_is_one_and_its_rejection():
    """RWR and the natural gradient (a fixed step) have no line search: their lines show no
    `ls` (they showed `ls 0` and `ls 1`); TRPO's marks a step whose every backtrack failed,
    and a zero gradient (it showed `ls 10 rejected`)."""
    m = {"kl": 0.0012, "linesearch_steps": 3.0, "step_accepted": 1.0}

    def line(algo, **metrics):
        method = methods.REGISTRY[(algo, "single_path")]
        return method.progress(method.__new__(method), {**m, **metrics})

    assert line("trpo") == "kl 0.0012 ls 3"
    assert line("trpo", kl=0.0, linesearch_steps=10.0, step_accepted=0.0) == "kl 0.0000 ls 10 rejected"
    # a batch without signal (vine: every Q of a state alike) is no rejected step
    assert line("trpo", kl=0.0, linesearch_steps=10.0, step_accepted=0.0,
                grad_norm=0.0) == "kl 0.0000 ls - (zero gradient)"
    vine = methods.REGISTRY[("trpo", "vine")]
    for spread, part in ((0.0, "ls - (every branch's Q alike)"), (0.5, "ls 10 rejected")):
        assert vine.progress(vine.__new__(vine), {**m, "kl": 0.0, "linesearch_steps": 10.0,
                                                  "step_accepted": 0.0, "grad_norm": 6.1e-8,
                                                  "vine_q_spread": spread}) == "kl 0.0000 " + part
    assert line("rwr") == line("natural_gradient") == "kl 0.0012"
