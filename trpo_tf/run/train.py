"""The training loop: environments -> the method's sampler -> tf.data -> the method's update ->
summaries / checkpoints / evaluation / export, with fault handling and signals. Everything it
needs comes from a Config; what the method is (methods/) it does not know."""
import collections
import contextlib
import dataclasses
import os
import signal
import sys
import threading
import time

import keras
import numpy as np
import tensorflow as tf

from trpo_tf import distributions, methods, pipeline, policies, seeding
from trpo_tf.cli import StopOnSignal
from trpo_tf.envs import env_settings
from trpo_tf.errors import ConfigError, EnvStepError, TrainingFault
from trpo_tf.methods.base import RunParts
from trpo_tf.run import outputs, summaries
from trpo_tf.run.checkpoint import Checkpointer
from trpo_tf.run.checks import check_run
from trpo_tf.run.evaluate import Evaluator
from trpo_tf.run.export import export_policy
from trpo_tf.sampling import batch_obs_dtype
from trpo_tf.sampling.single_path import value_step_kwargs

# Settings that only shape the sampler: a resumed run with other values starts new episodes.
SAMPLER_SETTINGS = ("num_envs", "env_backend", "max_path_length", "workers")
# How a run record's value reads where the record holds an outcome of the flag, not its value
RECORD_WORDS = {"action_masks": {True: "the env's action masks (--action_masks=auto)",
                                 False: "no action masks (--action_masks=off, or an env "
                                        "without them)"}}


def record_text(key, value):
    """A run record's `key`: `value` as a refusal names it."""
    return RECORD_WORDS[key][value] if key in RECORD_WORDS else f"{key}={value}"


