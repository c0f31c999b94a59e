"""Seconds per TRPO update on a real batch, split by stage.

    python bench/update.py --env=Hopper --batch_steps=50000
    python bench/update.py --env=Walker --batch_steps=2048 --policy_hidden=64,64 \
        --cg_iters=25 --vf_epochs=20          # the Walker preset's learner
    python bench/update.py --smoke

Builds the env's default policy and value nets (or --policy_hidden), samples one real batch
of --batch_steps steps with them (synthetic random data made CG stop at once on a vanishing
gradient and flattered the step 2x), then times the advantage graph, the TRPO step
(gradient, CG on Fisher-vector products, line search) and the value fit, after one untimed
call that traces them. Every repeat starts from the same parameters. The TRPO step is timed
twice per repeat, interleaved: with the learner's Fisher-vector products (J^T M J v) and
with the double-backprop reference (fisher=kl_hessian, the products before 2026-12-02).
"""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from bench.common import peak_rss_mb, write_result  # noqa: E402
from trpo_tf import envs  # noqa: E402
from trpo_tf.config import Config  # noqa: E402
from trpo_tf.distributions import for_action_space  # noqa: E402
from trpo_tf.flat import get_flat, set_flat  # noqa: E402
from trpo_tf.methods.update import TRPOLearner, single_path_gain  # noqa: E402
from trpo_tf.pipeline import batch_signature  # noqa: E402
from trpo_tf.pipeline.advantages import make_advantage_fn  # noqa: E402
from trpo_tf.pipeline.value import ValueFitter  # noqa: E402
from trpo_tf.policies import build_policy, build_value_net  # noqa: E402
from trpo_tf.sampling import batch_obs_dtype  # noqa: E402
from trpo_tf.sampling.single_path import SinglePathSampler  # noqa: E402

flags.DEFINE_string("env", "Hopper", "Short name or gymnasium id (for the spaces and nets).")
flags.DEFINE_integer("batch_steps", 50_000, "Steps in the batch sampled (one real batch).")
flags.DEFINE_list("policy_hidden", None, "Policy hidden sizes (default: the env's).")
flags.DEFINE_integer("repeats", 5, "Timed updates.")
flags.DEFINE_integer("cg_iters", None, "CG iterations (default: config.py's).")
flags.DEFINE_integer("vf_epochs", None, "Value-fit epochs (default: config.py's).")
flags.DEFINE_boolean("smoke", False, "Tiny run (the test suite uses it).")
flags.DEFINE_string("out", "bench/results.jsonl", "Append results here ('' = don't).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    n, repeats = (512, 1) if FLAGS.smoke else (FLAGS.batch_steps, FLAGS.repeats)
    spec = envs.resolve_env(FLAGS.env)
    group = envs.make_env_group(spec, "auto", 16, 0)
    space, dist = group.observation_space, for_action_space(group.action_space)
    overrides = {k: FLAGS[k].value for k in ("cg_iters", "vf_epochs") if FLAGS[k].value is not None}
    if FLAGS.policy_hidden is not None:
        overrides["policy_hidden"] = tuple(map(int, FLAGS.policy_hidden))
    cfg = Config(**overrides)
    # the nets a run builds for the env's observations: an MLP for vectors, the CNN for frames
    policy = build_policy(space.shape, dist, **cfg.policy_settings(spec))
    value = build_value_net(policy, space.shape, **cfg.value_settings())
    sig = batch_signature(space.shape, batch_obs_dtype(space), dist)
    advantage_fn = make_advantage_fn(value, cfg, sig["obs"])
    learners = {fisher: TRPOLearner(
        policy, dist, single_path_gain(dist), [sig["obs"], sig["act"], sig["rew"]], cfg.max_kl,
        cfg.cg_iters, cfg.cg_damping, cfg.fvp_subsample, cfg.ls_shrink, cfg.ls_max_backtracks,
        fisher=fisher) for fisher in ("analytic", "kl_hessian")}
    fitter = ValueFitter(value, sig["obs"], cfg.vf_lr, cfg.vf_epochs, cfg.vf_minibatch)
    batch = SinglePathSampler(group, dist, n // 16, 0).sample(policy.numpy_fn())
    group.close()
    n = len(batch["rew"])
    start = get_flat(policy.trainable_variables + value.trainable_variables)
    policy_size = sum(int(np.prod(v.shape)) for v in policy.trainable_variables)
    times = {"advantage": [], "update": [], "update_kl_hessian": [], "value_fit": []}
    for r in range(repeats + 1):
        set_flat(policy.trainable_variables + value.trainable_variables, start)
        t0 = time.perf_counter()
        adv, targets, _ = advantage_fn(batch["obs"], batch["end_obs"], batch["rew"],
                                       batch["terminal"], batch["path_end"])
        t1 = time.perf_counter()
        learners["analytic"].step(batch["obs"], batch["act"], adv)
        t2 = time.perf_counter()
        fitter.fit(batch["obs"], targets)
        t3 = time.perf_counter()
        set_flat(policy.trainable_variables, start[:policy_size])
        learners["kl_hessian"].step(batch["obs"], batch["act"], adv)
        t4 = time.perf_counter()
        if r:  # the first call traces
            for key, dt in zip(times, (t1 - t0, t2 - t1, t4 - t3, t3 - t2)):
                times[key].append(dt)
    med = {k: statistics.median(v) for k, v in times.items()}
    total = med["advantage"] + med["update"] + med["value_fit"]
    record = write_result("" if FLAGS.smoke else FLAGS.out, {
        "bench": "update", "env": spec.gym_id, "batch_steps": n, "policy_params": policy_size,
        "cg_iters": cfg.cg_iters, "vf_epochs": cfg.vf_epochs, "seconds": med,
        "total_seconds": total, "peak_rss_mb": peak_rss_mb()})
    print(f"update {spec.gym_id} batch {n:,} policy {policy_size:,} params, CG {cfg.cg_iters}: "
          f"advantage {med['advantage']:.3f}s | TRPO step {med['update']:.3f}s (double backprop "
          f"{med['update_kl_hessian']:.3f}s, {med['update_kl_hessian'] / med['update']:.1f}x) | "
          f"value fit {med['value_fit']:.3f}s | total {total:.3f}s | peak RSS "
          f"{record['peak_rss_mb']:.0f} MB", flush=True)


if __name__ == "__main__":
    app.run(main)
