"""Sampling on a Ray cluster (--workers=N, --ray_address): the shape of RLlib's EnvRunners on
plain Ray actors.

Each worker is a Ray actor (`SamplingWorker`) hosting the run's `ShareSampler`: its own env
group (--num_envs envs), a copy of the policy for acting and the method's own sampler on its
share of the iteration (Method.share: a part of --batch_steps; vine's trunks and rollout set).
A run that ends leaves its actors to the next run of the process (`idle_workers`), which
builds its own ShareSamplers in them. Every iteration the learner puts the policy weights
(the observation normaliser's statistics are among them) in the object store once; the
workers sample; their NumPy batches are concatenated in worker order (`merge_batches`) into
the one batch the method's tf.data stream and update take, as if one sampler had stepped all
the envs.

Worker w's random streams are spawned from the run's seed (`worker_streams`), so for a fixed
seed and worker count the batches are the same on every run, and equal to those of the same
ShareSamplers run one after another in one process (tested). A worker that dies is restarted
by Ray, told its restart count (its envs start new episodes on fresh streams, derived from
the seed, the worker and the count: a restart never replays the first batch's randomness) and
its share is sampled again with the same weights: an iteration never has fewer samples than
asked for. Ray is imported only here, only when a run has workers.
"""
import copy
import logging
import os
import socket

import numpy as np

from trpo_tf import seeding
from trpo_tf.errors import ConfigError, EnvStepError, first_line

MAX_RESTARTS = 3      # deaths per worker and run; one more stops the run
WORKER_STREAMS = 1000  # worker w's streams: child WORKER_STREAMS + w of the run's SeedSequence
RESTART_STREAMS = 1000  # after restart r: grandchild (WORKER_STREAMS + w, RESTART_STREAMS + r)
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAY_INIT = dict(logging_level=logging.ERROR, log_to_driver=False, include_dashboard=False)
# What a run's Ray job carries to every node of a cluster: this package (uploaded by Ray) and
# TensorFlow held quiet. No node needs trpo_tf installed, only the requirements.
CLUSTER_RUNTIME_ENV = {"py_modules": [PACKAGE_DIR], "env_vars": {"TF_CPP_MIN_LOG_LEVEL": "3"}}


def local_instance_environment():
    """What a local Ray instance's processes need in their environment, as they get no runtime
    env: this package's parent directory on PYTHONPATH (unless it is a site directory, which
    every interpreter searches anyway) and TensorFlow quiet -> {variable: value}."""
    import site

    parent, path = os.path.dirname(PACKAGE_DIR), os.environ.get("PYTHONPATH", "")
    site_dirs = site.getsitepackages() + [site.getusersitepackages()]
    if parent in site_dirs or parent in path.split(os.pathsep):
        return {"TF_CPP_MIN_LOG_LEVEL": "3"}
    return {"TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONPATH": os.pathsep.join(p for p in (parent, path) if p)}


def init_ray(ray, address, num_cpus=None):
    """ray.init for a run's Ray job: joined to the cluster at `address` (its runtime env ships
    this package), or, when empty, a local instance on `num_cpus` (default: this machine's
    cores) whose processes inherit local_instance_environment(), set in this process only
    while ray.init starts them. (A runtime env's workers are started for it: packaging the
    package and starting them took 0.9 s against 0.2 s for two actors here, and the
    instance's prestarted workers went unused.)"""
    if address:
        return ray.init(address=address, runtime_env=CLUSTER_RUNTIME_ENV, **RAY_INIT)
    changes = local_instance_environment()
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    try:
        return ray.init(num_cpus=num_cpus or os.cpu_count(), **RAY_INIT)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value


def worker_streams(seed, worker, restart=0):
    """{consumer: SeedSequence} of worker `worker` after `restart` restarts: independent of the
    run's own streams (children 0 ... 7 of SeedSequence(seed)), of every other worker's and of
    its own before each restart (restart 0's spawn keys are (WORKER_STREAMS + w, k), k < 8)."""
    key = (WORKER_STREAMS + worker,) + ((RESTART_STREAMS + restart,) if restart else ())
    root = np.random.SeedSequence(seed, spawn_key=key)
    return dict(zip(seeding.STREAMS, root.spawn(len(seeding.STREAMS))))


def acting_weights(policy, value_net=None):
    """What a worker acts with: the policy's weights (its normaliser's statistics among them),
    then a recurrent value baseline's trainable ones (None: no baseline's)."""
    value = [] if value_net is None else [v.numpy() for v in value_net.trainable_variables]
    return policy.get_weights() + value


def set_acting_weights(policy, value_net, weights):
    """acting_weights' list `weights` into a worker's copies."""
    policy.set_weights(weights[:len(policy.weights)])
    if value_net is not None:
        for variable, value in zip(value_net.trainable_variables, weights[len(policy.weights):]):
            variable.assign(value)


