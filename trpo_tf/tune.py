"""python -m trpo_tf.tune --env=Hopper --trials=40 --steps=300000 [--logdir=runs/tune_hopper]

Optuna's TPE sampler proposes settings; each trial trains --steps env steps from the run's
flags (the env's tuned preset, if any, and any flag given here), evaluating the deterministic
policy every --eval_every iterations; the evaluations are reported to a median pruner that
stops trials that fall behind, and a trial's score is its final evaluation. The study lives
in <logdir>/study.db (SQLite): a killed tuning run resumes with the same command (a trial cut
short is run again with its settings, from its checkpoints). After every trial the best
settings so far are written as a flagfile, <logdir>/best.cfg:

    python -m trpo_tf.launch --env=Hopper --flagfile=runs/tune_hopper/best.cfg
"""
import dataclasses
import math
import os

from absl import app, flags

from trpo_tf import launch  # noqa: F401  (defines every training flag; tuning takes them all)
from trpo_tf.cli import StopOnSignal, main_guard, quiet_logging
from trpo_tf.errors import ConfigError, TrainingFault

flags.DEFINE_integer("trials", 20, "Trials to finish (completed or pruned), those of earlier "
                     "invocations of the same study included.")
flags.DEFINE_integer("startup_trials", 5, "Trials sampled at random before TPE models the results; "
                     "the pruner waits for as many finished trials before pruning.")
FLAGS = flags.FLAGS

STUDY_FILE = "study.db"
TRIAL_ONLY = ("logdir", "quiet", "resume", "export_every", "preset_file", "export_dir")  # not for best.cfg
BEST_FILE = "best.cfg"


# The search space: {Config field: trial -> value}. Floats are rounded to 3 significant digits
# (the flagfile stays readable; TPE does not need more).
SPACE = {
    "batch_steps": lambda t: t.suggest_categorical("batch_steps", [1024, 2048, 4096, 8192]),
    "gae_lambda": lambda t: t.suggest_float("gae_lambda", 0.9, 0.99),
    "max_kl": lambda t: t.suggest_float("max_kl", 0.003, 0.05, log=True),
    "cg_damping": lambda t: t.suggest_float("cg_damping", 0.01, 0.3, log=True),
    "vf_epochs": lambda t: t.suggest_int("vf_epochs", 2, 20),
    "vf_minibatch": lambda t: t.suggest_categorical("vf_minibatch", [64, 128, 256]),
    "vf_lr": lambda t: t.suggest_float("vf_lr", 3e-4, 3e-3, log=True),
    "init_log_std": lambda t: t.suggest_float("init_log_std", -1.5, 0.0),
    "normalize_rewards": lambda t: t.suggest_categorical("normalize_rewards", [True, False]),
    "policy_hidden": lambda t: tuple(int(h) for h in t.suggest_categorical(
        "policy_hidden", ["32,32", "64,64", "128,128", "256,256"]).split(",")),
}


def suggest(trial, fixed):
    """{Config field: value} for one trial, over SPACE less the `fixed` fields."""
    values = {name: draw(trial) for name, draw in SPACE.items() if name not in fixed}
    return {k: float(f"{v:.3g}") if isinstance(v, float) else v for k, v in values.items()}


def flag_value(value):
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else repr(value) if isinstance(value, float) else str(value)


def write_best(path, base, study):
    """The best trial so far as a flagfile: the base run's non-default flags, then its settings."""
    from trpo_tf.config import Config

    best = study.best_trial
    defaults = Config()
    lines = [f"# python -m trpo_tf.tune: trial {best.number} of {len(study.trials)}, final "
             f"evaluation return {best.value:.1f} at {best.user_attrs.get('env_steps', 0):,} steps"]
    settings = dict(dataclasses.asdict(base))
    settings.update(best.user_attrs["config"])
    for name in ("env", *(f.name for f in dataclasses.fields(base))):
        value = settings[name]
        if name in TRIAL_ONLY:
            continue
        if name == "env" or name in best.user_attrs["config"] or value != getattr(defaults, name):
            lines.append(f"--{name}={flag_value(value)}")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(dict.fromkeys(lines)) + "\n")
    os.replace(tmp, path)


def retry_cut_trials(study):
    """Trials cut short by a kill (left RUNNING) or a signal (failed, marked "cut") are queued
    again, once, with their settings and logdir: the retry resumes from their checkpoints."""
    import optuna

    retried = set(study.user_attrs.get("retried", []))
    for t in study.get_trials(deepcopy=False):
        if t.state == optuna.trial.TrialState.RUNNING:
            study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        elif not (t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get("cut")):
            continue
        if t.number not in retried:
            study.enqueue_trial(t.params, user_attrs={"logdir": t.user_attrs.get("logdir", "")})
            retried.add(t.number)
    study.set_user_attr("retried", sorted(retried))


