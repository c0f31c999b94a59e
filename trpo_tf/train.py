"""The training loop: wires environments -> sampler -> tf.data -> advantages -> TRPO update
-> value fit -> summaries / checkpoints / export. Everything it needs comes from a Config."""
import collections
import contextlib
import dataclasses
import math
import os
import signal
import sys
import threading
import time

import keras
import numpy as np
import tensorflow as tf

from trpo_tf import advantages as adv_lib
from trpo_tf import distributions, envs, outputs, pipeline, policies, seeding, summaries
from trpo_tf.checkpoint import Checkpointer
from trpo_tf.cli import StopOnSignal
from trpo_tf.errors import ConfigError, TrainingFault
from trpo_tf.evaluate import Evaluator
from trpo_tf.moments import RewardScale
from trpo_tf.export import export_policy
from trpo_tf.config import DERIVATIVE_FREE
from trpo_tf.derivative_free import CEM, CMA, PopulationSearch
from trpo_tf.rwr import RWRLearner
from trpo_tf.sampling import available_memory, batch_obs_dtype, observation_memory
from trpo_tf.sampling.single_path import SinglePathSampler
from trpo_tf.sampling.vine import VineSampler
from trpo_tf.update import TRPOLearner, all_finite, get_flat, single_path_gain, vine_gain
from trpo_tf.value import ValueFitter


def make_advantage_fn(value_net, cfg, obs_spec):
    """A tf.function: batch -> (advantages, value targets, explained variance) (traced once)."""
    per_step = tf.TensorSpec((None,), tf.float32)

    @tf.function(input_signature=[obs_spec, obs_spec, per_step, per_step, per_step])
    def advantage_fn(obs, end_obs, rew, terminal, path_end):
        values = value_net(obs)
        next_values = adv_lib.next_state_values(values, value_net(end_obs), path_end)
        adv, targets = adv_lib.advantages_and_targets(
            cfg.advantage, rew, values, next_values, terminal, path_end, cfg.gamma,
            cfg.gae_lambda)
        if cfg.normalize_advantages:
            adv = adv_lib.normalize(adv)
        return adv, targets, adv_lib.explained_variance(values, targets)

    return advantage_fn


POLICY_STEP_FAULT = "gradient, Fisher-vector products or CG solution"
# Settings that only shape the sampler: a resumed run with other values starts new episodes.
SAMPLER_SETTINGS = ("num_envs", "env_backend", "max_path_length")


HEARTBEAT_SECONDS = 2.0  # a terminal hears from a long sampling phase this often
RECENT_EPISODES = 100    # the progress line's training return: the mean of the last 100
SAMPLING_THREAD = "trpo_tf-sampling"


def fetch_batch(batches, heartbeat=None):
    """next(batches) on a helper thread while the main thread waits in Python, so signals are
    handled at once (tf.data's C++ would hold them until the batch is done) and `heartbeat(s)`
    runs every HEARTBEAT_SECONDS of waiting."""
    result, done = {}, threading.Event()

    def fetch():
        try:
            result["batch"] = next(batches)
        except BaseException as err:  # re-raised in the main thread
            result["error"] = err
        finally:
            done.set()

    threading.Thread(target=fetch, daemon=True, name=SAMPLING_THREAD).start()
    t0 = time.perf_counter()
    while not done.wait(HEARTBEAT_SECONDS):
        if heartbeat:
            heartbeat(time.perf_counter() - t0)
    if "error" in result:
        raise result["error"]
    return result["batch"]


def episode_metrics(batch):
    returns, lengths = batch["episode_return"].numpy(), batch["episode_length"].numpy()
    if returns.size == 0:
        nan = float("nan")
        return {"return_mean": nan, "return_min": nan, "return_max": nan,
                "episode_length": nan, "episodes": 0.0}
    return {"return_mean": float(returns.mean()), "return_min": float(returns.min()),
            "return_max": float(returns.max()), "episode_length": float(lengths.mean()),
            "episodes": float(returns.size)}