class ShareSampler:
    """Worker `worker` of `workers` after `restarts` restarts: its env group, a policy copy and
    the method's sampler on its share. Hosted by a SamplingWorker actor in a run; the same
    class in one process is the reference."""

    def __init__(self, cfg, worker, workers, restarts=0):
        self.cfg, self.worker, self.workers = cfg, worker, workers
        self.envs = None
        self.restarted(restarts)

    def restarted(self, restarts):
        """(Re)build the env group, policy copy and sampler on the streams of restart
        `restarts` (0: the first start; the learner's retried share names the restart count:
        `sample`)."""
        from trpo_tf import distributions, envs, methods, policies

        cfg, worker, workers = self.cfg, self.worker, self.workers
        if self.envs is not None:
            self.envs.close()
        self.restarts = restarts
        method = methods.method_for(cfg)
        seeds = worker_streams(cfg.seed, worker, restarts)
        spec = envs.resolve_env(cfg.env, cfg.atari, cfg.make_kwargs)
        _, self.envs = method.make_envs(cfg, spec, seeds)
        dist = distributions.for_action_space(self.envs.action_space)
        self.policy = policies.build_policy(self.envs.observation_space.shape, dist,
                                            **cfg.policy_settings(spec))
        # a recurrent value baseline's copy: the sampler carries its state (its cell's)
        self.value_net = (policies.build_value_net(
            self.policy, self.envs.observation_space.shape, **cfg.value_settings())
            if cfg.value_cell != "none" else None)
        self.sampler = method.make_sampler(method.share(cfg, worker, workers), self.envs, dist,
                                           seeds, self.policy)

    def sample(self, weights, share, restarts=0):
        """One share of the batch, acting with the learner's `weights` (acting_weights');
        `share`: what the learner sends this worker alone (CEM / CMA: its candidates), as
        keyword arguments; `restarts`: the worker's restart count as the learner knows it (one
        task: the rebuild on a restart's streams and the retried share cannot be run apart)."""
        from trpo_tf.sampling.single_path import value_step_kwargs

        if restarts != self.restarts:
            self.restarted(restarts)
        set_acting_weights(self.policy, self.value_net, weights)
        return self.sampler.sample(self.policy.numpy_fn(), **value_step_kwargs(self.value_net),
                                   **share)

    def state(self):
        return self.sampler.state()

    def load_state(self, state):
        """`state` as state() gave it; copied, since arrays from Ray's object store are
        read-only and the sampler writes into its own."""
        self.sampler.load_state(copy.deepcopy(state))

    def close(self):
        self.envs.close()


class SamplingWorker:
    """The Ray actor behind a worker: it hosts the ShareSampler of the run whose task it runs,
    built on that run's first task (or the first after a restart). Every task names its run's
    `job` (a run token, the Config, the worker's index and the count), so the constructor
    takes nothing: an actor Ray restarts and one a finished run handed on (`idle_workers`)
    start alike, and a process pays its start and TensorFlow's import (~5 s of CPU) once,
    not once per run (--seeds, the tuner's trials, a sweep's runs)."""

    def __init__(self):
        from trpo_tf import tf_logs

        tf_logs.skip_optional_modules()  # the process is this actor's (TensorFlow is to come)
        self.run, self.share = None, None

    def hosting(self, job, restarts):
        """The ShareSampler of `job` on the streams of restart `restarts` (built unless this
        actor already holds that run's)."""
        run, cfg, worker, workers = job
        if self.run != run:
            self.release()
            self.share, self.run = ShareSampler(cfg, worker, workers, restarts), run
        return self.share

    def prepare(self, job):
        """Build the share of `job` (its first start) before its first batch is asked for."""
        self.hosting(job, 0)

    def sample(self, job, weights, share, restarts):
        return self.hosting(job, restarts).sample(weights, share, restarts)

    def state(self, job):
        """The sampler's state, or None if this actor holds no sampler of `job` (Ray restarted
        it since its last task: the checkpoint then has no sampler state)."""
        return self.share.state() if self.run == job[0] else None

    def load_state(self, job, restarts, state):
        self.hosting(job, restarts).load_state(state)

    def release(self):
        """Close the hosted run's envs (the run ended); the actor waits for the next."""
        share, self.run, self.share = self.share, None, None
        if share is not None:
            share.close()

    def pid(self):
        return os.getpid()


# Scalar fields of a batch: these add up over the shares; times are the slowest share's (the
# shares run side by side); any other scalar (vine's mean Q spread) is the shares' mean.
SUMMED_SCALARS = ("sim_steps",)


