"""Shared by the benchmarks: results as JSON lines, peak RSS, the machine they ran on,
earlier vs_sb3 runs to merge, and the raw simulator's rate."""
import json
import os
import platform
import resource
import time


def peak_rss_mb():
    """Peak resident set size of this process (Linux reports KiB), plus finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


def machine():
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def write_result(path, record):
    """Append one JSON line (with time and machine) to `path`, unless path is empty."""
    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine(), **record}
    if path:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
    return record


def merged_runs(records, env, steps, trpo_flags, results):
    """Runs of earlier vs_sb3 records to add to results: same env and steps; SB3 runs whatever
    trpo_tf was configured as, trpo_tf runs only with the same trpo_flags; a (library, seed)
    already present is not added twice."""
    seen = {(r["library"], r["seed"]) for r in results}
    added = []
    for rec in records:
        if rec.get("bench") != "vs_sb3" or rec["env"] != env or rec["steps"] != steps:
            continue
        for r in rec["runs"]:
            key = (r["library"], r["seed"])
            if key not in seen and (r["library"] == "sb3" or rec["trpo_flags"] == trpo_flags):
                seen.add(key)
                added.append(r)
    return added


def raw_rate(spec, backend, num_envs, threads, steps, seed=0):
    """Steps/s of the backend's own vector API under random actions (pre-drawn)."""
    import gymnasium as gym
    import numpy as np

    from trpo_tf import envs

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
    if isinstance(space, gym.spaces.Discrete):
        actions = rng.integers(0, space.n, (n_steps, num_envs))
    else:
        actions = rng.uniform(space.low, space.high, (n_steps, num_envs) + space.shape).astype(np.float32)
    tic = time.perf_counter()
    for a in actions:
        step(a)
    rate = n_steps * num_envs / (time.perf_counter() - tic)
    pool.close()
    return rate
