"""The training loop's TensorBoard tags (each method names its own: Method.tags), and the
one-line terminal report."""
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

from trpo_tf.run.events import event_files, read_events

TAGS = {
    "return_mean": "Train/EpisodeReturnMean",
    "return_min": "Train/EpisodeReturnMin",
    "return_max": "Train/EpisodeReturnMax",
    "episode_length": "Train/EpisodeLength",
    "episodes": "Train/Episodes",
    "env_steps": "Train/EnvSteps",
    "steps_per_sec": "Train/EnvStepsPerSecond",
    "sample_steps_per_sec": "Train/SamplingStepsPerSecond",
    "time_sample": "Time/Sample",
    "time_sample_policy": "Time/SamplePolicy",
    "time_sample_env": "Time/SampleEnv",
    "time_iteration": "Time/Iteration",
    "faults": "Faults/SkippedIterations",
    "worker_restarts": "Faults/WorkerRestarts",
    "return_rolling": "Train/EpisodeReturnLast100",
    "eval_return_mean": "Eval/ReturnMean",
    "eval_return_std": "Eval/ReturnStd",
    "eval_return_min": "Eval/ReturnMin",
    "eval_return_max": "Eval/ReturnMax",
    "time_eval": "Time/Eval",
}


def scalar_value(tag, value):
    """The Summary.Value tf.summary.scalar writes for a float: a float32 scalar tensor for
    TensorBoard's scalars plugin."""
    return summary_pb2.Summary.Value(
        tag=tag, metadata=summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")),
        tensor=tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT,
                                      tensor_shape=tensor_shape_pb2.TensorShapeProto(),
                                      tensor_content=np.float32(value).tobytes()))


def write_scalars(writer, step, metrics, skip_tags=frozenset(), tags=TAGS):
    """Every metric that has a tag in `tags` (the loop's TAGS and the method's own) as a scalar
    at `step`, all in one event (one TensorFlow call: a tf.summary.scalar each cost ~0.3 ms);
    NaN (no episode finished) is skipped, and so are `skip_tags` (already in the event files)."""
    values = [scalar_value(tags[key], value) for key, value in metrics.items()
              if key in tags and value == value and tags[key] not in skip_tags]
    if values:
        with writer.as_default(step=step):
            tf.summary.experimental.write_raw_pb(
                summary_pb2.Summary(value=values).SerializeToString())
    writer.flush()


def logged_steps(logdir):
    """{tag: set of steps} over every event file in logdir."""
    steps = {}
    for path in event_files(logdir):
        for event in read_events(path):
            for value in event.summary.value:
                steps.setdefault(value.tag, set()).add(event.step)
    return steps


def write_flags(writer, cfg_dict, step=0):
    """The run's settings as a Markdown table under Run/Config at `step` (a resumed run's at
    the iteration it goes on from: its flags may have changed)."""
    rows = "\n".join(f"| {k} | {v} |" for k, v in sorted(cfg_dict.items()))
    with writer.as_default(step=step):
        tf.summary.text("Run/Config", "| flag | value |\n|---|---|\n" + rows)
    writer.flush()


def _number(x):
    return "      -" if x != x else f"{x:7.1f}"


def progress_line(it, iterations, m, last_eval, update, stages=()):
    """`return`: the mean of the last 100 finished training episodes; `eval`: the latest
    evaluation of the deterministic policy ("-" before there is one); `update`: the method's
    part ("kl 0.0097 ls 1"); `stages`: the method's timed stages after sampling, as (label,
    metric) pairs. The entropy and explained variance show where the method has them (CEM /
    CMA have neither); the evaluation's seconds close the stages where there was one (they
    count in the iteration's seconds and steps/s)."""
    timed = "".join(f", {label} {m[key]:.2f}" for label, key in stages)
    timed += f", eval {m['time_eval']:.2f}" if "time_eval" in m else ""
    shown = "".join(f" | {name} {m[key]:+.2f}" for name, key in
                    (("ent", "entropy"), ("ev", "explained_variance")) if key in m)
    return (f"it {it + 1:4d}/{iterations} | steps {int(m['env_steps']):>9,} | return "
            f"{_number(m['return_rolling'])} | eval {_number(last_eval)}"
            f" | {update}{shown} | {m['steps_per_sec']:,.0f} steps/s"
            f" | {m['time_iteration']:.2f}s (sample {m['time_sample']:.2f}{timed})")
