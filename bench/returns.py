"""The returns benchmark: an envs x seeds grid of training runs at one step budget, each with
the settings `python -m trpo_tf.launch --env=<env>` ships (the env's tuned preset, else the
generic defaults), then a CSV of final evaluation returns, learning curves (mean over seeds,
95% bootstrap band) and rliable's aggregate scores (IQM, stratified bootstrap 95% CIs).

    python bench/returns.py --envs=Hopper,Walker,HalfCheetah,Swimmer --seeds=5 --steps=1000000
    python bench/returns.py --smoke     # tiny, for the test suite

Resumable: a finished run (<out>/<env>/seed_<s>/finished.json) is skipped; a killed one
resumes from its checkpoints. Each run is its own `trpo_tf.launch` process; SIGTERM or Ctrl-C
ends it with this command (it resumes from its last checkpoint). The CSV, curves and summary cover every
finished run under --out with the same --steps and --flag's: a command that adds seeds
(--first_seed) or envs reports the whole grid.
"""
import csv
import glob
import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags, logging  # noqa: E402

from trpo_tf.errors import ConfigError  # noqa: E402
from trpo_tf.run import outputs  # noqa: E402

flags.DEFINE_list("envs", ["Hopper", "Walker", "HalfCheetah", "Swimmer"], "Short names or gymnasium ids.")
flags.DEFINE_integer("seeds", 5, "Seeds first_seed .. first_seed + seeds - 1 per env.")
flags.DEFINE_integer("first_seed", 0, "The first seed (to rerun or add seeds of a grid: the "
                     "report covers every finished run of the grid).")
flags.DEFINE_integer("steps", 1_000_000, "Environment steps per run (--steps of trpo_tf.launch).")
flags.DEFINE_string("out", "runs/returns", "Runs, returns.csv, returns.png and summary.md go here.")
flags.DEFINE_multi_string("flag", [], "An extra trpo_tf.launch flag for every run, e.g. "
                          "--flag=eval_episodes=10 (repeat it for more).")
flags.DEFINE_integer("bootstrap", 2000, "Bootstrap resamples for the bands and intervals.")
flags.DEFINE_boolean("smoke", False, "Tiny grid (Cartpole, 2 seeds unless --seeds, 3K steps) "
                     "under --out.")
FLAGS = flags.FLAGS

FINISHED = "finished.json"
# rl-baselines3-zoo's TRPO at 1M steps (../shared/paper/appendix-facts.md): the scores IQM is
# normalised by, where an env has one.
REFERENCE = {"Hopper-v5": 3618.0, "Walker2d-v5": 4933.0, "HalfCheetah-v5": 1786.0,
             "Swimmer-v5": 366.0, "Ant-v5": 4982.0}


def fail(message):
    """A bad flag or an --out in use: one line, exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def run_dir(out, env, seed):
    return os.path.join(out, env.replace("/", "_"), f"seed_{seed}")


def train_run(env, seed, steps, logdir, extra):
    """One run to completion (resuming if it was cut short) -> its wall seconds over every
    invocation (WALL_FILE). A signal that stops this command (SIGTERM, Ctrl-C) ends the run
    too (subprocess.run kills it: it resumes from its last checkpoint)."""
    cmd = [sys.executable, "-m", "trpo_tf.launch", f"--env={env}", f"--seed={seed}",
           f"--steps={steps}", f"--logdir={logdir}", "--quiet", *(f"--{kv}" for kv in extra)]
    tic = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    finally:
        wall = add_wall_seconds(logdir, time.perf_counter() - tic)
    if proc.returncode != 0:
        raise SystemExit(f"{env} seed {seed} failed (exit {proc.returncode}): "
                         f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ''}")
    return wall


WALL_FILE = "bench_wall_seconds"


def add_wall_seconds(logdir, seconds):
    """Add one invocation's `seconds` to the run's total in `logdir` -> the total."""
    path = os.path.join(logdir, WALL_FILE)
    total = seconds + (float(open(path).read()) if os.path.isfile(path) else 0.0)
    if os.path.isdir(logdir):
        with open(path, "w") as f:
            f.write(repr(total))
    return total


def stop_on_sigterm(signum, frame):
    """SIGTERM (a scheduler's, `timeout`'s) ends this command as Ctrl-C does."""
    raise KeyboardInterrupt


def finished_record(env, seed, steps, extra, logdir, curve, wall):
    """The finished.json record of a run whose learning curve is `curve`; a run that did not
    spend the budget (launch exits 0 when a signal stops it early too) is not finished."""
    steps_done, evals = curve
    if not len(evals):
        raise SystemExit(f"{env} seed {seed}: no evaluation in {logdir} (is --eval_every 0?)")
    if steps_done[-1] < steps:
        raise SystemExit(f"{env} seed {seed} stopped at {int(steps_done[-1]):,} of {steps:,} "
                         "steps: run the same command to go on")
    record = {"env": env, "seed": seed, "steps": int(steps_done[-1]),
              "final_eval_return": float(evals[-1]), "wall_seconds": wall,
              "budget": steps, "flags": list(extra)}
    path = os.path.join(logdir, FINISHED)
    with open(path + ".tmp", "w") as f:  # whole or absent: a signal may come while it is written
        json.dump(record, f)
    os.replace(path + ".tmp", path)
    return record


def same_grid(record, steps, extra):
    """Whether a finished run's record was trained with this budget and these flags."""
    return (record.get("budget"), record.get("flags")) == (steps, list(extra))


