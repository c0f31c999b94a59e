"""The mission's command end to end against the raw simulator, in one run.

    python bench/mission.py                        # python -m trpo_tf.launch --env=Walker, 1M steps
    python bench/mission.py --steps=100000         # the same command, a shorter budget
    python bench/mission.py --env=Cartpole --steps=4096 --launch_flags=batch_steps=1024

Runs `python -m trpo_tf.launch --env=<env> [--steps=N]` (the env's tuned preset, as a user
types it) as a child process and times it whole, start-up and export included. Then steps
the same envs raw (the backend's own API, random actions pre-drawn: bench/common.raw_rate)
with the run's own --num_envs, --env_threads and backend (its Run/Config summary) for as many
steps as the run took, and prints the ratio of the two times and where the run's time went,
summed from its TensorBoard Time/* summaries: sampling (simulator, policy, the rest), the
advantage, the TRPO step, the value fit, evaluation; "between iterations" is the wall time
outside them (TensorFlow start-up, tracing, checkpoints, summaries, the export).
"""
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

from bench.common import peak_rss_mb, raw_rate, write_result  # noqa: E402

flags.DEFINE_string("env", "Walker", "--env of the command (a tuned preset applies if it has one).")
flags.DEFINE_integer("steps", 0, "--steps of the command; 0 = the preset's budget.")
flags.DEFINE_list("launch_flags", [], "More flags for the command, e.g. seed=1.")
flags.DEFINE_string("logdir", "", "The run's --logdir (default: a temporary directory).")
flags.DEFINE_string("out", "bench/results.jsonl", "Append results here ('' = don't).")
FLAGS = flags.FLAGS

# Time/* summaries of the iteration loop (run/summaries.py), in the order they are printed
STAGES = [("sample", "Time/Sample"), ("sample_env", "Time/SampleEnv"),
          ("sample_policy", "Time/SamplePolicy"), ("advantage", "Time/Advantage"),
          ("update", "Time/Update"), ("value_fit", "Time/ValueFit"), ("eval", "Time/Eval"),
          ("iterations", "Time/Iteration")]


def run_command(env, steps, extra, logdir):
    """Wall seconds of `python -m trpo_tf.launch` for this env and budget."""
    cmd = [sys.executable, "-m", "trpo_tf.launch", f"--env={env}", f"--logdir={logdir}",
           "--resume=never", *(f"--{f}" for f in extra)] + ([f"--steps={steps}"] if steps else [])
    print(" ".join(["$", "python"] + cmd[1:]), flush=True)
    tic = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return time.perf_counter() - tic


def stage_seconds(logdir):
    """{stage: seconds summed over the run's iterations} and the env steps it took."""
    from trpo_tf.tools.figures import read_scalars

    totals = {name: sum(read_scalars(logdir, tag).values()) for name, tag in STAGES}
    steps = read_scalars(logdir, "Train/EnvSteps")
    return totals, int(max(steps.values())) if steps else 0


def run_config(logdir):
    """The run's settings as its Run/Config summary records them: {flag: value as text}."""
    import tensorflow as tf

    from trpo_tf.run.summaries import event_files, read_events

    for path in event_files(logdir):
        for event in read_events(path):
            for v in event.summary.value:
                if v.tag == "Run/Config":
                    table = tf.make_ndarray(v.tensor).item().decode()
                    rows = (line.strip("|").split("|") for line in table.splitlines()[2:])
                    return {k.strip(): value.strip() for k, value in rows}
    raise ValueError(f"no Run/Config summary in {logdir}")


def main(argv):
    del argv
    from trpo_tf import envs

    env, steps, extra = FLAGS.env, FLAGS.steps, FLAGS.launch_flags
    with tempfile.TemporaryDirectory() as tmp:
        logdir = FLAGS.logdir or os.path.join(tmp, "run")
        wall = run_command(env, steps, extra, logdir)
        cfg = run_config(logdir)
        t, env_steps = stage_seconds(logdir)
    spec = envs.resolve_env(cfg["env"])
    backend = envs.pick_backend(spec, cfg["env_backend"])
    num_envs, threads = int(cfg["num_envs"]), int(cfg["env_threads"])
    raw = env_steps / raw_rate(spec, backend, num_envs, threads, env_steps)
    outside = wall - t["iterations"]
    rest = t["iterations"] - t["sample"] - t["advantage"] - t["update"] - t["value_fit"] - t["eval"]
    record = write_result(FLAGS.out, {
        "bench": "mission", "env": spec.gym_id, "steps": env_steps, "backend": backend,
        "num_envs": num_envs, "env_threads": threads, "batch_steps": int(cfg["batch_steps"]),
        "launch_flags": extra, "wall_seconds": wall, "raw_sim_seconds": raw, "ratio": wall / raw,
        "stage_seconds": t, "between_iterations_seconds": outside, "peak_rss_mb": peak_rss_mb()})
    print(f"mission {spec.gym_id} {env_steps:,} steps, {backend} x{num_envs}: command "
          f"{wall:.1f}s | raw simulator {raw:.1f}s | ratio {record['ratio']:.2f}", flush=True)
    print(f"  sampling {t['sample']:.1f}s (simulator {t['sample_env']:.1f}, policy "
          f"{t['sample_policy']:.1f}, rest {t['sample'] - t['sample_env'] - t['sample_policy']:.1f}) | "
          f"advantage {t['advantage']:.1f}s | TRPO step {t['update']:.1f}s | value fit "
          f"{t['value_fit']:.1f}s | evaluation {t['eval']:.1f}s | other in iterations {rest:.1f}s | "
          f"between iterations {outside:.1f}s", flush=True)
    print(json.dumps({k: round(v, 2) for k, v in t.items()}))


if __name__ == "__main__":
    app.run(main)
