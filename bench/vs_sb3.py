"""Stable-Baselines3-contrib's TRPO against trpo_tf, same env, same steps, side by side.

    pip install -r bench/requirements.txt
    python bench/vs_sb3.py --env=Hopper --steps=1000000 --seeds=3
    python bench/vs_sb3.py --smoke      # tiny, for the test suite

Each training runs in its own child process (the two libraries never share an interpreter),
alternating SB3, trpo_tf, SB3, ... one seed at a time, so slow drifts of a shared machine hit
both. Each child reports wall seconds of training (imports and evaluation excluded), env
steps/s, seconds in sampling and in updates, peak RSS, and the mean return of
--eval_episodes deterministic episodes of the final policy. SB3 runs with its defaults
(n_steps 2048, 64-64 nets, one env, as rl-baselines3-zoo does without tuning); trpo_tf with
its generic defaults (config.py; never a tuned preset) plus any --trpo_flags.
"""
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app, flags  # noqa: E402

import trpo_tf  # noqa: E402,F401  (its hook holds TensorFlow's start-up log lines in the trpo_tf child)
from bench.common import merged_runs, peak_rss_mb, write_result  # noqa: E402

flags.DEFINE_string("env", "Hopper", "Short name or gymnasium id.")
flags.DEFINE_integer("steps", 1_000_000, "Environment steps per training run.")
flags.DEFINE_integer("seeds", 3, "Seeds per library (runs alternate between libraries).")
flags.DEFINE_integer("first_seed", 0, "Seeds run are first_seed .. first_seed + seeds - 1.")
flags.DEFINE_string("merge", "", "Also summarise the runs of earlier vs_sb3 lines of this JSONL file "
                    "with the same env and steps (to add seeds to a comparison): their SB3 runs, "
                    "and their trpo_tf runs where the trpo_flags match.")
flags.DEFINE_list("libraries", ["sb3", "trpo_tf"], "Which sides to train (e.g. only trpo_tf, to add "
                  "a trpo_tf configuration's seeds beside SB3 runs already in --merge).")
flags.DEFINE_integer("eval_episodes", 10, "Deterministic episodes to score the final policy.")
flags.DEFINE_list("trpo_flags", [], "Config overrides for trpo_tf (default: none, i.e. the "
                  "generic defaults; the tuned presets are not applied here).")
flags.DEFINE_boolean("smoke", False, "Tiny run (the test suite uses it).")
flags.DEFINE_string("out", "bench/results.jsonl", "Append results here ('' = don't).")
flags.DEFINE_enum("child", None, ["sb3", "trpo_tf"], "Internal: run one training and print JSON.")
flags.DEFINE_integer("seed", 0, "Internal: the child's seed.")
FLAGS = flags.FLAGS


def run_sb3(gym_id, steps, seed, eval_episodes):
    """SB3-contrib's TRPO in a process without TensorFlow, as on a machine without it: torch's
    TensorBoard writer, which SB3 imports, loads TensorFlow when it can (3.9 s and its memory in
    this child, measured 2026-12-07), and its stub otherwise."""
    sys.modules["tensorflow"] = None  # an import of it raises ImportError
    import gymnasium as gym
    from sb3_contrib import TRPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy

    class RolloutTimer(BaseCallback):
        def __init__(self):
            super().__init__()
            self.sample_seconds, self._start = 0.0, 0.0

        def _on_rollout_start(self):
            self._start = time.perf_counter()

        def _on_rollout_end(self):
            self.sample_seconds += time.perf_counter() - self._start

        def _on_step(self):
            return True

    tic = time.perf_counter()
    env = gym.make(gym_id)
    model = TRPO("MlpPolicy", env, seed=seed, verbose=0,
                 **({"n_steps": 512, "batch_size": 128} if steps < 2048 else {}))
    timer = RolloutTimer()
    model.learn(total_timesteps=steps, callback=timer)
    wall = time.perf_counter() - tic
    mean, _ = evaluate_policy(model, gym.make(gym_id), n_eval_episodes=eval_episodes, deterministic=True)
    return {"wall_seconds": wall, "env_steps": int(model.num_timesteps),
            "sample_seconds": timer.sample_seconds, "update_seconds": wall - timer.sample_seconds,
            "eval_return": float(mean)}


def run_trpo_tf(env_name, steps, seed, eval_episodes, overrides):
    from trpo_tf import envs
    from trpo_tf.config import Config, validate
    from trpo_tf.run.export import load_policy
    from trpo_tf.run.evaluate import run_episodes
    from trpo_tf.run.train import train

    kwargs = dict(kv.split("=", 1) for kv in overrides)
    types = {f: type(v) for f, v in Config().__dict__.items()}
    kwargs = {k: v.lower() in ("1", "true") if types[k] is bool else types[k](v)
              for k, v in kwargs.items()}
    kwargs["batch_steps"] = min(steps, kwargs.get("batch_steps", Config().batch_steps))
    # the final policy is scored below, untimed, as SB3's is; a timed evaluation stage is not
    kwargs.setdefault("eval_every", 0)
    with tempfile.TemporaryDirectory() as logdir:
        cfg = validate(Config(env=env_name, seed=seed, steps=steps, logdir=logdir, quiet=True,
                              **kwargs))
        tic = time.perf_counter()
        history = train(cfg)
        wall = time.perf_counter() - tic
        serve, gym_id, _ = load_policy(cfg.policy_export_dir)
        env = envs.make_env(envs.resolve_env(gym_id))
        returns = run_episodes(serve, env, eval_episodes, 10_000 + seed, deterministic=True)
        env.close()
    sample = sum(m["time_sample"] for m in history)
    update = sum(m["time_advantage"] + m["time_update"] + m["time_value"] for m in history)
    return {"wall_seconds": wall, "env_steps": int(history[-1]["env_steps"]),
            "sample_seconds": sample, "update_seconds": update, "eval_return": float(returns.mean())}


