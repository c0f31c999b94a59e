"""`python -m trpo_tf.<tool> ...` for the tests without paying Python's and TensorFlow's
start-up (~4 s of CPU) per command: one server process per test process imports TensorFlow
and trpo_tf's modules once, then forks a child per command that runs the module as __main__
with the command's argv, cwd, environment, stdout and stderr. The child is a process of its
own (its pid takes signals and kill -9; its exit code or signal comes back), so tests of
signals, exit codes and crashes keep what they check. What a fork cannot reproduce runs as a
plain subprocess instead: another interpreter, or environment variables that TensorFlow or
Python read at import (TF_*, PYTHON*, KERAS_*, MUJOCO_*) set differently from the server's.
Messages that TensorFlow prints while it is imported are the server's, never a child's:
tests/test_tf_logs.py checks those in fresh processes.

Protocol (a Unix socket, one connection per command): the client sends a JSON request with
the child's stdout and stderr pipe ends (SCM_RIGHTS); the server answers the child's pid, then
its wait status once it has exited.
"""
import atexit
import json
import os
import runpy
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback

IMPORT_TIME_PREFIXES = ("TF_", "PYTHON", "KERAS_", "MUJOCO_")
# trpo_tf first (it sets TensorFlow's log level before TensorFlow loads, as in a command); no
# module that defines flags (a child's module defines them as a fresh process would)
PRELOAD = ("trpo_tf", "tensorflow", "keras", "trpo_tf.run.train", "trpo_tf.run.evaluate",
           "trpo_tf.run.export", "trpo_tf.envs", "trpo_tf.methods")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER_SYS_PATH = []  # the server's sys.path without its script's folder and ROOT


# --- the server -------------------------------------------------------------------------------

def serve(path):
    """Preload, then fork one child per request until the client's end of `path` goes away."""
    import importlib

    global SERVER_SYS_PATH
    SERVER_SYS_PATH = [p for p in sys.path if p not in (os.path.dirname(__file__), ROOT)]
    for module in PRELOAD:
        importlib.import_module(module)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select through wake_w
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    print("ready", flush=True)  # the client waits for this line
    children = {}  # pid -> the connection that asked for it
    while True:
        try:
            ready, _, _ = select.select([listener, wake_r, sys.stdin], [], [])
        except InterruptedError:
            continue
        if sys.stdin in ready and not sys.stdin.readline():  # the client exited
            return
        if wake_r in ready:
            os.read(wake_r, 1024)
            reap(children)
        if listener in ready:
            conn, _ = listener.accept()
            message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 2)
            while not message.endswith(b"\n"):  # the rest of a long request
                message += conn.recv(1 << 20)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                listener.close()
                conn.close()
                run_child(json.loads(message), fds, wake_r, wake_w)
            for fd in fds:
                os.close(fd)
            conn.sendall(f"{pid}\n".encode())
            children[pid] = conn
            reap(children)


def reap(children):
    """Send each exited child's wait status to its connection."""
    for pid in list(children):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            conn = children.pop(pid)
            try:
                conn.sendall(f"{status}\n".encode())
            except OSError:  # the client went away
                pass
            conn.close()


def run_child(request, fds, wake_r, wake_w):
    """In the forked child: become the command (fds 0-2, cwd, environment, argv, signal
    handlers as a fresh interpreter has them), run its module as __main__, exit as it would."""
    signal.set_wakeup_fd(-1)
    for fd in (wake_r, wake_w):
        os.close(fd)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDONLY)
    for fd, target in ((devnull, 0), (fds[0], 1), (fds[1], 2)):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    extra = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [request["cwd"], *extra, *SERVER_SYS_PATH]  # as `python -m` builds it
    sys.argv = [request["module"], *request["args"]]
    code = 0
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    except SystemExit as done:
        code = done.code
        if not isinstance(code, int):
            if code is not None:
                print(code, file=sys.stderr)
            code = 0 if code is None else 1
    except KeyboardInterrupt:  # as the interpreter: the traceback, then death by SIGINT
        traceback.print_exc()
        code = -signal.SIGINT
    except BaseException:  # as the interpreter: the traceback, exit code 1
        traceback.print_exc()
        code = 1
    try:
        threading._shutdown()  # what the interpreter does at exit: wait for non-daemon threads
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        if code == -signal.SIGINT:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        os._exit(code)


