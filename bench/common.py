"""Shared by the benchmarks: results as JSON lines, peak RSS, the machine they ran on."""
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
