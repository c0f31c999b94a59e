"""python -m trpo_tf.sweep --flagfile=launch/paper/figure4_quick/cartpole_natural_gradient.cfg \
    --npg_steps=0.01,0.03,0.1,0.3,1 --seeds=2 --logdir=runs/npg_sweep/cartpole

The natural gradient's fixed step swept as section 8.1 did (factors of three), keeping the
best by final performance: trains every value (all of launch's flags apply) in
<logdir>/npg_<value>[/seed_<s>] and prints each value's final return (the mean of the last
--final_window iterations, over seeds) and the best one.
"""
import dataclasses
import functools

from absl import flags

from trpo_tf.cli import StopOnSignal, main_guard, quiet_logging
from trpo_tf.config import ConfigError
import trpo_tf.launch as launch

flags.DEFINE_list("npg_steps", ["0.003", "0.01", "0.03", "0.1", "0.3", "1"],
                  "Fixed natural-gradient steps to try (factors of about three).")
flags.DEFINE_integer("final_window", 5, "Iterations averaged for the final return (of each batch's mean episode return, Train/EpisodeReturnMean).", lower_bound=1)
FLAGS = flags.FLAGS
ALGO = "natural_gradient"  # what the sweep trains, whatever --algo says


def final_return(logdir, window):
    """The mean training return of a run's last `window` iterations, read from its event files
    (so a run that finished in an earlier sweep counts as well), or -inf if it has none."""
    from trpo_tf.run.summaries import TAGS
    from trpo_tf.tools.figures import read_scalars

    returns = read_scalars(logdir, TAGS["return_mean"])
    tail = [returns[k] for k in sorted(returns) if returns[k] == returns[k]][-window:]
    return sum(tail) / len(tail) if tail else float("-inf")


def main(argv):
    del argv
    quiet_logging()

    def sweep():
        try:
            steps = [float(v) for v in FLAGS.npg_steps]
        except ValueError:
            raise ConfigError(f"--npg_steps must be comma-separated numbers (got {FLAGS.npg_steps})")
        if not steps:
            raise ConfigError("--npg_steps is empty: give the steps to try, e.g. 0.01,0.03,0.1")
        base = dataclasses.replace(launch.config_from_flags(), algo=ALGO)
        if not FLAGS["logdir"].present:  # not inside runs/default, the default training run
            base = dataclasses.replace(base, logdir=launch.tool_logdir("npg_sweep", base.env))
        configs = {v: launch.seed_configs(
            launch.validate(dataclasses.replace(
                base, npg_step=v, logdir=f"{base.logdir}/npg_{v:g}",
                export_dir=base.export_dir and f"{base.export_dir}/npg_{v:g}")),
            FLAGS.seeds) for v in steps}
        from trpo_tf.run import outputs

        outputs.check_writable_dir(base.logdir, "--logdir")
        with outputs.lock_dir(base.logdir):  # the sweep's runs are this command's
            from trpo_tf.run.train import train

            results = {}
            with StopOnSignal(not base.quiet) as stop:  # one Ctrl-C stops the sweep, not one value
                for v, runs in configs.items():
                    finals = []
                    for cfg in runs:
                        if stop.signum is not None:
                            break
                        print(f"== npg_step {v:g}, seed {cfg.seed} -> {cfg.logdir}", flush=True)
                        train(cfg, stop)
                        finals.append(final_return(cfg.logdir, FLAGS.final_window))
                    if stop.signum is not None:
                        print("sweep stopped: run the same command to go on (finished runs are "
                              "read back, a cut one resumes)", flush=True)
                        return
                    results[v] = sum(finals) / len(finals)
        print("| npg_step | final return |\n|---|---|")
        for v, r in results.items():
            print(f"| {v:g} | {r:.1f} |")
        best = max(results, key=results.get)
        print(f"best --npg_step={best:g} (final return {results[best]:.1f})", flush=True)

    main_guard(sweep)


# the shipped flagfiles from any directory; the notes judge flags against what it trains
FLAGS_PARSER = functools.partial(launch.parse_flags_as_given, algo=ALGO)