# --- the client -------------------------------------------------------------------------------

_server = None


def server_path():
    """Start this process's server on first use; its socket path."""
    global _server
    if _server is None:
        path = os.path.join(tempfile.mkdtemp(prefix="trpo_tf_zygote_"), "socket")
        proc = subprocess.Popen([sys.executable, __file__, path], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": ROOT})
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the test zygote did not start")
        atexit.register(proc.kill)
        _server = (proc, path, dict(os.environ))
    return _server[1]


def forkable(cmd, env):
    """True if `cmd` is `python -m <module> ...` of this interpreter and `env` agrees with the
    server's on every variable read at import."""
    if len(cmd) < 3 or cmd[0] != sys.executable or cmd[1] != "-m":
        return False
    server_path()
    base = _server[2]
    keys = {k for k in (*env, *base) if k.startswith(IMPORT_TIME_PREFIXES)}
    return all(env.get(k) == base.get(k) for k in keys if k != "PYTHONPATH")  # run_child sets it


class Child:
    """The part of subprocess.Popen the tests use, for a forked child."""

    def __init__(self, cmd, cwd=None, env=None, text=True):
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._conn.connect(server_path())
        request = {"module": cmd[2], "args": list(cmd[3:]), "cwd": os.path.abspath(cwd or "."),
                   "env": dict(os.environ if env is None else env)}
        socket.send_fds(self._conn, [json.dumps(request).encode() + b"\n"], [out_w, err_w])
        os.close(out_w)
        os.close(err_w)
        mode = "r" if text else "rb"
        self.stdout, self.stderr = open(out_r, mode), open(err_r, mode)
        self._replies = b""
        self.args, self.returncode = cmd, None
        self.pid = int(self._reply(None))

    def _reply(self, timeout):
        """The server's next line (the pid, then the wait status); None after `timeout` s."""
        while b"\n" not in self._replies:
            if not select.select([self._conn], [], [], timeout)[0]:
                return None
            chunk = self._conn.recv(4096)
            if not chunk:
                raise RuntimeError("the test zygote went away")
            self._replies += chunk
        line, self._replies = self._replies.split(b"\n", 1)
        return line

    def send_signal(self, signum):
        if self.returncode is None:
            os.kill(self.pid, signum)

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)

    def poll(self):
        return self._status(0)

    def wait(self, timeout=None):
        if self._status(timeout) is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def _status(self, timeout):
        """returncode once the child has exited (as Popen: minus the signal that ended it)."""
        if self.returncode is None:
            status = self._reply(timeout)
            if status is None:
                return None
            status = int(status)
            self.returncode = (-os.WTERMSIG(status) if os.WIFSIGNALED(status)
                               else os.WEXITSTATUS(status))
            self._conn.close()
        return self.returncode

    def communicate(self, timeout=None):
        """Read stdout and stderr to their ends (a thread each, as Popen does), then wait."""
        results = {}

        def read(name, stream):
            results[name] = stream.read()
            stream.close()

        readers = [threading.Thread(target=read, args=(n, s), daemon=True)
                   for n, s in (("out", self.stdout), ("err", self.stderr))]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(timeout)
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(timeout)
        return results["out"], results["err"]


def Popen(cmd, stdout=None, stderr=None, text=False, cwd=None, env=None, **kwargs):
    """subprocess.Popen, forked from the server where that gives the same process."""
    if (stdout == stderr == subprocess.PIPE and not kwargs and forkable(cmd, env or os.environ)):
        return Child(cmd, cwd, env, text)
    return subprocess.Popen(cmd, stdout=stdout, stderr=stderr, text=text, cwd=cwd, env=env,
                            **kwargs)


def run(cmd, capture_output=False, text=False, timeout=None, cwd=None, env=None, **kwargs):
    """subprocess.run(capture_output=True), forked from the server where that gives the same
    process."""
    if not (capture_output and not kwargs and forkable(cmd, env or os.environ)):
        return subprocess.run(cmd, capture_output=capture_output, text=text, timeout=timeout,
                              cwd=cwd, env=env, **kwargs)
    child = Child(cmd, cwd, env, text)
    try:
        out, err = child.communicate(timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        raise
    return subprocess.CompletedProcess(cmd, child.returncode, out, err)


if __name__ == "__main__":
    serve(sys.argv[1])