def grid_runs(out, steps, extra, envs):
    """[(record, logdir)] of every finished run under `out` with this budget and these flags:
    the envs of `envs` first, then the grid's others; seeds in order."""
    found = []
    for path in glob.glob(os.path.join(out, "*", "seed_*", FINISHED)):
        with open(path) as f:
            record = json.load(f)
        if same_grid(record, steps, extra):
            found.append((record, os.path.dirname(path)))
    order = {env: i for i, env in enumerate(envs)}
    return sorted(found, key=lambda run: (order.get(run[0]["env"], len(order)), run[0]["env"],
                                          run[0]["seed"]))


def reference(env):
    """rl-zoo3's score for this env, or None."""
    from trpo_tf.envs import resolve_env

    return REFERENCE.get(resolve_env(env).gym_id)


def learning_curve(logdir):
    """(env steps, evaluation returns) of a run, in step order."""
    import numpy as np

    from trpo_tf.tools.figures import read_scalars

    evals, steps = read_scalars(logdir, "Eval/ReturnMean"), read_scalars(logdir, "Train/EnvSteps")
    its = sorted(k for k in evals if k in steps)
    return np.array([steps[k] for k in its], float), np.array([evals[k] for k in its], float)


def bootstrap_band(values, reps, rng):
    """95% bootstrap interval of the mean over seeds, per column of values [seeds, points]."""
    import numpy as np

    idx = rng.integers(0, values.shape[0], (reps, values.shape[0]))
    means = values[idx].mean(1)
    return np.percentile(means, 2.5, 0), np.percentile(means, 97.5, 0)


