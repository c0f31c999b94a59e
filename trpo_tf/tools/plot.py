"""python -m trpo_tf.plot --logdir=runs/figure4 --out=figure4.png,figure4.svg

Figure 4-style learning curves from TensorBoard event files: one panel per task, one line
per method, the mean over the seeds that have each iteration with a band of one standard
deviation (ddof=1). Runs are found under --logdir as <task>/<method>[/...]/[seed_<s>/]events.*:
the first directory names the panel, the rest (less seed_<s>) the line. Also prints each
line's final value (the mean of each seed's last --final_window iterations, mean +- std over
seeds) and names the lines whose seeds end at different iterations.
"""
import os
import sys

from absl import flags

from trpo_tf.cli import main_guard, quiet_logging
from trpo_tf.errors import ConfigError
from trpo_tf.tools.figures import (curves, draw, final_values, find_runs, mean_and_spread,
                                   uneven_seeds)

flags.DEFINE_string("logdir", None, "Directory holding the runs (searched recursively).")
flags.DEFINE_list("out", ["figure.png"], "Output files; the extension picks the format (png, svg, pdf).")
flags.DEFINE_string("tag", "Train/EpisodeReturnMean", "Scalar to plot against the iteration.")
flags.DEFINE_boolean("cost", False, "Plot the cost (minus the tag's value), as the paper's Figure 4 does.")
flags.DEFINE_integer("final_window", 5, "Iterations averaged for the printed final value.", lower_bound=1)
flags.DEFINE_string("title", "", "Figure title.")
FLAGS = flags.FLAGS

def main(argv):
    del argv
    quiet_logging()

    def plot():
        if not FLAGS.logdir:
            raise ConfigError("--logdir is required: the directory holding the runs")
        if not os.path.isdir(FLAGS.logdir):
            raise ConfigError(f"--logdir={FLAGS.logdir!r} is not a directory")
        if not FLAGS.out:
            raise ConfigError("--out is empty: name at least one figure file (e.g. figure.png)")
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        formats = FigureCanvasAgg.get_supported_filetypes()
        for out in FLAGS.out:
            if os.path.splitext(out)[1].lstrip(".").lower() not in formats:
                raise ConfigError(f"--out={out}: the extension picks the format, one of "
                                  f"{', '.join(sorted(formats))}")
        runs = find_runs(FLAGS.logdir)
        missing = []
        data = curves(runs, FLAGS.tag, -1.0 if FLAGS.cost else 1.0, missing)
        if not data:
            raise ConfigError(f"no event files with {FLAGS.tag!r} under --logdir={FLAGS.logdir}")
        if missing:  # e.g. runs whose episodes had not ended yet: no return to draw
            print(f"note: {len(missing)} run(s) without {FLAGS.tag!r} left out: "
                  f"{', '.join(os.path.relpath(d, FLAGS.logdir) for d in missing)}",
                  file=sys.stderr)
        for note in uneven_seeds(data):  # a seed still running, or stopped early
            print(f"note: {note} (past the first end the line averages fewer seeds; the final "
                  "value takes each seed's own last iterations)", file=sys.stderr)
        ylabel = f"cost (-{FLAGS.tag})" if FLAGS.cost else FLAGS.tag
        draw(data, FLAGS.out, ylabel, FLAGS.title)
        print(f"| task | method | seeds | final {ylabel} (each seed's last {FLAGS.final_window} "
              "its, or as many as it has) |")
        print("|---|---|---|---|")
        for panel, line, n, mean, std in final_values(data, FLAGS.final_window):
            print(f"| {panel} | {line} | {n} | {mean_and_spread(mean, std, n)} |")
        print(f"wrote {', '.join(FLAGS.out)}", flush=True)

    main_guard(plot)

