"""`python -m trpo_tf.<tool> ...` and `python bench/<script>.py ...` for the tests without
paying Python's and TensorFlow's start-up (~4 s of CPU) per command: one server process per
test process imports TensorFlow and trpo_tf's modules once, then forks a child per command
that runs the module or script as __main__ with the command's argv, cwd, environment, stdout
and stderr. The child is a process of its own (its pid takes signals and kill -9; its exit
code or signal comes back), so tests of signals, exit codes and crashes keep what they check.
What a fork cannot reproduce runs as a plain subprocess instead: another interpreter, `-c`
or a script outside bench/, an environment that differs from the server's in a variable read
while modules load (MUST_MATCH), a cwd and PYTHONPATH from which a fresh interpreter would
not import the preloaded trpo_tf, or `fresh=True` (a test of what a command prints while its
modules load: those messages are the server's). A forked command's own training runs and
bench scripts (bench/returns.py's and bench/vs_sb3.py's children, started with
subprocess.run) fork from the server by the same rule (nested_run); its other commands (play's
video renderer, which must never load TensorFlow) stay plain subprocesses.

Protocol (a Unix socket, one connection per command): the client sends a JSON request with
the child's stdout and stderr pipe ends (SCM_RIGHTS); the server answers the child's pid, then
its wait status once it has exited.
"""
import atexit
import json
import os
import runpy
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

# What the server's modules read while they load (TensorFlow, Keras, MuJoCo, the BLAS and
# OpenMP pools, the interpreter, the locale): a command whose environment differs from the
# server's in one of these runs as a fresh process. Other variables may differ: modules set
# some in the tests' process as they load (TF2_BEHAVIOR, RAY_*, MPLBACKEND, LD_LIBRARY_PATH
# ...), and the child gets the command's environment before its module runs.
MUST_MATCH = ("TF_", "KERAS_", "MUJOCO_", "PYOPENGL", "OMP_", "OPENBLAS_", "MKL_", "CUDA_",
              "XLA_", "PYTHON", "LC_", "LANG", "HOME", "TMPDIR")
FREE_TO_DIFFER = ("PYTHONPATH", "PYTHONBREAKPOINT")  # run_child builds sys.path; read at use
# trpo_tf first (it sets TensorFlow's log level before TensorFlow loads, as in a command); no
# module that defines flags (a child's module defines them as a fresh process would)
PRELOAD = ("trpo_tf", "tensorflow", "keras", "trpo_tf.run.train", "trpo_tf.run.evaluate",
           "trpo_tf.run.export", "trpo_tf.envs", "trpo_tf.methods")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER_SYS_PATH = []  # the server's sys.path without its script's folder and ROOT
_subprocess_run = subprocess.run  # what `run` falls back to (a child's is `nested_run`)


# --- the server -------------------------------------------------------------------------------

def serve(path):
    """Preload, then fork one child per request until the client's end of `path` goes away."""
    import importlib

    global SERVER_SYS_PATH, _server
    SERVER_SYS_PATH = [p for p in sys.path if p not in (os.path.dirname(__file__), ROOT)]
    _server = (None, path, dict(os.environ))  # a child's client side: this server
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
            request, fds = read_request(conn)
            if request is None:  # the client went away mid-request
                conn.close()
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                for other in (listener, conn, *children.values()):
                    other.close()
                run_child(request, fds, wake_r, wake_w)
            for fd in fds:
                os.close(fd)
            conn.sendall(f"{pid}\n".encode())
            children[pid] = conn
            reap(children)


def read_request(conn):
    """(the JSON request, its two fds), or (None, []) if the connection ends before it does."""
    message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 2)
    while message and not message.endswith(b"\n"):  # the rest of a long request
        chunk = conn.recv(1 << 20)
        message = message + chunk if chunk else b""
    if not message:
        for fd in fds:
            os.close(fd)
        return None, []
    return json.loads(message), fds


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
    """In the forked child: become the command (fds 0-2, cwd, environment, sys.path, argv,
    signal handlers as a fresh interpreter sets them), run its module as __main__, and exit
    as the interpreter would. Never returns."""
    code, interrupted = 1, False
    try:
        signal.set_wakeup_fd(-1)
        for fd in (wake_r, wake_w):
            os.close(fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN if request["sigint_ignored"]
                      else signal.default_int_handler)  # Python's rule: only if not ignored
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDONLY)
        for fd, target in ((devnull, 0), (fds[0], 1), (fds[1], 2)):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        script = request.get("script")
        # a fresh interpreter's sys.path[0]: the script's folder, or the cwd under -m
        first = os.path.dirname(script) if script else request["cwd"]
        sys.path[:] = [first, *pythonpath(request["env"]), *SERVER_SYS_PATH]
        sys.argv = [script or request["module"], *request["args"]]
        subprocess.run = nested_run  # its own training runs fork from the server too
        try:
            if script:
                runpy.run_path(script, run_name="__main__")
            else:
                runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as done:
            code = done.code
            if not isinstance(code, int):
                if code is not None:
                    print(code, file=sys.stderr)
                code = 0 if code is None else 1
        except KeyboardInterrupt:  # as the interpreter: the traceback, then death by SIGINT
            sys.excepthook(*sys.exc_info())
            interrupted = True
        except BaseException:  # as the interpreter: the traceback, exit code 1
            sys.excepthook(*sys.exc_info())
            code = 1
        threading._shutdown()  # what the interpreter does at exit: wait for non-daemon threads
        atexit._run_exitfuncs()
    except BaseException:  # never back into the server's loop
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        if interrupted:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        os._exit(code & 0xFF)


def pythonpath(env):
    return [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]


# --- the client -------------------------------------------------------------------------------

_server = None