def draw_curves(curves, path, reps):
    """One panel per env: mean evaluation return over seeds against env steps, 95% band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rng = np.random.default_rng(0)
    fig, axes = plt.subplots(1, len(curves), figsize=(4 * len(curves), 3.2), squeeze=False)
    for ax, (env, runs) in zip(axes[0], curves.items()):
        # from the first step every seed was evaluated at: nothing is drawn before it
        grid = np.linspace(max(s[0] for s, _ in runs), min(s[-1] for s, _ in runs), 50)
        values = np.array([np.interp(grid, s, v) for s, v in runs])
        lo, hi = bootstrap_band(values, reps, rng)
        ax.plot(grid, values.mean(0), color="C0")
        ax.fill_between(grid, lo, hi, color="C0", alpha=0.25)
        ref = reference(env)
        if ref:
            ax.axhline(ref, color="gray", linestyle="--", linewidth=1, label="rl-zoo3's TRPO at 1M")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_title(f"{env} ({len(runs)} seeds)")
        ax.set_xlabel("env steps")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("deterministic evaluation return")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def aggregate_scores(records, reps):
    """rliable: per-env IQM over that env's seeds and, where every env has a REFERENCE score,
    the IQM of normalised scores across envs (over the first n seeds of each, n the fewest any
    env has); each with a stratified-bootstrap 95% CI. Std: over seeds, ddof=1."""
    import numpy as np
    from rliable import library as rly
    from rliable import metrics

    from trpo_tf.tools.figures import seed_std

    envs = list(dict.fromkeys(r["env"] for r in records))
    scores = {e: np.array([r["final_eval_return"] for r in records if r["env"] == e]) for e in envs}
    iqm = lambda x: np.array([metrics.aggregate_iqm(x)])  # noqa: E731
    rows = []
    for env, x in scores.items():
        point, ci = rly.get_interval_estimates({"trpo_tf": x[:, None]}, iqm, reps=reps)
        rows.append((env, len(x), float(x.mean()), float(seed_std(x)),
                     float(point["trpo_tf"][0]), *map(float, ci["trpo_tf"][:, 0])))
    refs = [reference(e) for e in envs]
    normalised = None
    if all(refs):
        seeds = min(len(x) for x in scores.values())
        table = np.stack([scores[e][:seeds] for e in envs], 1)  # [runs, tasks]
        point, ci = rly.get_interval_estimates({"trpo_tf": table / np.array(refs)}, iqm, reps=reps)
        normalised = (float(point["trpo_tf"][0]), *map(float, ci["trpo_tf"][:, 0]), seeds)
    return rows, normalised


def summary(rows, normalised, steps, best):
    """The markdown table; `best`: {env: mean over seeds of the best evaluation during training}
    (Tianshou's protocol, for comparison only)."""
    lines = ["| env | seeds | final: mean ± std | final: IQM [95% CI] | best during training (mean) "
             "| rl-zoo3 (SB3-contrib) |", "|---|---|---|---|---|---|"]
    for env, n, mean, std, iqm, lo, hi in rows:
        ref = reference(env)
        lines.append(f"| {env} | {n} | {mean:,.0f} ± {std:,.0f} | {iqm:,.0f} [{lo:,.0f}, {hi:,.0f}] "
                     f"| {best[env]:,.0f} | {f'{ref:,.0f}' if ref else '-'} |")
    if normalised:
        lines.append(f"\nIQM of final scores normalised by rl-zoo3's: {normalised[0]:.2f} "
                     f"[{normalised[1]:.2f}, {normalised[2]:.2f}] (1.0 = rl-zoo3's TRPO; "
                     f"{normalised[3]} seeds of each env)")
    lines.append(f"\nFinal: the deterministic evaluation return at {steps:,} env steps; std over "
                 "seeds with ddof=1.")
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # rliable logs each estimate at INFO
    envs, seeds, steps, extra = FLAGS.envs, FLAGS.seeds, FLAGS.steps, FLAGS.flag
    out = os.path.abspath(FLAGS.out)  # the runs are launched from the repository's root
    reps = FLAGS.bootstrap
    if FLAGS.smoke:
        envs, steps, reps = ["Cartpole"], 3000, 200
        seeds = seeds if FLAGS["seeds"].present else 2
        extra = [*extra, "batch_steps=1000", "eval_every=1", "eval_episodes=2"]
    if seeds < 1 or steps < 1 or not envs or FLAGS.first_seed < 0:
        fail("--seeds and --steps must be >= 1, --first_seed >= 0 and --envs non-empty")
    try:  # the grid's directory is this command's while it runs
        outputs.check_writable_dir(out, "--out")
        lock = outputs.lock_dir(out, "--out")
    except ConfigError as err:
        fail(err)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    with lock:  # released however the grid ends (a stop, a refused rerun)
        try:
            for env in envs:
                for seed in range(FLAGS.first_seed, FLAGS.first_seed + seeds):
                    run_grid_cell(out, env, seed, steps, extra)
        except KeyboardInterrupt:
            print("error: interrupted; the run in progress stopped with this command: the "
                  "same command goes on from its last checkpoint", file=sys.stderr)
            sys.exit(130)
        records, curves = [], {}
        for record, logdir in grid_runs(out, steps, extra, envs):
            records.append(record)
            curves.setdefault(record["env"], []).append(learning_curve(logdir))
        with open(os.path.join(out, "returns.csv"), "w", newline="") as f:
            writer = csv.DictWriter(f, ["env", "seed", "steps", "final_eval_return", "wall_seconds"],
                                    extrasaction="ignore")
            writer.writeheader()
            writer.writerows(records)
        draw_curves(curves, os.path.join(out, "returns.png"), reps)
        best = {env: sum(float(v.max()) for _, v in runs) / len(runs)
                for env, runs in curves.items()}
        text = summary(*aggregate_scores(records, reps), steps, best)
        with open(os.path.join(out, "summary.md"), "w") as f:
            f.write(text)
        print(text + f"wrote {out}/returns.csv, returns.png, summary.md ({len(records)} runs)",
              flush=True)


def run_grid_cell(out, env, seed, steps, extra):
    """Train `env`'s `seed` unless it finished earlier with this budget and these flags (a run
    that finished with others is refused: they would mix in one report)."""
    logdir = run_dir(out, env, seed)
    done = os.path.join(logdir, FINISHED)
    if os.path.isfile(done):
        with open(done) as f:
            record = json.load(f)
        if not same_grid(record, steps, extra):
            raise SystemExit(f"{logdir} finished with --steps={record.get('budget')} and flags "
                             f"{record.get('flags')}: use another --out for --steps={steps} and "
                             f"flags {list(extra)}")
        print(f"{env} seed {seed}: finished earlier, final evaluation "
              f"{record['final_eval_return']:,.1f}", flush=True)
        return
    print(f"{env} seed {seed}: training {steps:,} steps in {logdir}", flush=True)
    wall = train_run(env, seed, steps, logdir, extra)
    record = finished_record(env, seed, steps, extra, logdir, learning_curve(logdir), wall)
    print(f"{env} seed {seed}: final evaluation {record['final_eval_return']:,.1f} "
          f"({record['wall_seconds']:.0f} s)", flush=True)


if __name__ == "__main__":
    app.run(main)
