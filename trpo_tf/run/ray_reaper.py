"""The local Ray instance's processes end with the learner, however it ends (kill -9 too).

Ray's own fate-sharing stops its core processes when the driver dies, but its dashboard and
runtime-env agents wait for a timeout of their own (40-80 s measured here) before they notice.
`start(pids)` starts this file as a small child (plain Python: nothing of trpo_tf, no
TensorFlow) holding the read end of a pipe only the learner writes to: when the learner exits,
cleanly or not, the pipe closes, and the child ends the processes it was given (and their
children), each only if it is still the process it was (same start time: a recycled pid is
left alone). SIGTERM first, SIGKILL after GRACE seconds.
"""
import json
import os
import signal
import subprocess
import sys
import time

GRACE = 3.0


def start_time(pid):
    """The process's start time (in clock ticks since boot), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def children():
    """{ppid: [pid, ...]} of every process, read from /proc."""
    tree = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(pids):
    """`pids` and every process below them, read from /proc."""
    tree, found, todo = children(), [], list(pids)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += tree.get(pid, [])
    return found


def with_descendants(pids):
    """`pids` and every process below them, as [(pid, start time)]."""
    return [(pid, t) for pid in descendants(pids) if (t := start_time(pid)) is not None]


def start(pids):
    """The reaper of `pids` (and their children) -> its Popen; keep it referenced: its pipe
    is what tells it this process is alive."""
    return subprocess.Popen([sys.executable, os.path.abspath(__file__),
                             json.dumps(with_descendants(pids))],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


def end(targets):
    """SIGTERM to those of `targets` [(pid, start time)] still running, SIGKILL to any left
    after GRACE seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [pid for pid, t in targets if start_time(pid) == t]
        for pid in alive:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + GRACE
        while alive and time.monotonic() < deadline:
            time.sleep(0.1)
            alive = [pid for pid, t in targets if start_time(pid) == t]
        if not alive:
            return


def main():
    targets = json.loads(sys.argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the terminal is the learner's
    sys.stdin.buffer.read()  # returns when the learner's end of the pipe closes
    pids = [pid for pid, t in targets if start_time(pid) == t]
    end(targets + [pt for pt in with_descendants(pids) if list(pt) not in targets])


if __name__ == "__main__":
    main()
