"""A partially observed task (tests/pomdp_envs.py: CartPole-v1 seeing only the cart's position
and the pole's angle) trained with the feed-forward policy, with a recurrent one
(--policy_rnn=gru) and an MLP value baseline, and with both recurrent (--value_rnn=auto): for
seeds 0 .. --seeds - 1 each way, --iterations iterations of 2,048 steps from 16 envs, then a
table of the final deterministic evaluation (10 episodes), the training return (the mean of
the last 100 episodes) and the policy update's and value fit's seconds per iteration (the
mean over iterations 2 on: the first traces and compiles) (README, "Recurrent policies"). No
--smoke: tests/test_recurrent.py runs the same comparison, shorter, on one seed.

    python bench/pomdp.py --iterations=25 --seeds=3
"""
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

import pomdp_envs  # noqa: E402,F401  (registers CartPoleNoVelocity-v1)
from bench.common import write_result  # noqa: E402

ENV = "CartPoleNoVelocity-v1"
POLICIES = {"MLP (64, 64)": dict(policy_rnn="none"),
            "GRU 32, then (64, 64); MLP value": dict(policy_rnn="gru", policy_rnn_units=32,
                                                      value_rnn="none"),
            "GRU 32, then (64, 64); GRU 32 value": dict(policy_rnn="gru", policy_rnn_units=32,
                                                         value_rnn="auto")}
flags.DEFINE_integer("iterations", 25, "Iterations of 2,048 steps per run.", lower_bound=1)
flags.DEFINE_integer("seeds", 3, "Seeds 0 .. N-1, each trained with both policies.", lower_bound=1)
flags.DEFINE_float("max_kl", 0.03, "delta of every run.")
flags.DEFINE_string("out", "bench/results.jsonl", "Append results here ('' = don't).")
FLAGS = flags.FLAGS


def train_one(seed, settings):
    """(final evaluation return, last-100 training return, seconds, update and value fit
    seconds per iteration after the first) of one run."""
    from trpo_tf.config import Config, validate
    from trpo_tf.run.train import train

    with tempfile.TemporaryDirectory() as logdir:
        t0 = time.perf_counter()
        history = train(validate(Config(
            env=ENV, seed=seed, iterations=FLAGS.iterations, batch_steps=2048, num_envs=16,
            max_kl=FLAGS.max_kl, eval_every=FLAGS.iterations, eval_episodes=10, quiet=True,
            logdir=logdir, **settings)))
    return (history[-1]["eval_return_mean"], history[-1]["return_rolling"],
            time.perf_counter() - t0, mean_after_first(history, "time_update"),
            mean_after_first(history, "time_value"))


def mean_after_first(history, key):
    """The mean of a metric over the iterations after the first (which traces and compiles)."""
    values = [m[key] for m in history[1:]] or [history[0][key]]
    return sum(values) / len(values)


def main(argv):
    del argv
    from trpo_tf.cli import quiet_logging

    quiet_logging()
    results = {name: [train_one(seed, settings) for seed in range(FLAGS.seeds)]
               for name, settings in POLICIES.items()}
    print(f"{ENV}, {FLAGS.iterations} iterations x 2,048 steps, --max_kl={FLAGS.max_kl}, "
          f"seeds 0-{FLAGS.seeds - 1}")
    print("| policy | final evaluation (10 episodes) per seed | mean | training return "
          "(last 100 episodes) per seed | seconds per run | update, value fit s/iteration |")
    print("|---|---|---|---|---|---|")
    mean = lambda xs: sum(xs) / len(xs)
    for name, runs in results.items():
        evals, rolling, seconds, update, value = zip(*runs)
        print(f"| {name} | {', '.join(f'{r:.1f}' for r in evals)} | "
              f"**{mean(evals):.1f}** | {', '.join(f'{r:.1f}' for r in rolling)} | "
              f"{mean(seconds):.0f} | {mean(update):.3f}, {mean(value):.3f} |")
    write_result(FLAGS.out, {"bench": "pomdp", "env": ENV, "iterations": FLAGS.iterations,
                             "results": {name: [list(r) for r in runs]
                                         for name, runs in results.items()}})


if __name__ == "__main__":
    app.run(main)
