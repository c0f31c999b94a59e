"""Figure 4-style learning curves from TensorBoard event files (no flags here: trpo_tf.plot
is the command line). Runs are found as <logdir>/<task>/<method>[/...]/[seed_<s>/]events.*:
the first directory names the panel, the rest (less seed_<s>) the line."""
import collections
import os
import re

from trpo_tf.run.events import event_files, scalar, values_by_tag
from trpo_tf.run.outputs import SET_ASIDE

SEED_DIR = re.compile(r"seed_\d+$")
SET_ASIDE_DIR = re.compile(rf"({'|'.join(SET_ASIDE)})-\d+$")


def read_scalars(run_dir, tag):
    """{step: value} of `tag` over a run directory's event files (later files win)."""
    values = {}
    for path in event_files(run_dir):
        values.update((step, scalar(v)) for step, v in values_by_tag(path).get(tag, ()))
    return values


def find_runs(logdir):
    """{(panel, line): [run dirs]} for every directory under logdir with event files."""
    runs = collections.defaultdict(list)
    for root, dirs, files in os.walk(logdir, followlinks=True):
        dirs[:] = [d for d in dirs if not SET_ASIDE_DIR.match(d)]  # --resume=never's earlier runs
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


def curves(runs, tag, sign=1.0, missing=None):
    """{(panel, line): (steps, [seeds x steps] values)} on every step any seed has, NaN where
    a seed has none (it ran shorter, is still running, or that batch ended no episode); the
    run directories without `tag` are left out (appended to the list `missing` if given)."""
    import numpy as np

    out = {}
    for key, dirs in sorted(runs.items()):
        read = {d: read_scalars(d, tag) for d in sorted(dirs)}
        if missing is not None:
            missing.extend(d for d, s in read.items() if not s)
        series = [s for s in read.values() if s]
        if not series:
            continue
        steps = sorted(set.union(*(set(s) for s in series)))
        values = np.array([[s.get(t, np.nan) for t in steps] for s in series], float)
        out[key] = (np.asarray(steps), sign * values)
    return out


def seed_std(values, axis=None):
    """The standard deviation over seeds (ddof=1) of the values that are not NaN, 0 where one
    seed has a value."""
    import numpy as np

    present = ~np.isnan(values)
    count = present.sum(axis)
    mean = np.nanmean(values, axis, keepdims=True)
    squares = np.where(present, (values - mean) ** 2, 0.0).sum(axis)
    return np.sqrt(squares / np.maximum(count - 1, 1))


def final_values(data, window):
    """[(panel, line, seeds, mean, std)] of the mean of each seed's last `window` points."""
    import numpy as np

    rows = []
    for (panel, line), (_, values) in data.items():
        per_seed = np.array([row[~np.isnan(row)][-window:].mean() for row in values])
        rows.append((panel, line, len(per_seed), float(per_seed.mean()),
                     float(seed_std(per_seed))))
    return rows


def mean_and_spread(mean, std, seeds):
    """"mean +- std" over seeds; one seed has no spread to give ("mean (one seed)")."""
    return f"{mean:.1f} +- {std:.1f}" if seeds > 1 else f"{mean:.1f} (one seed)"


def uneven_seeds(data):
    """["panel/line: ...", ...] for each line whose seeds end at different steps (past the
    first end its curve averages fewer seeds)."""
    import numpy as np

    notes = []
    for (panel, line), (steps, values) in data.items():
        ends = [int(steps[np.flatnonzero(~np.isnan(row))[-1]]) for row in values]
        if len(set(ends)) > 1:
            notes.append(f"{panel}/{line}: its seeds end at iterations {', '.join(map(str, ends))}")
    return notes


def draw(data, outputs, ylabel, title=""):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    panels = sorted({panel for panel, _ in data})
    lines = sorted({line for _, line in data})
    colors = {line: plt.get_cmap("tab10")(i % 10) for i, line in enumerate(lines)}
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    handles = {}  # one legend entry per method, whichever panels it is in
    for ax, panel in zip(axes[0], panels):
        for line in lines:
            if (panel, line) not in data:
                continue
            steps, values = data[(panel, line)]
            mean, std = np.nanmean(values, 0), seed_std(values, 0)
            handles.setdefault(line, ax.plot(steps, mean, color=colors[line], lw=1.6,
                                             marker="o" if len(steps) == 1 else None)[0])
            ax.fill_between(steps, mean - std, mean + std, color=colors[line], alpha=0.18, lw=0)
        ax.set_title(panel)
        ax.set_xlabel("policy iteration")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    counts = {line: sorted({len(data[key][1]) for key in data if key[1] == line}) for line in lines}
    seeds = {line: str(c[0]) if c[0] == c[-1] else f"{c[0]}-{c[-1]}"  # panels may hold others
             for line, c in counts.items()}
    fig.legend([handles[line] for line in lines], [f"{line} ({seeds[line]})" for line in lines],
               fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5),
               title="method (seeds)", title_fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    for path in outputs:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