def child_main():
    from trpo_tf import envs

    spec = envs.resolve_env(FLAGS.env)
    if FLAGS.child == "sb3":
        result = run_sb3(spec.gym_id, FLAGS.steps, FLAGS.seed, FLAGS.eval_episodes)
    else:
        result = run_trpo_tf(FLAGS.env, FLAGS.steps, FLAGS.seed, FLAGS.eval_episodes, FLAGS.trpo_flags)
    result.update(library=FLAGS.child, seed=FLAGS.seed, peak_rss_mb=peak_rss_mb(),
                  steps_per_sec=result["env_steps"] / result["wall_seconds"])
    print(json.dumps(result), flush=True)


def run_child(library, seed, steps, eval_episodes):
    cmd = [sys.executable, os.path.abspath(__file__), f"--child={library}", f"--seed={seed}",
           f"--env={FLAGS.env}", f"--steps={steps}", f"--eval_episodes={eval_episodes}",
           f"--trpo_flags={','.join(FLAGS.trpo_flags)}"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"{library} seed {seed} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def have_sb3():
    """Whether SB3-contrib is installed (found, not imported: importing it loads torch, ~5 s,
    in a process that only starts the children; an install that cannot import fails in its
    child, with that child's error)."""
    return importlib.util.find_spec("sb3_contrib") is not None


def summarize(results):
    """Per-library means and trpo_tf / SB3 ratios."""
    by_lib = {}
    for r in results:
        by_lib.setdefault(r["library"], []).append(r)
    means = {lib: {k: statistics.mean(r[k] for r in runs) for k in
                   ("wall_seconds", "steps_per_sec", "sample_seconds", "update_seconds", "eval_return", "peak_rss_mb")}
             for lib, runs in by_lib.items()}
    for m in means.values():
        m["update_share"] = m["update_seconds"] / m["wall_seconds"]
    ratios = {}
    if len(means) == 2:
        t, s = means["trpo_tf"], means["sb3"]
        ratios = {"steps_per_sec": t["steps_per_sec"] / s["steps_per_sec"],
                  "wall_seconds": s["wall_seconds"] / t["wall_seconds"],
                  "update_seconds": s["update_seconds"] / t["update_seconds"],
                  "eval_return_difference": t["eval_return"] - s["eval_return"]}
    return means, ratios


def main(argv):
    del argv
    if FLAGS.child:
        return child_main()
    steps, seeds, episodes = (1_000, 1, 1) if FLAGS.smoke else (FLAGS.steps, FLAGS.seeds, FLAGS.eval_episodes)
    libraries = list(FLAGS.libraries)
    if not libraries or set(libraries) - {"sb3", "trpo_tf"}:
        raise app.UsageError(f"--libraries takes sb3 and/or trpo_tf (got {FLAGS.libraries})")
    if "sb3" in libraries and not have_sb3():
        libraries.remove("sb3")
        if not libraries:
            raise app.UsageError("--libraries=sb3 needs sb3-contrib: pip install -r bench/requirements.txt")
        print("sb3-contrib is not installed (pip install -r bench/requirements.txt): "
              "running trpo_tf alone", flush=True)
    results = []
    for seed in range(FLAGS.first_seed, FLAGS.first_seed + seeds):
        for library in libraries:
            r = run_child(library, seed, steps, episodes)
            results.append(r)
            print(f"{library:>8} seed {seed}: {r['wall_seconds']:8.1f} s wall | {r['steps_per_sec']:8,.0f} "
                  f"steps/s | sample {r['sample_seconds']:7.1f} s | update {r['update_seconds']:7.1f} s | "
                  f"eval return {r['eval_return']:8.1f} | peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    if FLAGS.merge:
        with open(FLAGS.merge) as f:
            earlier = [json.loads(line) for line in f]
        results += merged_runs(earlier, FLAGS.env, steps, FLAGS.trpo_flags, results)
        for lib in ("sb3", "trpo_tf"):
            print(f"{lib:>8} seeds: {sorted(r['seed'] for r in results if r['library'] == lib)}", flush=True)
    means, ratios = summarize(results)
    for lib, m in means.items():
        print(f"{lib:>8} mean: {m['wall_seconds']:8.1f} s wall | {m['steps_per_sec']:8,.0f} steps/s | "
              f"update {m['update_share']:.1%} of wall | eval return {m['eval_return']:.1f}", flush=True)
    if ratios:
        print(f"trpo_tf / SB3: {ratios['steps_per_sec']:.1f}x the steps/s; update time SB3 / "
              f"trpo_tf: {ratios['update_seconds']:.1f}x (below 1: trpo_tf's took longer); eval "
              f"return {ratios['eval_return_difference']:+.1f}", flush=True)
    if not FLAGS.smoke and FLAGS.out:
        write_result(FLAGS.out, {"bench": "vs_sb3", "env": FLAGS.env, "steps": steps, "seeds": seeds,
                                 "trpo_flags": FLAGS.trpo_flags, "runs": results, "means": means,
                                 "ratios": ratios})


if __name__ == "__main__":
    app.run(main)
