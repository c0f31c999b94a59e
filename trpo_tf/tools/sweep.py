"""python -m trpo_tf.sweep --flagfile=launch/paper/figure4_quick/cartpole_natural_gradient.cfg \
    --npg_steps=0.01,0.03,0.1,0.3,1 --seeds=2 --logdir=runs/npg_sweep/cartpole

The natural gradient's fixed step swept as section 8.1 did (factors of three), keeping the
best by final performance: trains every value (all of launch's flags apply) in
<logdir>/npg_<value>[/seed_<s>] and prints each value's final return (the mean of the last
--final_window iterations, over seeds) and the best one.
"""
import dataclasses

from absl import flags

from trpo_tf.cli import main_guard, quiet_logging
from trpo_tf.config import ConfigError
import trpo_tf.launch as launch

flags.DEFINE_list("npg_steps", ["0.003", "0.01", "0.03", "0.1", "0.3", "1"],
                  "Fixed natural-gradient steps to try (factors of about three).")
flags.DEFINE_integer("final_window", 5, "Iterations averaged for the final return.", lower_bound=1)
FLAGS = flags.FLAGS


def final_return(history, window):
    returns = [m["return_mean"] for m in history if m.get("return_mean") == m.get("return_mean")]
    tail = returns[-window:]
    return sum(tail) / len(tail) if tail else float("-inf")


def main(argv):
    del argv
    quiet_logging()

    def sweep():
        try:
            steps = [float(v) for v in FLAGS.npg_steps]
        except ValueError:
            raise ConfigError(f"--npg_steps must be comma-separated numbers (got {FLAGS.npg_steps})")
        base = dataclasses.replace(launch.config_from_flags(), algo="natural_gradient")
        configs = {v: launch.seed_configs(
            launch.validate(dataclasses.replace(base, npg_step=v, logdir=f"{base.logdir}/npg_{v:g}")),
            FLAGS.seeds) for v in steps}
        from trpo_tf.run.train import train

        results = {}
        for v, runs in configs.items():
            finals = []
            for cfg in runs:
                print(f"== npg_step {v:g}, seed {cfg.seed} -> {cfg.logdir}", flush=True)
                finals.append(final_return(train(cfg), FLAGS.final_window))
            results[v] = sum(finals) / len(finals)
        print("| npg_step | final return |\n|---|---|")
        for v, r in results.items():
            print(f"| {v:g} | {r:.1f} |")
        best = max(results, key=results.get)
        print(f"best --npg_step={best:g} (final return {results[best]:.1f})", flush=True)

    main_guard(sweep)

