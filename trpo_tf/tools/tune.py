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
import os
import warnings

from absl import flags

from trpo_tf import launch  # noqa: F401  (defines every training flag; tuning takes them all)
from trpo_tf.cli import StopOnSignal, main_guard, quiet_logging
from trpo_tf.errors import ConfigError, TrainingFault, first_line
from trpo_tf.run import outputs
from trpo_tf.run.checks import check_run

flags.DEFINE_integer("trials", 20, "Trials to finish (completed or pruned), those of earlier "
                     "invocations of the same study included.")
flags.DEFINE_integer("startup_trials", 5, "Trials sampled at random before TPE models the results; "
                     "the pruner waits for as many finished trials before pruning.")
FLAGS = flags.FLAGS

STUDY_FILE = "study.db"
TRIAL_ONLY = ("logdir", "quiet", "resume", "export_every", "preset_file", "export_dir")  # not for best.cfg
BEST_FILE = "best.cfg"
NOT_RESULTS = ("checkpoint_every", "env_threads", "ray_address")  # a resumed study may change them
STARTING_POINT = "starting_point"  # the user attribute of trial 0: the settings it draws


# The search space: {Config field: trial -> value}, these settings of every method the tuner
# takes and the method's own (Method.search_space). Floats are rounded to 3 significant digits
# (the flagfile stays readable; TPE does not need more).
BATCH_STEPS = [1024, 2048, 4096, 8192]
SHARED_SPACE = {
    "batch_steps": lambda t: t.suggest_categorical("batch_steps", BATCH_STEPS),
    "gamma": lambda t: t.suggest_categorical("gamma", [0.9, 0.95, 0.98, 0.99, 0.995, 0.999]),
    "gae_lambda": lambda t: t.suggest_float("gae_lambda", 0.9, 0.99),
    "vf_epochs": lambda t: t.suggest_int("vf_epochs", 2, 20),
    "vf_minibatch": lambda t: t.suggest_categorical("vf_minibatch", [64, 128, 256]),
    "vf_lr": lambda t: t.suggest_float("vf_lr", 3e-4, 3e-3, log=True),
    "init_log_std": lambda t: t.suggest_float("init_log_std", -1.5, 0.0),
    "normalize_rewards": lambda t: t.suggest_categorical("normalize_rewards", [True, False]),
    "policy_hidden": lambda t: tuple(int(h) for h in t.suggest_categorical(
        "policy_hidden", ["32,32", "64,64", "128,128", "256,256"]).split(",")),
}


def search_space(cfg):
    """SHARED_SPACE and the method's own settings (Method.search_space); ConfigError for a
    method without a space (the settings shared would be only part of what it depends on)."""
    from trpo_tf import methods

    own = methods.REGISTRY[(cfg.algo, cfg.sampler)].search_space
    if not own:
        tuned = sorted(f"--algo={algo}" + ("" if sampler == "single_path" else f" --sampler={sampler}")
                       for (algo, sampler), method in methods.REGISTRY.items() if method.search_space)
        raise ConfigError(f"--algo={cfg.algo} --sampler={cfg.sampler}: the tuner has no search "
                          f"space for this method; it tunes {' and '.join(tuned)}")
    return {**SHARED_SPACE, **own}


def starting_point(space, base, fixed):
    """The base run's own values of the `space`'s settings where the space holds them: queued as a
    fresh study's first trial, which trains the base run's settings (those the space cannot
    hold included), so the tuner's best is never worse than what it started from."""
    import optuna

    point = {}
    for name in space:
        value = getattr(base, name)
        value = ",".join(map(str, value)) if isinstance(value, tuple) else value
        if name in fixed or value is None:
            continue
        with warnings.catch_warnings(record=True) as caught:  # out of a float's range: a warning
            warnings.simplefilter("always")
            try:
                space[name](optuna.trial.FixedTrial({name: value}))
            except ValueError:  # not among a categorical's choices (e.g. a linear policy)
                continue
        if not caught:
            point[name] = value
    return point


