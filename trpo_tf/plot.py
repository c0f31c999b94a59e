"""python -m trpo_tf.plot --logdir=runs/figure4 --out=figure4.png,figure4.svg

Figure 4-style learning curves from TensorBoard event files: one panel per task, one line
per method, the mean over seeds with a band of one standard deviation. Runs are found under
--logdir as <task>/<method>[/...]/[seed_<s>/]events.*: the first directory names the panel,
the rest (less seed_<s>) the line. Also prints each line's final value (mean of the last
--final_window iterations, mean +- std over seeds).
"""
import collections
import os
import re

from absl import app, flags

from trpo_tf.cli import main_guard, parse_flags, quiet_logging
from trpo_tf.errors import ConfigError

flags.DEFINE_string("logdir", None, "Directory holding the runs (searched recursively).")
flags.DEFINE_list("out", ["figure.png"], "Output files; the extension picks the format (png, svg, pdf).")
flags.DEFINE_string("tag", "Train/EpisodeReturnMean", "Scalar to plot against the iteration.")
flags.DEFINE_boolean("cost", False, "Plot the cost (minus the tag's value), as the paper's Figure 4 does.")
flags.DEFINE_integer("final_window", 5, "Iterations averaged for the printed final value.")
flags.DEFINE_string("title", "", "Figure title.")
FLAGS = flags.FLAGS

SEED_DIR = re.compile(r"seed_\d+$")


def read_scalars(run_dir, tag):
    """{step: value} of `tag` over a run directory's event files (later files win)."""
    import tensorflow as tf

    from trpo_tf.summaries import event_files, read_events

    values = {}
    for path in event_files(run_dir):
        for event in read_events(path):
            for v in event.summary.value:
                if v.tag == tag:
                    values[event.step] = (float(tf.make_ndarray(v.tensor)) if v.HasField("tensor")
                                          else v.simple_value)
    return values


def find_runs(logdir):
    """{(panel, line): [run dirs]} for every directory under logdir with event files."""
    runs = collections.defaultdict(list)
    for root, _, files in os.walk(logdir, followlinks=True):
        if not any(f.startswith("events.out.tfevents.") for f in files):
            continue
        parts = os.path.relpath(root, logdir).split(os.sep)
        if SEED_DIR.match(parts[-1]):
            parts = parts[:-1]
        parts = [p for p in parts if p != "."]
        if len(parts) >= 2:
            key = (parts[0], "/".join(parts[1:]))
        else:
            key = (os.path.basename(os.path.abspath(logdir)), parts[0] if parts else "run")
        runs[key].append(root)
    return dict(runs)


def curves(runs, tag, sign=1.0):
    """{(panel, line): (steps, [seeds x steps] values)} on the steps every seed has."""
    import numpy as np

    out = {}
    for key, dirs in sorted(runs.items()):
        series = [read_scalars(d, tag) for d in sorted(dirs)]
        series = [s for s in series if s]
        if not series:
            continue
        steps = sorted(set.intersection(*(set(s) for s in series)))
        out[key] = (np.asarray(steps), sign * np.asarray([[s[t] for t in steps] for s in series]))
    return out


def final_values(data, window):
    """[(panel, line, seeds, mean, std)] of the mean of each seed's last `window` points."""
    rows = []
    for (panel, line), (_, values) in data.items():
        per_seed = values[:, -window:].mean(1)
        rows.append((panel, line, len(per_seed), float(per_seed.mean()), float(per_seed.std())))
    return rows


def draw(data, outputs, ylabel, title=""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({panel for panel, _ in data})
    lines = sorted({line for _, line in data})
    colors = {line: plt.get_cmap("tab10")(i % 10) for i, line in enumerate(lines)}
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for line in lines:
            if (panel, line) not in data:
                continue
            steps, values = data[(panel, line)]
            mean, std = values.mean(0), values.std(0)
            ax.plot(steps, mean, color=colors[line], label=f"{line} ({len(values)})", lw=1.6)
            ax.fill_between(steps, mean - std, mean + std, color=colors[line], alpha=0.18, lw=0)
        ax.set_title(panel)
        ax.set_xlabel("policy iteration")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="best", title="method (seeds)", title_fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    for path in outputs:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    del argv
    quiet_logging()

    def plot():
        if not FLAGS.logdir or not os.path.isdir(FLAGS.logdir):
            raise ConfigError(f"--logdir={FLAGS.logdir!r} is not a directory")
        runs = find_runs(FLAGS.logdir)
        data = curves(runs, FLAGS.tag, -1.0 if FLAGS.cost else 1.0)
        if not data:
            raise ConfigError(f"no event files with {FLAGS.tag!r} under --logdir={FLAGS.logdir}")
        ylabel = f"cost (-{FLAGS.tag})" if FLAGS.cost else FLAGS.tag
        draw(data, FLAGS.out, ylabel, FLAGS.title)
        print(f"| task | method | seeds | final {ylabel} (last {FLAGS.final_window} its) |")
        print("|---|---|---|---|")
        for panel, line, n, mean, std in final_values(data, FLAGS.final_window):
            print(f"| {panel} | {line} | {n} | {mean:.1f} +- {std:.1f} |")
        print(f"wrote {', '.join(FLAGS.out)}", flush=True)

    main_guard(plot)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
