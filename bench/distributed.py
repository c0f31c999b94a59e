"""Sampling with 0, 1, 2, ... Ray workers: steps/s, and the per-iteration overhead of the
distribution (the weights' broadcast, the shares' transfer and concatenation) against batch size.

    python bench/distributed.py --env=Hopper --workers=0,1,2 --batch_steps=2000,10000,50000
    python bench/distributed.py --smoke

For each worker count and batch size it times --repeats batches after one untimed warm-up
(Ray and the workers start, the first batch resets the envs). With workers, the overhead of an
iteration is its wall time minus the slowest share's own sampling time (time_policy +
time_env measured inside the worker); in-process, that sum is the iteration. The README's
scaling model is fitted to these numbers.
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

from bench.common import write_result  # noqa: E402
from trpo_tf.config import Config, validate  # noqa: E402
from trpo_tf.run.train import Trainer  # noqa: E402

flags.DEFINE_string("env", "Hopper", "Short name or gymnasium id.")
flags.DEFINE_list("workers", ["0", "1", "2"], "Worker counts to measure (0 = in-process).")
flags.DEFINE_list("batch_steps", ["2000", "10000", "50000"], "Batch sizes to measure.")
flags.DEFINE_integer("num_envs", 8, "Envs per worker (and in-process).")
flags.DEFINE_integer("repeats", 5, "Timed batches per setting.")
flags.DEFINE_boolean("smoke", False, "Tiny run (the test suite uses it).")
flags.DEFINE_string("out", "bench/results.jsonl", "Append results here ('' = don't).")
FLAGS = flags.FLAGS


def measure(cfg, repeats):
    """-> (steps/s, median wall s, median overhead s) over `repeats` batches."""
    trainer = Trainer(cfg)
    try:
        trainer.sampler.sample(trainer.policy.numpy_fn())  # warm-up
        walls, overheads, steps = [], [], 0
        for _ in range(repeats):
            t0 = time.perf_counter()
            batch = trainer.sampler.sample(trainer.policy.numpy_fn())
            wall = time.perf_counter() - t0
            walls.append(wall)
            overheads.append(wall - float(batch["time_policy"]) - float(batch["time_env"]))
            steps += int(batch["sim_steps"])
        return steps / sum(walls), statistics.median(walls), statistics.median(overheads)
    finally:
        trainer.close()


def main(argv):
    del argv
    workers = [0, 1] if FLAGS.smoke else [int(w) for w in FLAGS.workers]
    sizes = [400] if FLAGS.smoke else [int(b) for b in FLAGS.batch_steps]
    repeats = 1 if FLAGS.smoke else FLAGS.repeats
    env = "Cartpole" if FLAGS.smoke else FLAGS.env
    print("| workers | batch steps | steps/s | s per batch | overhead s |")
    print("|---|---|---|---|---|")
    rows = []
    for w in workers:
        for size in sizes:
            cfg = validate(Config(env=env, workers=w, batch_steps=size, num_envs=FLAGS.num_envs,
                                  env_backend="gymnasium", eval_every=0, checkpoint_every=0,
                                  logdir=f"/tmp/trpo_tf_bench_distributed/{w}_{size}",
                                  resume="never", quiet=True))
            rate, wall, overhead = measure(cfg, repeats)
            rows.append({"workers": w, "batch_steps": size, "steps_per_sec": rate,
                         "seconds": wall, "overhead_seconds": overhead})
            print(f"| {w} | {size:,} | {rate:,.0f} | {wall:.3f} | {overhead:.3f} |", flush=True)
    write_result("" if FLAGS.smoke else FLAGS.out,
                 {"bench": "distributed", "env": env, "num_envs": FLAGS.num_envs, "rows": rows})


if __name__ == "__main__":
    app.run(main)