def suggest(space, trial, fixed):
    """{Config field: value} for one trial, over the `space` less the `fixed` fields."""
    values = {name: draw(trial) for name, draw in space.items() if name not in fixed}
    return {k: float(f"{v:.3g}") if isinstance(v, float) else v for k, v in values.items()}


def flag_value(value):
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else repr(value) if isinstance(value, float) else str(value)


def trial_flags(cfg):
    """A trial's settings as the flags that reproduce it: env, then every field that differs
    from the generic defaults (less where the trial's files went)."""
    from trpo_tf.config import Config

    defaults, settings = Config(), dataclasses.asdict(cfg)
    return {name: list(value) if isinstance(value, tuple) else value
            for name, value in settings.items()
            if name not in TRIAL_ONLY and (name == "env" or value != getattr(defaults, name))}


def best_trial(study):
    """The finished trial of the highest final evaluation, the earliest among equals (Optuna's
    own best_trial breaks ties in whatever order its storage returns them)."""
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return max(complete, key=lambda t: (t.value, -t.number))


def write_best(path, study):
    """The best trial so far as a flagfile, from the settings that trial ran with, training
    into <study dir>/best (not --logdir's default, which may hold another run)."""
    best = best_trial(study)
    lines = [f"# python -m trpo_tf.tune: trial {best.number} of {len(study.trials)}, final "
             f"evaluation return {best.value:.1f} at {best.user_attrs.get('env_steps', 0):,} steps"]
    lines += [f"--{name}={flag_value(value)}" for name, value in best.user_attrs["flags"].items()]
    lines.append(f"--logdir={os.path.join(os.path.dirname(path), 'best')}")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def retry_cut_trials(study):
    """Trials cut short by a kill (left RUNNING) or a signal (failed, marked "cut") are queued
    again, once, with their settings and logdir: the retry resumes from their checkpoints."""
    import optuna

    retried = set(study.user_attrs.get("retried", []))
    for t in study.get_trials(deepcopy=False):
        if t.state == optuna.trial.TrialState.RUNNING:  # no other tuner holds it: the logdir's lock
            study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        elif not (t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get("cut")):
            continue
        if t.number not in retried:
            study.enqueue_trial(t.params, user_attrs={k: t.user_attrs[k] for k in (
                "logdir", STARTING_POINT) if k in t.user_attrs})
            retried.add(t.number)
    study.set_user_attr("retried", sorted(retried))


def finished(study):
    import optuna

    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=done))


PRUNING_POINTS = 100  # trials report at percent of the budget, so different batch sizes compare


def objective_fn(base, space, stop, fixed):
    """Optuna's objective: train one trial's settings; after every iteration report the
    latest evaluation at the percent of the budget spent, and prune."""
    import optuna

    from trpo_tf.config import validate
    from trpo_tf.run.train import Trainer

    def objective(trial):
        if stop.signum is not None:  # a signal between trials: this one never started
            trial.set_user_attr("cut", True)
            raise KeyboardInterrupt
        start = trial.user_attrs.get(STARTING_POINT)
        # the starting point draws only the settings the space holds; the others (a linear
        # policy, gamma 0.9999, ...) keep the base run's values
        settings = suggest(space, trial, fixed if start is None else set(space) - set(start))
        retry = trial.user_attrs.get("logdir")
        logdir = retry or os.path.join(base.logdir, f"trial_{trial.number}")
        # a fresh trial never continues checkpoints left in its directory by an older study
        cfg = validate(dataclasses.replace(base, logdir=logdir, quiet=True, export_every=0,
                                           resume="auto" if retry else "never", **settings))
        trial.set_user_attr("logdir", logdir)
        trial.set_user_attr("flags", trial_flags(cfg))
        print(f"trial {trial.number}: training in {logdir} | {describe(settings)}", flush=True)

        def report(iterations_done, m):
            if trainer.last_eval == trainer.last_eval:
                trial.report(trainer.last_eval, int(PRUNING_POINTS * m["env_steps"] / cfg.steps))
                if trial.should_prune():
                    raise optuna.TrialPruned()

        trainer = Trainer(cfg)
        try:
            trainer.run(stop, report)
        except optuna.TrialPruned:
            print(f"trial {trial.number}: pruned (evaluation {trainer.last_eval:.1f})", flush=True)
            raise
        except KeyboardInterrupt:  # a second Ctrl-C: the trial's checkpoints are kept
            trial.set_user_attr("cut", True)
            raise
        except TrainingFault as err:
            print(f"trial {trial.number}: failed: {err}", flush=True)
            raise
        finally:
            trainer.close()
        steps = int(trainer.checkpointer.env_steps.numpy()) if cfg.checkpoint_every else cfg.steps
        if stop.signum is not None and steps < cfg.steps:
            trial.set_user_attr("cut", True)  # a signal cut the trial short: retried next time
            raise KeyboardInterrupt
        trial.set_user_attr("env_steps", steps)
        if trainer.last_eval != trainer.last_eval:
            raise ConfigError("the trial ended without an evaluation: --eval_every must be > 0")
        return trainer.last_eval

    return objective