def server_path():
    """Start this process's server on first use; its socket path."""
    global _server
    if _server is None:
        folder = tempfile.mkdtemp(prefix="trpo_tf_zygote_")
        proc = subprocess.Popen([sys.executable, __file__, os.path.join(folder, "socket")],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the test zygote did not start")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        atexit.register(proc.kill)
        _server = (proc, os.path.join(folder, "socket"), dict(os.environ))
    return _server[1]


def bench_script(cmd, cwd):
    """The absolute path of the script `cmd` runs if it is `python bench/<script>.py ...` of
    this interpreter (each puts ROOT first on sys.path itself), else None."""
    if len(cmd) < 2 or cmd[0] != sys.executable or not cmd[1].endswith(".py"):
        return None
    path = os.path.join(os.path.abspath(cwd or "."), cmd[1])
    return path if os.path.isfile(path) and os.path.samefile(os.path.dirname(path),
                                                              os.path.join(ROOT, "bench")) else None


def forkable(cmd, env, cwd=None):
    """True if `env` equals the server's in every MUST_MATCH variable and `cmd` is a bench
    script (bench_script) or `python -m <module> ...` of this interpreter that a fresh
    interpreter started in `cwd` with env's PYTHONPATH would import trpo_tf for from where the
    server did (it is not installed: cwd or PYTHONPATH must hold ROOT)."""
    if env_differences(env):
        return False
    if bench_script(cmd, cwd):
        return True
    if len(cmd) < 3 or cmd[0] != sys.executable or cmd[1] != "-m":
        return False
    search = [os.path.abspath(cwd or "."), *pythonpath(env)]
    home = next((p for p in search if os.path.isfile(os.path.join(p, "trpo_tf", "__init__.py"))),
                None)
    return home is not None and os.path.samefile(home, ROOT)


def env_differences(env):
    """The MUST_MATCH variables in which `env` differs from the server's."""
    server_path()
    base = _server[2]
    return sorted(k for k in {*env, *base} if k.startswith(MUST_MATCH)
                  and k not in FREE_TO_DIFFER and env.get(k) != base.get(k))


class Child:
    """The part of subprocess.Popen the tests use, for a forked child."""

    def __init__(self, cmd, cwd=None, env=None, text=True):
        cwd = os.path.abspath(cwd or ".")
        if not os.path.isdir(cwd):
            raise FileNotFoundError(f"no such directory: {cwd!r}")
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self._conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._conn.connect(server_path())
        script = bench_script(cmd, cwd)
        request = {**({"script": script, "args": list(cmd[2:])} if script
                      else {"module": cmd[2], "args": list(cmd[3:])}),
                   "cwd": cwd, "env": dict(os.environ if env is None else env),
                   "sigint_ignored": signal.getsignal(signal.SIGINT) == signal.SIG_IGN}
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
        """Read stdout and stderr to their ends (a thread each, as Popen does), then wait: all
        within `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        left = lambda: None if deadline is None else max(0.0, deadline - time.monotonic())
        results = {}

        def read(name, stream):
            results[name] = stream.read()
            stream.close()

        readers = [threading.Thread(target=read, args=(n, s), daemon=True)
                   for n, s in (("out", self.stdout), ("err", self.stderr))]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(left())
            if reader.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(left())
        return results["out"], results["err"]


def forks(cmd, cwd, env, fresh, other_arguments):
    """Whether a command the tests start goes to the server: none of subprocess's other
    arguments, not `fresh`, and forkable."""
    return (not other_arguments and not fresh
            and forkable(cmd, os.environ if env is None else env, cwd))


def Popen(cmd, stdout=None, stderr=None, text=False, cwd=None, env=None, fresh=False, **kwargs):
    """subprocess.Popen, forked from the server where that gives the same process."""
    if stdout == stderr == subprocess.PIPE and forks(cmd, cwd, env, fresh, kwargs):
        return Child(cmd, cwd, env, text)
    return subprocess.Popen(cmd, stdout=stdout, stderr=stderr, text=text, cwd=cwd, env=env,
                            **kwargs)


def run(cmd, capture_output=False, text=None, timeout=None, cwd=None, env=None, fresh=False,
        **kwargs):
    """subprocess.run(capture_output=True), forked from the server where that gives the same
    process (`fresh`: never)."""
    if not (capture_output and forks(cmd, cwd, env, fresh, kwargs)):
        return _subprocess_run(cmd, capture_output=capture_output, text=text, timeout=timeout,
                              cwd=cwd, env=env, **kwargs)
    child = Child(cmd, cwd, env, text)
    try:
        out, err = child.communicate(timeout)
    except BaseException:  # a timeout, or an interrupt of the caller: as subprocess.run
        child.kill()
        child.wait()
        raise
    return subprocess.CompletedProcess(cmd, child.returncode, out, err)


def nested_run(*args, **kwargs):
    """subprocess.run inside a forked command, taking what subprocess.run takes: a training run
    (`python -m trpo_tf.launch`) or a bench script forks from the server where `run` would fork
    it; any other command, and vs_sb3's SB3 side (it must run without TensorFlow), runs as a
    plain subprocess (play's video renderer must not inherit the server's TensorFlow either:
    BUILD_NOTES, rendering)."""
    cmd = args[0] if args else kwargs.get("args")
    forked = (len(args) <= 1 and isinstance(cmd, (list, tuple)) and "--child=sb3" not in cmd
              and (bench_script(cmd, kwargs.get("cwd")) is not None
                   or list(cmd[1:3]) == ["-m", "trpo_tf.launch"]))
    if forked:
        return run(cmd, **{k: v for k, v in kwargs.items() if k != "args"})
    return _subprocess_run(*args, **kwargs)


if __name__ == "__main__":
    serve(sys.argv[1])