def finished(study):
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=done))


def objective_fn(base, study_dir, stop, fixed):
    """Optuna's objective: train one trial's settings, report every evaluation, prune."""
    import optuna

    from trpo_tf.config import validate
    from trpo_tf.train import train

    def objective(trial):
        settings = suggest(trial, fixed)
        logdir = trial.user_attrs.get("logdir") or os.path.join(study_dir, f"trial_{trial.number}")
        trial.set_user_attr("logdir", logdir)
        trial.set_user_attr("config", {k: list(v) if isinstance(v, tuple) else v
                                       for k, v in settings.items()})
        cfg = validate(dataclasses.replace(base, logdir=logdir, quiet=True, resume="auto",
                                           export_every=0, **settings))
        print(f"trial {trial.number}: training in {logdir} | {describe(settings)}", flush=True)
        last = {"eval": float("nan"), "steps": 0}

        def report(iterations_done, m):
            if "eval_return_mean" in m:
                last.update(eval=m["eval_return_mean"], steps=int(m["env_steps"]))
                trial.report(last["eval"], last["steps"])
                if trial.should_prune():
                    raise optuna.TrialPruned()

        try:
            train(cfg, stop, report)
        except optuna.TrialPruned:
            print(f"trial {trial.number}: pruned at {last['steps']:,} steps (evaluation "
                  f"{last['eval']:.1f})", flush=True)
            raise
        if stop.signum is not None:
            trial.set_user_attr("cut", True)  # a signal cut the trial short: retried next time
            raise KeyboardInterrupt
        trial.set_user_attr("env_steps", last["steps"])
        if not math.isfinite(last["eval"]):
            raise ConfigError("the trial ended without an evaluation: --eval_every must be > 0")
        return last["eval"]

    return objective


def describe(settings):
    return " ".join(f"{k}={flag_value(v)}" for k, v in settings.items())


def tune(base, trials, startup_trials, fixed=()):
    """Run the study until `trials` trials finished; `fixed`: SPACE's fields held at the base
    run's values (the flags the user gave)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    os.makedirs(base.logdir, exist_ok=True)
    study = optuna.create_study(
        study_name="trpo_tf", storage=f"sqlite:///{os.path.join(base.logdir, STUDY_FILE)}",
        load_if_exists=True, direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=base.seed, n_startup_trials=startup_trials),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=0))
    retry_cut_trials(study)
    left = trials - finished(study)
    print(f"tuning {base.env}: {finished(study)} of {trials} trials done, {left} to run; study "
          f"{os.path.join(base.logdir, STUDY_FILE)}", flush=True)
    best_path = os.path.join(base.logdir, BEST_FILE)

    def after_trial(study, trial):
        if trial.state == optuna.trial.TrialState.COMPLETE:
            print(f"trial {trial.number}: final evaluation {trial.value:.1f} (best: trial "
                  f"{study.best_trial.number}, {study.best_value:.1f})", flush=True)
        if any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
            write_best(best_path, base, study)
        if finished(study) >= trials:
            study.stop()

    with StopOnSignal() as stop:
        while left > 0 and stop.signum is None:  # trials stopped by numerical faults are rerun
            study.optimize(objective_fn(base, base.logdir, stop, fixed), n_trials=left,
                           callbacks=[after_trial], catch=(TrainingFault,))
            left, before = trials - finished(study), left
            if left == before:
                raise TrainingFault(f"{left} trials in a row failed (see the lines above)")
    best = study.best_trial
    print(f"best: trial {best.number}, final evaluation {best.value:.1f}; settings in {best_path}",
          flush=True)
    return study


def main(argv):
    launch.refuse_extra_arguments(argv)
    quiet_logging()

    def run():
        if FLAGS.trials < 1:
            raise ConfigError(f"--trials must be >= 1 (got {FLAGS.trials})")
        if FLAGS.startup_trials < 0:
            raise ConfigError(f"--startup_trials must be >= 0 (got {FLAGS.startup_trials})")
        cfg = launch.config_from_flags()
        if not cfg.steps:
            raise ConfigError("--steps must be > 0: each trial trains that many env steps")
        if not cfg.eval_every:
            raise ConfigError("--eval_every must be > 0: trials are scored by their evaluations")
        if not FLAGS["logdir"].present:
            cfg = dataclasses.replace(cfg, logdir=f"runs/tune_{cfg.env.replace('/', '_').lower()}")
        launch.check_env(cfg)
        fixed = [name for name in SPACE if name in launch.APPLIED_PRESET["given"]]  # not searched
        tune(cfg, FLAGS.trials, FLAGS.startup_trials, fixed)

    main_guard(run)


if __name__ == "__main__":
    app.run(main, flags_parser=launch.parse_flags_with_preset)
