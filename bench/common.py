"""Shared by the benchmarks: results as JSON lines, peak RSS, the machine they ran on, and
earlier vs_sb3 runs to merge."""
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