def describe(settings):
    return " ".join(f"{k}={flag_value(v)}" for k, v in settings.items())


def study_settings(base, searched):
    """What every trial of a study shares (the env, method, budget, seed, the settings of the
    search space the user fixed: all but `searched` ...): JSON-able, recorded in the study; a
    study resumed with others would rank trials of different tasks together."""
    return {name: list(value) if isinstance(value, tuple) else value
            for name, value in dataclasses.asdict(base).items()
            if name not in TRIAL_ONLY + NOT_RESULTS and name not in searched}


def check_study_settings(study, settings, searched, logdir):
    """Record `settings` in a new study; ConfigError if an earlier one ran with others, or held
    fixed one that this command searches (`searched`: a study of PPO from before the space was
    the method's held its clip range)."""
    earlier = study.user_attrs.get("settings")
    if earlier is None:
        study.set_user_attr("settings", settings)
        return
    held = sorted(set(earlier) & set(searched))
    if held:
        name = held[0]
        raise ConfigError(
            f"the study in --logdir={logdir} held --{name}={flag_value(earlier[name])} fixed, "
            f"this command searches --{name}: give --{name}={flag_value(earlier[name])} to go "
            "on with it, or another --logdir for a new study")
    for name in sorted(set(earlier) | set(settings)):
        if name in earlier and name in settings and earlier[name] != settings[name]:
            raise ConfigError(
                f"the study in --logdir={logdir} was run with --{name}={flag_value(earlier[name])}, "
                f"this command gives --{name}={flag_value(settings[name])}: give the same "
                "settings to go on with it, or another --logdir for a new study")


def open_study(base, startup_trials):
    """The study in <logdir>/study.db (made if new); ConfigError if the file is not a study
    Optuna can open (damaged, truncated, something else)."""
    import optuna
    from urllib.parse import quote

    # a quoted path: '?', '#' or '%41' in a logdir are part of its name, not of the URL's syntax
    storage = f"sqlite:///{quote(os.path.abspath(os.path.join(base.logdir, STUDY_FILE)))}"
    try:
        # the sampler's seed moves on with the study, so a resumed study draws new settings
        earlier = optuna.create_study(study_name="trpo_tf", storage=storage,
                                      load_if_exists=True, direction="maximize")
        return optuna.create_study(
            study_name="trpo_tf", storage=storage, load_if_exists=True, direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=base.seed + len(earlier.trials),
                                               n_startup_trials=startup_trials),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=0))
    except Exception as err:  # SQLAlchemy / sqlite3 / Optuna on a file that is no study
        raise ConfigError(f"{os.path.join(base.logdir, STUDY_FILE)} cannot be opened as a study "
                          f"({first_line(err)}): move it away to start a new study") from None