# What run records written before a setting existed mean by its absence.
RECORD_DEFAULTS = {"workers": 0, "action_masks": False, "policy_rnn": "none", "value_rnn": "none",
                   "activation": "tanh", "env_kwargs": {}}
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

    def __init__(self, cfg, spec=None):
        """`spec`: the EnvSpec checks.check_run(cfg) returned, where the command ran it and
        prepared the outputs before TensorFlow loaded; None: both are done here."""
        self.cfg = cfg
        if spec is None:
            spec = check_run(cfg)
            outputs.prepare(cfg.logdir, cfg.policy_export_dir)
        self.lock = outputs.lock_dir(cfg.logdir)  # held until close()
        # --resume=never, or an earlier run that left no checkpoint: it moves to
        # <logdir>/previous-<k>/, before any writer opens
        self.earlier_run = outputs.set_aside_earlier_run(
            cfg.logdir, cfg.policy_export_dir, unless_resumable=cfg.resume == "auto")
        self.seeds = seeds = seeding.run_streams(cfg.seed)
        keras.utils.set_random_seed(seeding.int_seed(seeds["network_init"]))
        self.spec = spec
        method = methods.method_for(cfg)
        self.backend, self.envs = method.make_envs(cfg, self.spec, seeds)
        self.dist = distributions.for_action_space(self.envs.action_space)
        obs_space = self.envs.observation_space
        self.record = {"env": self.spec.gym_id, "env_kwargs": dict(self.spec.make_kwargs),
                       "algo": cfg.algo, "sampler": cfg.sampler,
                       "seed": cfg.seed, "policy_hidden": list(cfg.policy_sizes(self.spec)),
                       "activation": cfg.activation,
                       "normalize_obs": cfg.normalize_obs, "observation_shape": list(obs_space.shape),
                       "num_envs": cfg.num_envs, "env_backend": self.backend,
                       "max_path_length": cfg.max_path_length, "workers": cfg.workers,
                       "action_masks": bool(self.envs.mask_source),
                       "policy_rnn": (cfg.policy_rnn if cfg.policy_rnn == "none"
                                      else f"{cfg.policy_rnn} {cfg.policy_rnn_units}"),
                       **method.recorded_settings(cfg)}
        self.policy = policies.build_policy(obs_space.shape, self.dist,
                                            **cfg.policy_settings(self.spec))
        self.obs_spec = pipeline.observation_spec(obs_space.shape, batch_obs_dtype(obs_space))
        self.method = method(cfg, RunParts(self.spec, self.envs, self.dist, self.policy, seeds,
                                           self.obs_spec))
        self.remote = None  # --workers: the Ray workers sample the method's batches
        self.sampler = self.method.sampler
        value_net = self.method.carried_value_net()
        self.stream = pipeline.BatchStream(
            lambda: self.sampler.sample(self.policy.numpy_fn(), **value_step_kwargs(value_net)),
            self.method.signature)
        self.tags = {**summaries.TAGS, **method.tags}
        self.checkpointer = Checkpointer(os.path.join(cfg.logdir, "checkpoints"), self.policy,
                                         self.method.trackables())
        # checked before the writer opens: a run that cannot resume here writes nothing
        self.sampler_changes_since_last_run = self.sampler_changes() if cfg.resume == "auto" else []
        self._record_pending = False  # run(): the record waits for a checkpoint
        self.evaluator = (Evaluator(self.spec, self.dist, cfg.eval_episodes, seeds["evaluation"],
                                    cfg.max_path_length or None, self.envs.mask_source,
                                    self.policy.state_size)
                          if cfg.eval_every else None)
        self.recent_returns = collections.deque(maxlen=RECENT_EPISODES)
        self.last_eval = float("nan")
        self._beating = False  # a heartbeat line is on the terminal, to be cleared
        if cfg.workers:  # last but the writer: a cluster that cannot be joined leaves no files
            from trpo_tf.run.distributed import RaySampler

            self.remote = RaySampler(cfg, self.policy, self.log, value_net)
            self.sampler = self.method.sample_on(self.remote)
        self.writer = tf.summary.create_file_writer(cfg.logdir)

    def export(self):
        return export_policy(self.policy, self.dist, self.obs_spec, self.spec.gym_id,
                             self.cfg.policy_export_dir, env_settings(self.spec),
                             self.envs.action_space)

    def write_summaries(self, pending):
        """Write [(step, metrics)], skipping tags a killed earlier run already wrote."""
        logged = summaries.logged_steps(self.cfg.logdir) if self._resumed else {}
        for step, m in pending:
            skip = {tag for tag, steps in logged.items() if step in steps}
            summaries.write_scalars(self.writer, step, m, skip, self.tags)

    def sampler_changes(self):
        """Compare this run's settings with those the logdir was trained with: a ConfigError
        if the checkpoints cannot fit them, else the sampler settings that changed."""
        earlier = outputs.read_run_record(self.cfg.logdir)
        earlier = {**RECORD_DEFAULTS, **earlier} if earlier else {}
        changed = [k for k in self.record if k in earlier and earlier[k] != self.record[k]]
        for key in changed:
            if key not in SAMPLER_SETTINGS:
                raise ConfigError(
                    f"--logdir={self.cfg.logdir} holds a run trained with "
                    f"{record_text(key, earlier[key])}, these settings give "
                    f"{record_text(key, self.record[key])}: resume with the same "
                    "settings, use another --logdir, or --resume=never to start over (the "
                    "earlier run moves to <logdir>/previous-<k>/)")
        return [f"{k} {earlier[k]} -> {self.record[k]}" for k in changed]

    def resume(self):
        """Restore the last checkpoint (if any): (iterations done, env steps done)."""
        changes = self.sampler_changes_since_last_run
        start, env_steps, pending, sampler_state = self.checkpointer.restore_latest()
        self._resumed = start > 0
        if self.checkpointer.recovery:
            self.log(self.checkpointer.recovery)
        if start:
            saved = self.checkpointer.saved_fields()  # what the loop keeps across a resume
            made_with = saved.get("sampler_settings")  # (before 2026-12-07: run.json's say)
            if made_with is not None:  # what this checkpoint's sampler state was sampled with
                changes = [f"{k} {made_with[k]} -> {self.record[k]}" for k in SAMPLER_SETTINGS
                           if k in made_with and made_with[k] != self.record[k]]
            self.recent_returns.extend(saved.get("recent_returns", []))
            self.last_eval = saved.get("last_eval", self.last_eval)
            self.method.load_state(saved)
            self.write_summaries(pending)  # those a kill may have cut short
            if sampler_state is not None and not (changes and self.sampler.state_needs_same_envs):
                self.sampler.load_state(sampler_state)
            self.log(f"resuming {self.cfg.logdir} after iteration {start} ({env_steps:,} steps); "
                     + (f"sampler settings changed ({', '.join(changes)}): the envs start new "
                        "episodes" if changes else "sampling goes on where it stopped"
                        if sampler_state is not None
                        else f"{self.spec.gym_id}'s {self.backend} envs cannot be saved: they "
                             "start new episodes"))
        return start, env_steps

    def run(self, stop=None, on_iteration=None):
        """Train; returns the list of per-iteration metric dicts of this invocation. `stop`: a
        StopOnSignal a command holds across its runs (one is made for this run if None);
        `on_iteration(iterations_done, metrics)` is called after each iteration is saved (the
        tuner reports evaluations and prunes through it)."""
        cfg = self.cfg
        self._resumed = False
        if self.earlier_run:
            why = ("--resume=never" if cfg.resume == "never"
                   else "no checkpoint to resume from (the earlier run stopped before its "
                        "first, or ran with --checkpoint_every=0)")
            self.log(f"{why}: moved the earlier run in {cfg.logdir} to {self.earlier_run}")
        start, env_steps = (0, 0) if cfg.resume == "never" else self.resume()
        # the record says what the checkpoints were made with: with sampler settings changed,
        # it changes with the first checkpoint made with them (save)
        self._record_pending = bool(start and self.sampler_changes_since_last_run)
        if not self._record_pending:
            outputs.write_run_record(cfg.logdir, self.record)
        if start and not self.goes_on(start, env_steps):
            self.log(f"nothing left to train: {cfg.logdir} holds iteration {start} "
                     f"({env_steps:,} steps), within the budget asked (--iterations / --steps)")
        summaries.write_flags(self.writer, dataclasses.asdict(cfg), start)
        with contextlib.nullcontext(stop) if stop else StopOnSignal(not cfg.quiet) as stop:
            try:
                return self.train_loop(start, env_steps, stop, on_iteration)
            except KeyboardInterrupt:  # a second signal: say what the checkpoints hold
                raise KeyboardInterrupt(self.checkpoint_note()) from None

    def checkpoint_note(self):
        """What a run stopped at once leaves to resume from, as the line's second half."""
        cfg, last = self.cfg, int(self.checkpointer.iteration.numpy())
        if not cfg.checkpoint_every:
            return "--checkpoint_every=0: no checkpoint was written"
        if not last:
            return "no checkpoint was written yet (nothing to resume)"
        return (f"the last checkpoint (iteration {last}, in {self.checkpointer.directory}) is "
                "intact: run the same command to resume")

    def goes_on(self, iterations_done, env_steps):
        """Whether another iteration runs: --steps counts environment steps, else --iterations."""
        cfg = self.cfg
        return env_steps < cfg.steps if cfg.steps else iterations_done < cfg.iterations

    def budget_spent(self, iterations_done, env_steps):
        """The fraction of the budget (--steps, else --iterations) used so far."""
        cfg = self.cfg
        return min(1.0, env_steps / cfg.steps if cfg.steps else iterations_done / cfg.iterations)

    def planned_iterations(self, iterations_done, env_steps):
        """The count the progress line shows: --iterations, or under --steps the iterations done
        plus the budget left at the mean steps per iteration so far (exact for single path;
        other samplers take as many as their episodes need)."""
        cfg = self.cfg
        if not cfg.steps:
            return cfg.iterations
        done, steps = ((iterations_done, env_steps) if iterations_done and env_steps
                       else (1, cfg.steps_per_env * cfg.num_envs))
        # in integers: a float quotient is off by one or more once --steps passes 2**53
        return iterations_done + max(0, -(-(cfg.steps - env_steps) * done // steps))

    def train_loop(self, start, env_steps, stop, on_iteration=None):
        """Iterations from `start` until the budget is spent, then the export; returns their
        metrics."""
        cfg = self.cfg
        share = self.method.share(cfg, 0, cfg.workers) if cfg.workers else cfg  # worker 0's
        given = ", ".join(f"{k}={v!r}" for k, v in self.spec.make_kwargs)
        self.log(f"trpo_tf: {self.spec.name} ({self.spec.gym_id}{' ' + given if given else ''}), "
                 f"{self.dist.__class__.__name__} "
                 f"policy, {sum(int(np.prod(v.shape)) for v in self.policy.trainable_variables)} "
                 f"parameters{', action masks' if self.record['action_masks'] else ''}, "
                 + (f"{cfg.workers} Ray workers x " if cfg.workers else "")
                 + f"{cfg.num_envs} {self.backend} envs x {self.method.sampling_line(share)}"
                 + (f"; preset {cfg.preset_file}" if cfg.preset_file else ""))
        history, pending = [], []
        self._faults_in_row = self._faults = 0
        self.failure = None  # an evaluation env's EnvStepError, raised once its iteration is saved
        batches = iter(self.stream)
        it = start
        while self.goes_on(it, env_steps):
            if stop.signum is not None:  # a signal before this run's first iteration
                self.log(f"stopping before iteration {it + 1} on "
                         f"{signal.Signals(stop.signum).name}: nothing trained, nothing exported")
                return history
            m, progress = self.train_iteration(batches, it, start, env_steps)
            env_steps = m["env_steps"]
            history.append(m)
            pending.append((it + 1, m))
            # without checkpoints, summaries go out every iteration
            if (not cfg.checkpoint_every or self.due(it + 1, env_steps, cfg.checkpoint_every)
                    or stop.signum is not None or self.failure):
                self.save(it + 1, env_steps, pending)
                pending = []
            if (cfg.export_every and (it + 1) % cfg.export_every == 0
                    and self.goes_on(it + 1, env_steps) and stop.signum is None):
                self.export()  # (the last iteration's is the run's export, below)
            if progress:  # after the save: an iteration on the terminal survives a kill
                self.log(progress)
            if self.failure:
                try:
                    if not self.goes_on(it + 1, env_steps):  # the budget is spent: export first
                        self.log(f"exported policy to {self.export()}")
                finally:  # the evaluation's failure is the run's error, an export's too
                    raise self.failure
            if on_iteration:
                on_iteration(it + 1, m)
            if stop.signum is not None:
                if pending:  # the signal came after the save was decided (in on_iteration)
                    self.save(it + 1, env_steps, pending)
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
        n = int(batch["sim_steps"])  # every simulator step the batch took, branches included
        before = [v.numpy() for v in self.checkpointer.state_variables]
        state_before = self.method.state()
        self.method.anneal(self.budget_spent(it, env_steps))
        m, fault = self.method.update(batch)
        if not fault and not self.checkpointer.all_finite():
            fault = "parameters after the update (value fit or policy)"
        if fault:  # a skipped iteration changes nothing (Adam's step count and RNG included)
            for v, value in zip(self.checkpointer.state_variables, before):
                v.assign(value)
            self.method.load_state(state_before)
            return self.skip(it, fault, env_steps + n), None
        self._faults_in_row = 0
        m.update(episode_metrics(batch))
        env_steps += n
        self.recent_returns.extend(batch["episode_return"].numpy().tolist())
        m["return_rolling"] = (float(np.mean(self.recent_returns)) if self.recent_returns
                               else float("nan"))
        if self.evaluator and self.due(it + 1, env_steps, self.cfg.eval_every):
            t_eval = time.perf_counter()
            try:
                m.update(self.evaluator(self.policy.numpy_fn()), time_eval=time.perf_counter() - t_eval)
                self.last_eval = m["eval_return_mean"]
            except EnvStepError as err:  # the update stands: saved, then the run stops
                self.failure = err
        m.update(env_steps=env_steps, faults=self._faults, time_sample=t_sample,
                 time_iteration=time.perf_counter() - t0)
        if self.remote:
            m["worker_restarts"] = self.remote.restarts
        m.update({f"time_sample_{k}": float(batch[f"time_{k}"]) for k in ("policy", "env")
                  if f"time_{k}" in batch})
        m["steps_per_sec"] = n / m["time_iteration"]
        m["sample_steps_per_sec"] = n / t_sample
        return m, summaries.progress_line(it, self.planned_iterations(it + 1, env_steps), m,
                                          self.last_eval, self.method.progress(m),
                                          self.method.stages)

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
                                    "last_eval": self.last_eval, **self.method.state(),
                                    "sampler_settings": {k: self.record[k]
                                                         for k in SAMPLER_SETTINGS}})
            if self._record_pending:
                outputs.write_run_record(self.cfg.logdir, self.record)
                self._record_pending = False
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
        end); let go of the batch stream's sampler (the run is freed once its caller drops
        it)."""
        if self.evaluator:
            self.evaluator.close()
        if self.remote:
            self.remote.close()
        if not any(t.name == SAMPLING_THREAD and t.is_alive() for t in threading.enumerate()):
            self.envs.close()
        self.stream.release()  # tf.data would hold the run, its models and its last batch
        self.writer.close()
        self.lock = None  # let the logdir go (unless the command holds it too)


def train(cfg, stop=None, on_iteration=None, spec=None):
    trainer = Trainer(cfg, spec)
    try:
        return trainer.run(stop, on_iteration)
    finally:
        trainer.close()