def merge_batches(batches):
    """The shares' batches as one: arrays concatenated along their first axis in worker order
    (each share is env-major, so the whole is too, and segment ends keep the order of their
    end observations); scalars as SUMMED_SCALARS says."""
    merged = {}
    for key in batches[0]:
        values = [b[key] for b in batches]
        if np.ndim(values[0]):
            merged[key] = np.concatenate(values, axis=0)
        elif key in SUMMED_SCALARS:
            merged[key] = np.float32(np.sum(values))
        elif key.startswith("time_"):
            merged[key] = np.float32(np.max(values))
        else:
            merged[key] = np.float32(np.mean(values))
    return merged


LOCAL_RAY_REAPER = []  # the child that ends a local Ray instance with this process (ray_reaper)


def find_auto_address():
    """What --ray_address=auto joins (RAY_ADDRESS, else the cluster last started on this
    machine, else any running here: Ray's own lookup) as host:port, or a ConfigError at once
    if there is none."""
    from ray._private.services import canonicalize_bootstrap_address

    try:
        return canonicalize_bootstrap_address("auto")
    except ConnectionError:
        raise ConfigError("--ray_address=auto: no Ray cluster runs on this machine and "
                          "RAY_ADDRESS is not set; start one with `ray start --head`, give its "
                          "HOST:PORT, or leave the flag empty for a local instance") from None