class Trainer:
    """Holds the run's objects; `run()` trains from the last checkpoint until --iterations or
    --steps are spent."""

    def __init__(self, cfg):
        self.cfg = cfg
        outputs.prepare(cfg.logdir, cfg.policy_export_dir)
        # --resume=never: the earlier run moves to <logdir>/previous-<k>/, before any writer opens
        self.earlier_run = (outputs.set_aside_earlier_run(cfg.logdir, cfg.policy_export_dir)
                            if cfg.resume == "never" else None)
        self.seeds = seeds = seeding.run_streams(cfg.seed)
        keras.utils.set_random_seed(seeding.int_seed(seeds["network_init"]))
        self.spec = envs.resolve_env(cfg.env, cfg.atari)
        envs.check_algo(self.spec, cfg.algo)
        vine = cfg.sampler == "vine"
        population = cfg.algo in DERIVATIVE_FREE
        if vine:  # branches restore simulator states: gymnasium MuJoCo envs
            envs.check_restorable(self.spec)
        self.backend = ("gymnasium" if vine or population  # per-env episodes, restores
                        else envs.pick_backend(self.spec, cfg.env_backend))
        self.envs = envs.make_env_group(self.spec, self.backend, cfg.num_envs,
                                        seeding.int_seed(seeds["env_resets"], bits=30),
                                        cfg.max_path_length or None, cfg.env_threads)
        self.dist = distributions.for_action_space(self.envs.action_space)
        obs_space = self.envs.observation_space
        self.check_batch_fits_in_memory(obs_space)
        hidden = cfg.policy_hidden if cfg.policy_hidden is not None else self.spec.policy_hidden
        self.record = {"env": self.spec.gym_id, "algo": cfg.algo, "sampler": cfg.sampler,
                       "policy_hidden": list(hidden), "value_hidden": list(cfg.value_hidden),
                       "normalize_obs": cfg.normalize_obs, "observation_shape": list(obs_space.shape),
                       "num_envs": cfg.num_envs, "env_backend": self.backend,
                       "max_path_length": cfg.max_path_length}
        self.policy, self.value_net = policies.build_models(
            obs_space.shape, self.dist, hidden, cfg.value_hidden, cfg.normalize_obs,
            cfg.init_log_std)
        make_signature = (pipeline.vine_signature if vine else pipeline.population_signature
                          if population else pipeline.batch_signature)
        obs_dtype = batch_obs_dtype(obs_space)
        self.signature = make_signature(obs_space.shape, obs_dtype, self.dist)
        self.obs_spec = obs_spec = pipeline.observation_spec(obs_space.shape, obs_dtype)
        self.sampler = (self.make_vine_sampler() if vine else self.make_population_search()
                        if population else SinglePathSampler(
                            self.envs, self.dist, cfg.steps_per_env, seeds["actions"], cfg.gamma))
        self.stream = pipeline.BatchStream(
            lambda: self.sampler.sample(self.policy.numpy_fn()), self.signature)
        # RWR weights Monte Carlo returns as they are: Q-hat, not normalised, rewards not scaled
        self.reward_scale = RewardScale() if cfg.normalize_rewards and cfg.algo != "rwr" else None
        adv_cfg = (dataclasses.replace(cfg, advantage="q", normalize_advantages=False)
                   if cfg.algo == "rwr" else cfg)
        self.advantage_fn = make_advantage_fn(self.value_net, adv_cfg, obs_spec)
        self.learner = self.make_learner(vine, obs_spec)
        self.iteration = (self.vine_iteration if vine else self.population_iteration
                          if population else self.single_path_iteration)
        self.value_fitter = ValueFitter(
            self.value_net, obs_spec, cfg.vf_lr, cfg.vf_epochs, cfg.vf_minibatch,
            seeding.int_seed(seeds["value_shuffle"]))
        self.checkpointer = Checkpointer(
            os.path.join(cfg.logdir, "checkpoints"), self.policy, self.value_net,
            self.value_fitter.optimizer, self.value_fitter.rng)
        # checked before the writer opens: a run that cannot resume here writes nothing
        self.sampler_changes_since_last_run = self.sampler_changes() if cfg.resume == "auto" else []
        self.evaluator = (Evaluator(self.spec, self.dist, cfg.eval_episodes, seeds["evaluation"],
                                    cfg.max_path_length or None) if cfg.eval_every else None)
        self.recent_returns = collections.deque(maxlen=RECENT_EPISODES)
        self.last_eval = float("nan")
        self._beating = False  # a heartbeat line is on the terminal, to be cleared
        self.writer = tf.summary.create_file_writer(cfg.logdir)

    def check_batch_fits_in_memory(self, obs_space):
        """A ConfigError before anything is allocated if a batch's observations would take
        more than 80% of the memory available (vine: the trunk states it keeps)."""
        cfg = self.cfg
        flag, states = "--batch_steps", cfg.steps_per_env * cfg.num_envs
        if cfg.sampler == "vine":
            flag, states = ("--vine_trunk_paths x --vine_trunk_length",
                            cfg.vine_trunk_paths * cfg.vine_trunk_length)
            if 0 < cfg.vine_kl_states < states:
                flag, states = "--vine_kl_states", cfg.vine_kl_states
        need, have = observation_memory(obs_space, states), available_memory()
        if have is not None and need > 0.8 * have:
            raise ConfigError(
                f"{flag} = {states:,} states of {obs_space.shape} {batch_obs_dtype(obs_space)} "
                f"need about {need / 2**30:.1f} GiB while a batch is built, and "
                f"{have / 2**30:.1f} GiB are available: lower {flag.split(' ')[0]}")

    def make_learner(self, vine, obs_spec):
        """The policy update of --algo: TRPO or one of its ablations, RWR's M-step, or None
        (CEM / CMA update inside their search)."""
        cfg, sig = self.cfg, self.signature
        if cfg.algo in DERIVATIVE_FREE:
            return None
        if cfg.algo == "rwr":
            return RWRLearner(self.policy, self.dist, [obs_spec, sig["act"], sig["rew"]],
                              cfg.rwr_temperature, cfg.rwr_epochs, cfg.rwr_lr)
        # vine: gain on the rollout set, KL on the trunk states; rew: the spec of advantages
        gain, data = ((vine_gain(self.dist, cfg.vine_proposal), ["q_hat", "kl_obs"]) if vine
                      else (single_path_gain(self.dist), ["rew"]))
        return TRPOLearner(
            self.policy, self.dist, gain, [obs_spec, sig["act"], *(sig[d] for d in data)],
            cfg.max_kl, cfg.cg_iters, cfg.cg_damping, cfg.fvp_subsample, cfg.ls_shrink,
            cfg.ls_max_backtracks,
            fisher="empirical" if cfg.algo == "empirical_fim" else "analytic",
            constraint="max" if cfg.algo == "max_kl" else "mean",
            fixed_step=cfg.npg_step if cfg.algo == "natural_gradient" else 0.0, kl_states=vine)

    def make_population_search(self):
        cfg = self.cfg
        start = get_flat(self.policy.mean_variables()).numpy()
        optimizer = (CEM(start, cfg.cem_init_std, cfg.cem_elite_frac, cfg.cem_extra_noise,
                         cfg.cem_noise_decay, self.seeds["search"]) if cfg.algo == "cem"
                     else CMA(start, cfg.cma_sigma, cfg.population,
                              seeding.int_seed(self.seeds["search"])))
        return PopulationSearch(self.envs, self.policy, optimizer, cfg.population,
                                self.seeds["search_episodes"])

    def population_iteration(self, batch):
        """CEM / CMA: tell the search the candidates' returns; the policy becomes its mean."""
        if not all_finite(batch["returns"]):
            return None, "returns"
        t0 = time.perf_counter()
        self.sampler.tell(batch["returns"].numpy())
        nan = float("nan")
        return {"kl": nan, "linesearch_steps": 0.0, "entropy": nan, "explained_variance": nan,
                "time_advantage": 0.0, "time_update": time.perf_counter() - t0, "time_value": 0.0,
                "search_spread": self.sampler.optimizer.spread}, None

    def make_vine_sampler(self):
        cfg = self.cfg
        return VineSampler(self.envs, self.dist, cfg.vine_trunk_paths, cfg.vine_trunk_length,
                           cfg.vine_states, cfg.vine_actions_per_state, cfg.vine_rollout_length,
                           cfg.gamma, cfg.vine_proposal, cfg.vine_crn, self.seeds["vine"],
                           cfg.vine_kl_states)

    def policy_step(self, obs, act, *data):
        """The policy update (TRPO, one of its ablations, or RWR's M-step) -> its metrics as
        floats, or None if it met non-finite numbers (then the parameters are left as they were)."""
        metrics = {k: float(v) for k, v in self.learner.step(obs, act, *data).items()}
        return None if metrics["fault"] else metrics

    def update_normalizer(self, obs):
        """Fold the batch into the running observation statistics (vector observations)."""
        if self.policy.normalizer is not None and self.policy.normalizer.enabled:
            self.policy.normalizer.update(obs.numpy())

    def vine_iteration(self, batch):
        """TRPO step on the rollout set (eq. 16 / 17) under the mean KL over the trunk states,
        and normaliser update (trunk states) -> metrics, or (None, what) when non-finite numbers
        turned up. Vine needs no value function."""
        if not all_finite(batch["obs"], batch["q_hat"], batch["kl_obs"]):
            return None, "observations or Q-values"
        t0 = time.perf_counter()
        metrics = self.policy_step(batch["obs"], batch["act"], batch["q_hat"], batch["kl_obs"])
        if metrics is None:
            return None, POLICY_STEP_FAULT
        self.update_normalizer(batch["kl_obs"])
        nan = float("nan")
        q_shape = batch["q_hat"].shape
        metrics.update(explained_variance=nan, value_loss_before=nan, value_loss_after=nan,
                       time_advantage=0.0, time_update=time.perf_counter() - t0, time_value=0.0,
                       vine_states=float(q_shape[0]), vine_branches=float(q_shape[0] * q_shape[1]),
                       vine_kl_states=float(batch["kl_obs"].shape[0]),
                       vine_q_spread=float(batch["q_spread"]), vine_sim_steps=float(batch["sim_steps"]))
        return metrics, None

    def single_path_iteration(self, batch):
        """Advantages, TRPO step, value fit and normaliser update on one batch -> metrics, or
        (None, what) when non-finite numbers turned up; then nothing is changed."""
        if not all_finite(batch["obs"], batch["end_obs"], batch["rew"]):
            return None, "observations or rewards"
        t0 = time.perf_counter()
        rew, scale_state = batch["rew"], None
        if self.reward_scale:
            rew, scale_state = self.reward_scale.scaled(rew.numpy(), batch["discounted_return"].numpy())
        adv, targets, ev = self.advantage_fn(
            batch["obs"], batch["end_obs"], rew, batch["terminal"], batch["path_end"])
        if not all_finite(adv, targets):
            return None, "advantages or value targets"
        t1 = time.perf_counter()
        metrics = self.policy_step(batch["obs"], batch["act"], adv)
        if metrics is None:
            return None, POLICY_STEP_FAULT
        t2 = time.perf_counter()
        vf = self.value_fitter.fit(batch["obs"], targets)
        t3 = time.perf_counter()
        self.update_normalizer(batch["obs"])
        if scale_state:
            self.reward_scale.commit(scale_state)
            metrics["reward_scale"] = RewardScale.factor(scale_state)
        metrics.update(
            explained_variance=float(ev), value_loss_before=float(vf["loss_before"]),
            value_loss_after=float(vf["loss_after"]), time_advantage=t1 - t0,
            time_update=t2 - t1, time_value=t3 - t2)
        return metrics, None

    def export(self):
        atari = None if self.spec.atari is None else dataclasses.asdict(self.spec.atari)
        return export_policy(self.policy, self.dist, self.obs_spec, self.spec.gym_id,
                             self.cfg.policy_export_dir, atari)

    def write_summaries(self, pending):
        """Write [(step, metrics)], skipping tags a killed earlier run already wrote."""
        logged = summaries.logged_steps(self.cfg.logdir) if self._resumed else {}
        for step, m in pending:
            skip = {tag for tag, steps in logged.items() if step in steps}
            summaries.write_scalars(self.writer, step, m, skip)

    def sampler_changes(self):
        """Compare this run's settings with those the logdir was trained with: a ConfigError
        if the checkpoints cannot fit them, else the sampler settings that changed."""
        earlier = outputs.read_run_record(self.cfg.logdir) or {}
        changed = [k for k in self.record if k in earlier and earlier[k] != self.record[k]]
        for key in changed:
            if key not in SAMPLER_SETTINGS:
                raise ConfigError(
                    f"--logdir={self.cfg.logdir} holds a run trained with {key}={earlier[key]}, "
                    f"these settings give {key}={self.record[key]}: resume with the same "
                    "settings, use another --logdir, or --resume=never to start over (the "
                    "earlier run moves to <logdir>/previous-<k>/)")
        return [f"{k} {earlier[k]} -> {self.record[k]}" for k in changed]

    def resume(self):
        """Restore the last checkpoint (if any): (iterations done, env steps done)."""
        changes = self.sampler_changes_since_last_run
        start, env_steps, pending, sampler_state = self.checkpointer.restore_latest()
        self.value_fitter.optimizer.learning_rate = self.cfg.vf_lr  # a flag, not checkpoint state
        self._resumed = start > 0
        if self.checkpointer.recovery:
            self.log(self.checkpointer.recovery)
        if start:
            saved = self.checkpointer.saved_fields()  # what the loop keeps across a resume
            self.recent_returns.extend(saved.get("recent_returns", []))
            self.last_eval = saved.get("last_eval", self.last_eval)
            if self.reward_scale and saved.get("reward_scale"):
                self.reward_scale.commit(saved["reward_scale"])
            self.write_summaries(pending)  # those a kill may have cut short
            if sampler_state is not None and not changes:
                self.sampler.load_state(sampler_state)
            self.log(f"resuming {self.cfg.logdir} after iteration {start} ({env_steps:,} steps); "
                     + (f"sampler settings changed ({', '.join(changes)}): the envs start new "
                        "episodes" if changes else "sampling goes on where it stopped"
                        if sampler_state is not None
                        else f"{self.backend} envs cannot be saved: they start new episodes"))
        return start, env_steps

    def run(self, stop=None, on_iteration=None):
        """Train; returns the list of per-iteration metric dicts of this invocation. `stop`: a
        StopOnSignal a command holds across its runs (one is made for this run if None);
        `on_iteration(iterations_done, metrics)` is called after each iteration is saved (the
        tuner reports evaluations and prunes through it)."""
        cfg = self.cfg
        self._resumed = False
        if self.earlier_run:
            self.log(f"--resume=never: moved the earlier run in {cfg.logdir} to {self.earlier_run}")
        start, env_steps = (0, 0) if cfg.resume == "never" else self.resume()
        outputs.write_run_record(cfg.logdir, self.record)
        if not start:
            summaries.write_flags(self.writer, dataclasses.asdict(cfg))
        with contextlib.nullcontext(stop) if stop else StopOnSignal(not cfg.quiet) as stop:
            return self.train_loop(start, env_steps, stop, on_iteration)

    def goes_on(self, iterations_done, env_steps):
        """Whether another iteration runs: --steps counts environment steps, else --iterations."""
        cfg = self.cfg
        return env_steps < cfg.steps if cfg.steps else iterations_done < cfg.iterations

    def planned_iterations(self, iterations_done, env_steps):
        """The count the progress line shows: --iterations, or under --steps the iterations done
        plus the budget left at the mean steps per iteration so far (exact for single path;
        vine and CEM / CMA take as many as their episodes need)."""
        cfg = self.cfg
        if not cfg.steps:
            return cfg.iterations
        per_iteration = (env_steps / iterations_done if iterations_done and env_steps
                         else cfg.steps_per_env * cfg.num_envs)
        return iterations_done + max(0, math.ceil((cfg.steps - env_steps) / per_iteration))

    def train_loop(self, start, env_steps, stop, on_iteration=None):
        """Iterations from `start` until the budget is spent, then the export; returns their
        metrics."""
        cfg = self.cfg
        sampling = (f"vine: {cfg.vine_trunk_paths} trunks x {cfg.vine_trunk_length} steps, "
                    f"{cfg.vine_states} states x {self.sampler.k} branches x "
                    f"{cfg.vine_rollout_length} steps" if cfg.sampler == "vine"
                    else f"{cfg.steps_per_env} steps per iteration")
        self.log(f"trpo_tf: {self.spec.name} ({self.spec.gym_id}), {self.dist.__class__.__name__} "
                 f"policy, {sum(int(np.prod(v.shape)) for v in self.policy.trainable_variables)} "
                 f"parameters, {cfg.num_envs} {self.backend} envs x {sampling}"
                 + (f"; preset {cfg.preset_file}" if cfg.preset_file else ""))
        history, pending = [], []
        self._faults_in_row = self._faults = 0
        batches = iter(self.stream)
        it = start
        while self.goes_on(it, env_steps):
            if stop.signum is not None:  # a signal before this run's first iteration
                break
            m, progress = self.train_iteration(batches, it, start, env_steps)
            env_steps = m["env_steps"]
            history.append(m)
            pending.append((it + 1, m))
            # without checkpoints, summaries go out every iteration
            if (not cfg.checkpoint_every or self.due(it + 1, env_steps, cfg.checkpoint_every)
                    or stop.signum is not None):
                self.save(it + 1, env_steps, pending)
                pending = []
            if cfg.export_every and (it + 1) % cfg.export_every == 0:
                self.export()
            if progress:  # after the save: an iteration on the terminal survives a kill
                self.log(progress)
            if on_iteration:
                on_iteration(it + 1, m)
            if stop.signum is not None:
                self.log(f"stopping after iteration {it + 1} on {signal.Signals(stop.signum).name}")
                break
            it += 1
        path = self.export()
        self.log(f"exported policy to {path}")
        return history

    def due(self, iterations_done, env_steps, every):
        """Every `every` iterations and after the last one."""
        return iterations_done % every == 0 or not self.goes_on(iterations_done, env_steps)

    def train_iteration(self, batches, it, start, env_steps):
        """Sample and update iteration `it` -> (its metrics, its progress line); a skipped
        iteration's metrics and None (it printed its own line)."""
        t0 = time.perf_counter()
        batch = fetch_batch(batches, self.heartbeat_fn(it, self.planned_iterations(it, env_steps)))
        t_sample = time.perf_counter() - t0
        if self.sampler.batches_produced != it - start + 1:
            raise RuntimeError("tf.data sampled ahead of the update: batches are off-policy")
        n = int(batch["sim_steps"])  # simulator steps, vine's branches included
        before = [v.numpy() for v in self.checkpointer.state_variables]
        scale_before = self.reward_scale and self.reward_scale.state
        m, fault = self.iteration(batch)
        if not fault and not self.checkpointer.all_finite():
            fault = "parameters after the update (value fit or policy)"
        if fault:  # a skipped iteration changes nothing (Adam's step count and RNG included)
            for v, value in zip(self.checkpointer.state_variables, before):
                v.assign(value)
            if scale_before:
                self.reward_scale.commit(scale_before)
            return self.skip(it, fault, env_steps + n), None
        self._faults_in_row = 0
        m.update(episode_metrics(batch))
        env_steps += n
        self.recent_returns.extend(batch["episode_return"].numpy().tolist())
        m["return_rolling"] = (float(np.mean(self.recent_returns)) if self.recent_returns
                               else float("nan"))
        if self.evaluator and self.due(it + 1, env_steps, self.cfg.eval_every):
            t_eval = time.perf_counter()
            m.update(self.evaluator(self.policy.numpy_fn()), time_eval=time.perf_counter() - t_eval)
            self.last_eval = m["eval_return_mean"]
        m.update(env_steps=env_steps, faults=self._faults, time_sample=t_sample,
                 time_iteration=time.perf_counter() - t0)
        m.update({f"time_sample_{k}": float(batch[f"time_{k}"]) for k in ("policy", "env")
                  if f"time_{k}" in batch})
        m["steps_per_sec"] = n / m["time_iteration"]
        m["sample_steps_per_sec"] = n / t_sample
        return m, summaries.progress_line(it, self.planned_iterations(it + 1, env_steps), m,
                                          self.last_eval)

    def skip(self, it, fault, env_steps):
        """Count a skipped iteration; --max_faults of them in a row stop the run."""
        self._faults_in_row += 1
        self._faults += 1
        self.log(f"it {it + 1:4d}/{self.planned_iterations(it + 1, env_steps)} | skipped: "
                 f"non-finite {fault} ({self._faults_in_row} in a row)")
        if self._faults_in_row >= self.cfg.max_faults:
            last = int(self.checkpointer.iteration.numpy())
            raise TrainingFault(
                f"{self._faults_in_row} iterations in a row had non-finite {fault}; stopped with "
                + (f"the last good checkpoint (iteration {last}) in {self.checkpointer.directory}"
                   if last else "no checkpoint written yet"))
        return {"faults": self._faults, "env_steps": env_steps}

    def save(self, iterations_done, env_steps, pending):
        """Checkpoint first (it holds `pending`, so a kill before the summaries loses none),
        then write the summaries."""
        if self.cfg.checkpoint_every:
            self.checkpointer.save(iterations_done, env_steps, pending, self.sampler.state(),
                                   {"recent_returns": list(self.recent_returns),
                                    "last_eval": self.last_eval,
                                    "reward_scale": self.reward_scale and self.reward_scale.state})
        self.write_summaries(pending)

    def heartbeat_fn(self, it, planned):
        """On a terminal, a line that a long sampling phase rewrites in place; else None."""
        if self.cfg.quiet or not sys.stdout.isatty():
            return None

        def beat(seconds):
            print(f"\rit {it + 1:4d}/{planned} | sampling: "
                  f"{self.sampler.progress:,} steps, {seconds:.0f}s ", end="", flush=True)
            self._beating = True

        return beat

    def log(self, line):
        if not self.cfg.quiet:
            if self._beating:  # clear the heartbeat line first
                print("\r\033[K", end="")
                self._beating = False
            print(line, flush=True)

    def close(self):
        """Close the writer and the evaluation envs, and the sampling envs unless a batch is
        still being sampled in them (a second Ctrl-C left it running: the process is about to
        end)."""
        if self.evaluator:
            self.evaluator.close()
        if not any(t.name == SAMPLING_THREAD and t.is_alive() for t in threading.enumerate()):
            self.envs.close()
        self.writer.close()


def train(cfg, stop=None, on_iteration=None):
    trainer = Trainer(cfg)
    try:
        return trainer.run(stop, on_iteration)
    finally:
        trainer.close()
