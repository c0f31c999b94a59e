"""The mission's command end to end against the raw simulator, in one run.

    python bench/mission.py                        # python -m trpo_tf.launch --env=Walker, 1M steps
    python bench/mission.py --steps=100000         # the same command, a shorter budget
    python bench/mission.py --env=Hopper --batch_steps=25000 --preset=none --out=

Every flag but --out is the command's (trpo_tf.launch parses them here too, tuned preset
included, so the bench knows the run's --num_envs, --env_threads and backend); --env defaults
to Walker. Steps those envs raw (the backend's own API, random actions pre-drawn:
bench/common.raw_rate) for the run's budget, then runs `python -m trpo_tf.launch <the same
flags>` as a child process and times it whole, start-up and export included, then steps the
envs raw again for as many steps as the run took (a shared machine's load drifts: the two
raw times' mean is the floor). Prints the ratio of the times and where the run's went,
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
from trpo_tf import launch  # noqa: E402  (defines the command's flags)

flags.DEFINE_string("out", "bench/results.jsonl", "Append results here ('' = don't).")
FLAGS = flags.FLAGS
# Time/* summaries of the iteration loop (run/summaries.py), in the order they are printed
STAGES = [("sample", "Time/Sample"), ("sample_env", "Time/SampleEnv"),
          ("sample_policy", "Time/SamplePolicy"), ("advantage", "Time/Advantage"),
          ("update", "Time/Update"), ("value_fit", "Time/ValueFit"), ("eval", "Time/Eval"),
          ("iterations", "Time/Iteration")]


def run_command(args):
    """Wall seconds of `python -m trpo_tf.launch <args> --resume=never` (a fresh run)."""
    cmd = [sys.executable, "-m", "trpo_tf.launch", *args, "--resume=never"]
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


def command_args():
    """The command line's flags for the command (all but --out), --env=Walker unless given."""
    given = [a for a in sys.argv[1:] if a.split("=")[0].lstrip("-") != "out"]
    names = {a.split("=")[0].lstrip("-") for a in given}
    return ([] if "env" in names else ["--env=Walker"]) + given


def main(argv):
    del argv
    from trpo_tf import envs

    cfg = launch.config_from_flags()
    spec = envs.resolve_env(cfg.env, cfg.atari, cfg.make_kwargs)
    backend = envs.pick_backend(spec, cfg.env_backend)
    budget = cfg.steps or cfg.iterations * cfg.batch_steps
    rate_before = raw_rate(spec, backend, cfg.num_envs, cfg.env_threads, budget)
    with tempfile.TemporaryDirectory() as tmp:
        given_logdir = "logdir" in launch.APPLIED_PRESET["given"]
        logdir = cfg.logdir if given_logdir else tmp
        wall = run_command(command_args() + ([] if given_logdir else [f"--logdir={tmp}"]))
        t, env_steps = stage_seconds(logdir)
    rate_after = raw_rate(spec, backend, cfg.num_envs, cfg.env_threads, env_steps)
    raws = [env_steps / rate_before, env_steps / rate_after]
    raw = sum(raws) / 2
    outside = wall - t["iterations"]
    rest = t["iterations"] - t["sample"] - t["advantage"] - t["update"] - t["value_fit"] - t["eval"]
    record = write_result(FLAGS.out, {
        "bench": "mission", "env": spec.gym_id, "steps": env_steps, "backend": backend,
        "num_envs": cfg.num_envs, "env_threads": cfg.env_threads, "batch_steps": cfg.batch_steps,
        "command": command_args(), "wall_seconds": wall, "raw_sim_seconds": raw,
        "raw_sim_seconds_before_after": raws, "ratio": wall / raw, "stage_seconds": t,
        "between_iterations_seconds": outside, "peak_rss_mb": peak_rss_mb()})
    print(f"mission {spec.gym_id} {env_steps:,} steps, {backend} x{cfg.num_envs}: command "
          f"{wall:.1f}s | raw simulator {raw:.1f}s (before {raws[0]:.1f}, after {raws[1]:.1f}) | "
          f"ratio {record['ratio']:.2f}", flush=True)
    print(f"  sampling {t['sample']:.1f}s (simulator {t['sample_env']:.1f}, policy "
          f"{t['sample_policy']:.1f}, rest {t['sample'] - t['sample_env'] - t['sample_policy']:.1f}) | "
          f"advantage {t['advantage']:.1f}s | TRPO step {t['update']:.1f}s | value fit "
          f"{t['value_fit']:.1f}s | evaluation {t['eval']:.1f}s | other in iterations {rest:.1f}s | "
          f"between iterations {outside:.1f}s", flush=True)
    print(json.dumps({k: round(v, 2) for k, v in t.items()}))


if __name__ == "__main__":
    app.run(main, flags_parser=lambda argv: launch.parse_flags_with_preset(
        [argv[0], "--env=Walker", *argv[1:]]))
