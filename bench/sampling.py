"""Raw environment steps/s (random actions) against trpo_tf's sampler, same envs, one run.

    python bench/sampling.py --env=Hopper --num_envs=16 --steps=50000
    python bench/sampling.py --env=Pong --backends=gymnasium --steps=20000   # Atari
    python bench/sampling.py --smoke        # tiny, for the test suite

For each backend: the raw rate uses the backend's own API (gymnasium's SyncVectorEnv, or
EnvPool's step) with pre-drawn random actions; trpo_tf's rate is SinglePathSampler acting
with the policy (NumPy forward pass, Gaussian noise, clipping, buffers, resets). Rounds
alternate raw / ours and the median of each is reported. For Atari games the same run also
measures the bare emulator (ALE `act` on one game, random actions, no preprocessing) in
frames/s, and reports every rate in emulator frames/s (agent steps x frame skip).
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from bench.common import peak_rss_mb, raw_rate, write_result  # noqa: E402
from trpo_tf import envs  # noqa: E402
from trpo_tf.distributions import for_action_space  # noqa: E402
from trpo_tf.policies import build_policy  # noqa: E402
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


def raw_ale_frame_rate(spec, frames, seed=0):
    """Emulator frames/s of one bare ALE game under random actions (no wrappers)."""
    env = envs.make_env(spec)
    env.reset(seed=seed)
    ale = env.unwrapped.ale
    actions = ale.getMinimalActionSet()
    picks = np.random.default_rng(seed).integers(0, len(actions), frames)
    tic = time.perf_counter()
    for i in picks:
        ale.act(actions[i])
        if ale.game_over():
            ale.reset_game()
    rate = frames / (time.perf_counter() - tic)
    env.close()
    return rate


def sampler_rate(spec, backend, num_envs, threads, steps, seed=0):
    """Steps/s of trpo_tf's sampler with the env's default policy network, on its second batch:
    the first resets the envs (the raw loop's reset is not timed either) and traces a traced
    acting function (Atari's CNN)."""
    group = envs.make_env_group(spec, backend, num_envs, seed, num_threads=threads)
    dist = for_action_space(group.action_space)
    policy = build_policy(group.observation_space.shape, dist, spec.policy_hidden, True)
    sampler = SinglePathSampler(group, dist, max(1, steps // num_envs), seed)
    params_fn = policy.numpy_fn()
    sampler.sample(params_fn)
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
    frame_skip = spec.atari.frame_skip if spec.atari else 1
    unit = "frames" if spec.atari else "steps"
    for backend in FLAGS.backends:
        backend = envs.pick_backend(spec, backend)
        raw, ours, policy_share, ale = [], [], [], []
        for _ in range(rounds):
            if spec.atari:
                ale.append(raw_ale_frame_rate(spec, steps * frame_skip // 4))
            raw.append(frame_skip * raw_rate(spec, backend, FLAGS.num_envs, FLAGS.threads, steps))
            rate, share = sampler_rate(spec, backend, FLAGS.num_envs, FLAGS.threads, steps)
            ours.append(frame_skip * rate)
            policy_share.append(share)
        r, o = statistics.median(raw), statistics.median(ours)
        record = {"bench": "sampling", "env": spec.gym_id, "backend": backend,
                  "num_envs": FLAGS.num_envs, "steps": steps, f"raw_{unit}_per_sec": r,
                  f"trpo_tf_{unit}_per_sec": o, "ratio": o / r,
                  "policy_share": statistics.median(policy_share)}
        line = (f"sampling {spec.gym_id} {backend:>9} x{FLAGS.num_envs}: raw {r:,.0f} {unit}/s | "
                f"trpo_tf {o:,.0f} {unit}/s | ratio {o / r:.2f}")
        if spec.atari:
            a = statistics.median(ale)
            record.update(frame_skip=frame_skip, bare_ale_frames_per_sec=a, ratio_to_bare_ale=o / a)
            line += f" | bare ALE {a:,.0f} frames/s, trpo_tf at {o / a:.2f} of it"
        record = write_result("" if FLAGS.smoke else FLAGS.out, {**record, "peak_rss_mb": peak_rss_mb()})
        print(f"{line} | policy {record['policy_share']:.0%} of sampling | peak RSS "
              f"{record['peak_rss_mb']:.0f} MB", flush=True)

if __name__ == "__main__":
    app.run(main)