def check_reachable(address):
    """A ConfigError at once if host:port does not answer (Ray itself waits about a minute)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray_address={address!r} is neither empty, auto nor host:port")
    if host.startswith("[") and host.endswith("]"):  # an IPv6 address, [::1]:6379
        host = host[1:-1]
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise ConfigError(f"--ray_address={address}: no Ray cluster answers there ({err}); start "
                          "one with `ray start --head`, or leave the flag empty for a local one")


def connect(address):
    """Ray, joined to the cluster at `address` (or a local instance on this machine's cores
    when empty; init_ray). A process joins once: later runs in it (--seeds, the tuner, the
    tests' shared instance) keep that session, since Ray cannot ship this package to a
    cluster from a second session of the same process; ray.init's exit hook ends it (and
    stops a local instance) when the process ends, and main_guard does on an interrupt.
    `address` has passed checks.check_run (it answers)."""
    import ray

    if ray.is_initialized():
        return ray
    from trpo_tf.run import ray_reaper

    children_before = set(ray_reaper.children().get(os.getpid(), []))
    try:
        init_ray(ray, address)
    except Exception as err:  # ConnectionError, RuntimeError, ...: Ray's own words, one line
        raise ConfigError(f"--ray_address={address or '(local)'}: cannot start or join Ray "
                          f"({first_line(err)})") from None
    if not address:  # the local instance's processes: the children ray.init started
        started = set(ray_reaper.children().get(os.getpid(), [])) - children_before
        LOCAL_RAY_REAPER.append(ray_reaper.start(sorted(started)))
    return ray


# SamplingWorker actors that finished runs of this process left for the next: the Ray
# session they belong to (node and job ids), the CPUs each holds, and the actors.
IDLE_WORKERS = {"session": None, "cpus": None, "actors": []}


def ray_session(ray):
    """What tells this process's Ray sessions apart: (node id, job id); a new local instance
    has a new node, a reconnection to a cluster a new job."""
    context = ray.get_runtime_context()
    return context.get_node_id(), context.get_job_id()


def idle_workers(ray, cpus, count):
    """Up to `count` idle SamplingWorker actors of this process's Ray session that hold `cpus`
    each, taken from IDLE_WORKERS; idle ones of another session are dropped (their session
    ended), and of another size stopped (they would hold CPUs the new actors need)."""
    session = ray_session(ray)
    if (IDLE_WORKERS["session"], IDLE_WORKERS["cpus"]) != (session, cpus):
        if IDLE_WORKERS["session"] == session:
            for actor in IDLE_WORKERS["actors"]:
                ray.kill(actor)
        IDLE_WORKERS.update(session=session, cpus=cpus, actors=[])
    actors = IDLE_WORKERS["actors"]
    taken, actors[:] = actors[:count], actors[count:]
    return taken


class RaySampler:
    """The run's sampler with --workers: a SamplingWorker actor per worker (idle ones an
    earlier run of this process left first), restarted by Ray when it dies. Same interface
    as the in-process samplers; `log` prints a line."""
    state_needs_same_envs = True

    def __init__(self, cfg, policy, log, value_net=None):
        """`value_net`: a recurrent value baseline whose weights go to the workers with the
        policy's (their samplers carry its state)."""
        import uuid

        self.ray = connect(cfg.ray_address)
        self.policy, self.log, self.value_net = policy, log, value_net
        cpus = min(1.0, self.ray.cluster_resources().get("CPU", 1.0) / cfg.workers)
        # Ray restarts a worker whenever it dies (an actor outlives its run: Ray's count would
        # span runs); the learner allows MAX_RESTARTS deaths per worker and run
        actor = self.ray.remote(SamplingWorker).options(
            num_cpus=cpus, max_restarts=-1, max_task_retries=0)
        self.pool_key = (ray_session(self.ray), cpus)
        self.workers = idle_workers(self.ray, cpus, cfg.workers)
        self.workers += [actor.remote() for _ in range(cfg.workers - len(self.workers))]
        self.jobs = [self.ray.put((uuid.uuid4().hex, cfg, w, cfg.workers))
                     for w in range(cfg.workers)]
        for w, job in zip(self.workers, self.jobs):  # envs built while the learner sets up
            w.prepare.remote(job)
        self.busy = set()  # workers whose share of the batch being gathered is not in yet
        self.deaths = [0] * cfg.workers
        self.restarts = 0
        self.batches_produced = 0
        self.progress = 0  # steps of the shares gathered so far in this iteration

    def submit(self, shares=None):
        """Broadcast the weights once and start every worker's share (`shares`: what each is
        sent besides; nothing by default) -> (weights ref, shares, {ref: worker})."""
        weights = self.ray.put(acting_weights(self.policy, self.value_net))
        shares = shares or [{}] * len(self.workers)
        self.busy = set(range(len(self.workers)))
        return weights, shares, {w.sample.remote(job, weights, share, self.deaths[i]): i
                                 for i, (w, job, share) in enumerate(zip(self.workers, self.jobs,
                                                                         shares))}

    def gather(self, weights, shares, pending):
        """Wait for every share; a share whose worker died is sampled again (same weights) on
        the worker Ray restarted -> the merged batch."""
        from ray.exceptions import RayActorError

        batches = [None] * len(self.workers)
        self.progress = 0
        while pending:
            (ref,), _ = self.ray.wait(list(pending), num_returns=1)
            worker = pending.pop(ref)
            try:
                batches[worker] = self.ray.get(ref)
            except RayActorError as err:
                self.deaths[worker] += 1
                if self.deaths[worker] > MAX_RESTARTS:
                    raise EnvStepError(f"sampling worker {worker} died {self.deaths[worker]} "
                                       f"times; the last: {first_line(err)}") from None
                self.restarts += 1
                self.log(f"sampling worker {worker} died ({first_line(err)}); Ray restarts it "
                         "and its share of this iteration is sampled again")
                # Ray holds the retry until the worker is back (a task sent while it restarts
                # would fail again); deaths are counted here, once each
                retry = self.workers[worker].sample.options(max_task_retries=-1)
                pending[retry.remote(self.jobs[worker], weights, shares[worker],
                                     self.deaths[worker])] = worker
                continue
            self.busy.discard(worker)
            self.progress += int(batches[worker]["sim_steps"])
        self.batches_produced += 1
        return merge_batches(batches)

    def sample(self, params_fn, value_step=None):
        """One batch (params_fn and value_step are unused: the workers act with their copies
        of the weights)."""
        del params_fn, value_step
        return self.gather(*self.submit())

    def play_candidates(self, candidates, seeds):
        """CEM / CMA: the candidates (with their reset seeds) in contiguous blocks, one per
        worker -> the batch of their episodes, in the candidates' order."""
        blocks = np.array_split(np.arange(len(candidates)), len(self.workers))
        return self.gather(*self.submit([{"candidates": candidates[b],
                                          "seeds": [seeds[i] for i in b]} for b in blocks]))

    def state(self):
        """The workers' sampler states, or None if any cannot be saved (or a worker died
        since the batch: the checkpoint then has no sampler state, a resume new episodes)."""
        from ray.exceptions import RayActorError

        try:
            states = self.ray.get([w.state.remote(job) for w, job in zip(self.workers, self.jobs)])
        except RayActorError:
            return None
        return None if any(s is None for s in states) else states

    def load_state(self, states):
        """Each worker's state as state() gave it (the run record holds --workers: a resume
        with another count starts new episodes instead)."""
        self.ray.get([w.load_state.remote(job, deaths, s) for w, job, deaths, s
                      in zip(self.workers, self.jobs, self.deaths, states)])

    def close(self):
        """Release the workers' envs and leave the workers that never died in this run and
        have no share left to sample (a second Ctrl-C leaves one running) to the next run of
        this process, if the pool still takes actors of their session and size; stop the
        others. Closing again does nothing. The Ray session ends with the process: see
        connect."""
        pooled = (IDLE_WORKERS["session"], IDLE_WORKERS["cpus"]) == self.pool_key
        for i, w in enumerate(self.workers):
            if pooled and not self.deaths[i] and i not in self.busy:
                w.release.remote()
                IDLE_WORKERS["actors"].append(w)
            else:
                self.ray.kill(w)
        self.workers = []
