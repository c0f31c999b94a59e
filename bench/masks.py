"""The maze of tests/mask_envs.py trained with and without action masks: the training return
(mean of the batch's finished episodes) after each of --iterations iterations of 1,024 steps,
for seeds 0 .. --seeds - 1, both ways (README, "Action masks"). No --smoke:
tests/test_masks.py runs the same comparison on one seed.

    python bench/masks.py --iterations=10 --seeds=3
"""
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

import mask_envs  # noqa: E402,F401  (registers MaskedGrid-v0)
from bench.common import write_result  # noqa: E402

flags.DEFINE_integer("iterations", 10, "Iterations of 1,024 steps per run.", lower_bound=1)
flags.DEFINE_integer("seeds", 3, "Seeds 0 .. N-1, each trained masked and unmasked.", lower_bound=1)
flags.DEFINE_string("out", "bench/results.jsonl", "Append results here ('' = don't).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    from trpo_tf.cli import quiet_logging
    from trpo_tf.config import Config
    from trpo_tf.run.train import train

    quiet_logging()
    curves = {}
    for masks in ("auto", "off"):
        for seed in range(FLAGS.seeds):
            with tempfile.TemporaryDirectory() as logdir:
                history = train(Config(env="MaskedGrid-v0", action_masks=masks, seed=seed,
                                       iterations=FLAGS.iterations, batch_steps=1024, num_envs=4,
                                       eval_every=0, quiet=True, logdir=logdir))
            curves[f"{masks}/{seed}"] = curve = [round(m["return_mean"], 3) for m in history]
            print(f"--action_masks={masks} seed {seed}: {' '.join(f'{r:.2f}' for r in curve)}",
                  flush=True)
    write_result(FLAGS.out, {"bench": "masks", "env": "MaskedGrid-v0", "curves": curves})


if __name__ == "__main__":
    app.run(main)