def tune(base, trials, startup_trials, fixed=()):
    """Run the study until `trials` trials finished; `fixed`: the search space's fields held at the base
    run's values (the flags the user gave)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our lines, not Optuna's
    outputs.check_writable_dir(base.logdir, "--logdir")
    with outputs.lock_dir(base.logdir):  # a second tuner would fail this one's running trials
        study = open_study(base, startup_trials)
        space = search_space(base)
        searched = set(space) - set(fixed)
        check_study_settings(study, study_settings(base, searched), searched, base.logdir)
        retry_cut_trials(study)
        if not study.trials:  # trial 0 trains the base run itself (see objective_fn)
            point = starting_point(space, base, fixed)
            study.enqueue_trial(point, user_attrs={STARTING_POINT: sorted(point)})
        left = trials - finished(study)
        print(f"tuning {base.env}: {finished(study)} of {trials} trials done, {left} to run; study "
              f"{os.path.join(base.logdir, STUDY_FILE)}", flush=True)
        larger = [b for b in BATCH_STEPS if b > base.steps]
        if larger and "batch_steps" not in fixed:
            print(f"note: --steps={base.steps:,} is less than the batches of "
                  f"{', '.join(f'{b:,}' for b in larger)} steps trials may draw: such a trial "
                  "trains one batch, more than --steps (fix --batch_steps to avoid it)", flush=True)
        best_path = os.path.join(base.logdir, BEST_FILE)

        def after_trial(study, trial):
            if trial.state == optuna.trial.TrialState.COMPLETE:
                best = best_trial(study)
                print(f"trial {trial.number}: final evaluation {trial.value:.1f} (best: trial "
                      f"{best.number}, {best.value:.1f})", flush=True)
            if any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
                write_best(best_path, study)
            if finished(study) >= trials:
                study.stop()

        with StopOnSignal() as stop:
            while left > 0 and stop.signum is None:  # trials stopped by numerical faults are rerun
                study.optimize(objective_fn(base, space, stop, fixed), n_trials=left,
                               callbacks=[after_trial], catch=(TrainingFault,))
                left, before = trials - finished(study), left
                if left == before and stop.signum is None:
                    raise TrainingFault(f"{left} trials in a row failed (see the lines above)")
    if any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        best = best_trial(study)
        print(f"best: trial {best.number}, final evaluation {best.value:.1f}; settings in "
              f"{best_path}", flush=True)
    return study


def main(argv):
    launch.refuse_extra_arguments(argv)
    quiet_logging()

    def run():
        if FLAGS.trials < 1:
            raise ConfigError(f"--trials must be >= 1 (got {FLAGS.trials})")
        if FLAGS.startup_trials < 0:
            raise ConfigError(f"--startup_trials must be >= 0 (got {FLAGS.startup_trials})")
        if FLAGS.seeds != 1:
            raise ConfigError(f"--seeds={FLAGS.seeds}: a trial trains one seed (--seed); tune "
                              "on one seed, then compare seeds of best.cfg with trpo_tf.launch "
                              "--seeds")
        cfg = launch.config_from_flags()
        if not cfg.steps:
            raise ConfigError("--steps must be > 0: each trial trains that many env steps")
        if not cfg.eval_every:
            raise ConfigError("--eval_every must be > 0: trials are scored by their evaluations")
        given = launch.APPLIED_PRESET["given"]
        if "logdir" not in given:  # not the preset's training logdir
            cfg = dataclasses.replace(cfg, logdir=launch.tool_logdir("tune", cfg.env))
        check_run(cfg)
        space = search_space(cfg)
        fixed = [name for name in space if name in given]  # not searched
        if len(fixed) == len(space):
            raise ConfigError(f"your flags fix every setting the tuner searches ({', '.join(space)})"
                              ": leave some out")
        tune(cfg, FLAGS.trials, FLAGS.startup_trials, fixed)

    main_guard(run)


FLAGS_PARSER = launch.parse_flags_with_preset  # a preset goes under the command line's flags
