"""Raw environment steps/s (random actions) against trpo_tf's sampler, same envs, one run.

    python bench/sampling.py --env=Hopper --num_envs=16 --steps=50000
    python bench/sampling.py --smoke        # tiny, for the test suite

For each backend: the raw rate uses the backend's own API (gymnasium's SyncVectorEnv, or
EnvPool's step) with pre-drawn random actions; trpo_tf's rate is SinglePathSampler acting
with the policy (NumPy forward pass, Gaussian noise, clipping, buffers, resets). Rounds
alternate raw / ours and the median of each is reported.
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from bench.common import peak_rss_mb, write_result  # noqa: E402
from trpo_tf import envs  # noqa: E402
from trpo_tf.distributions import for_action_space  # noqa: E402
from trpo_tf.policies import build_models  # noqa: E402
from trpo_tf.sampling.single_path import SinglePathSampler  # noqa: E402

flags.DEFINE_string("env", "Hopper", "Short name or gymnasium id.")
flags.DEFINE_list("backends", ["gymnasium", "envpool"], "Backends to measure.")
flags.DEFINE_integer("num_envs", 16, "Envs stepped together.")
flags.DEFINE_integer("threads", 0, "EnvPool threads (0 = min(num_envs, cores)).")
flags.DEFINE_integer("steps", 50_000, "Env steps per measurement.")
flags.DEFINE_integer("rounds", 3, "Alternating raw / trpo_tf rounds.")
flags.DEFINE_boolean("smoke", False, "Tiny run (the test suite uses it).")
flags.DEFINE_string("out", "bench/results.jsonl", "Append results here ('' = don't).")
FLAGS = flags.FLAGS


def raw_rate(spec, backend, num_envs, threads, steps, seed=0):
    """Steps/s of the backend's own vector API under random actions."""
    if backend == "envpool":
        pool = envs.EnvPoolEnvs(spec, num_envs, seed, num_threads=threads).pool
        step = pool.step
        pool.reset()
    else:
        pool = gym.vector.SyncVectorEnv([lambda: envs.make_env(spec) for _ in range(num_envs)])
        step = pool.step
        pool.reset(seed=seed)
    space = pool.single_action_space if backend == "gymnasium" else pool.action_space
    rng = np.random.default_rng(seed)
    n_steps = max(1, steps // num_envs)
    actions = rng.uniform(space.low, space.high, (n_steps, num_envs) + space.shape).astype(np.float32)
    tic = time.perf_counter()
    for a in actions:
        step(a)
    rate = n_steps * num_envs / (time.perf_counter() - tic)
    pool.close()
    return rate


def sampler_rate(spec, backend, num_envs, threads, steps, seed=0):
    """Steps/s of trpo_tf's sampler with the env's default policy network."""
    group = envs.make_env_group(spec, backend, num_envs, seed, num_threads=threads)
    dist = for_action_space(group.action_space)
    policy, _ = build_models(group.observation_space.shape, dist, spec.policy_hidden, (64, 64), True)
    sampler = SinglePathSampler(group, dist, max(1, steps // num_envs), seed)
    params_fn = policy.numpy_fn()
    tic = time.perf_counter()
    batch = sampler.sample(params_fn)
    elapsed = time.perf_counter() - tic
    group.close()
    n = batch["rew"].shape[0]
    return n / elapsed, float(batch["time_policy"]) / elapsed


def main(argv):
    del argv
    steps, rounds = (800, 1) if FLAGS.smoke else (FLAGS.steps, FLAGS.rounds)
    spec = envs.resolve_env(FLAGS.env)
    for backend in FLAGS.backends:
        backend = envs.pick_backend(spec, backend)
        raw, ours, policy_share = [], [], []
        for _ in range(rounds):
            raw.append(raw_rate(spec, backend, FLAGS.num_envs, FLAGS.threads, steps))
            rate, share = sampler_rate(spec, backend, FLAGS.num_envs, FLAGS.threads, steps)
            ours.append(rate)
            policy_share.append(share)
        r, o = statistics.median(raw), statistics.median(ours)
        record = write_result("" if FLAGS.smoke else FLAGS.out, {
            "bench": "sampling", "env": spec.gym_id, "backend": backend, "num_envs": FLAGS.num_envs,
            "steps": steps, "raw_steps_per_sec": r, "trpo_tf_steps_per_sec": o, "ratio": o / r,
            "policy_share": statistics.median(policy_share), "peak_rss_mb": peak_rss_mb()})
        print(f"sampling {spec.gym_id} {backend:>9} x{FLAGS.num_envs}: raw {r:,.0f} steps/s | "
              f"trpo_tf {o:,.0f} steps/s | ratio {o / r:.2f} | policy {record['policy_share']:.0%} "
              f"of sampling | peak RSS {record['peak_rss_mb']:.0f} MB", flush=True)


if __name__ == "__main__":
    app.run(main)
