"""Sampling on Ray (--workers): trajectories equal to the same env split in one process,
single path and vine training with 2 workers, a worker killed mid-iteration, a two-node
cluster joined through --ray_address, and Ctrl-C leaving no Ray process behind. One local Ray
instance serves the tests of this module that run in this process."""
import dataclasses
import os
import select
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import ray

import zygote
from trpo_tf.config import Config
from trpo_tf.run.train import Trainer, train
from trpo_tf.run import distributed, ray_reaper
from trpo_tf.run.distributed import ShareSampler, init_ray, merge_batches

LAUNCH = [sys.executable, "-m", "trpo_tf.launch"]
pytestmark = pytest.mark.xdist_group("ray")  # Ray's clusters: one test process's (pytest.ini)


def descendants(pid):
    """The pids of every process below `pid` (read from /proc)."""
    return ray_reaper.descendants([pid])[1:]


def still_running(pids, timeout):
    """Those of `pids` that have not exited within `timeout` seconds in all (waiting on each
    one's pidfd, which becomes readable when it exits)."""
    deadline, left = time.monotonic() + timeout, []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                left.append(pid)
        finally:
            os.close(fd)
    return left


def test_a_two_node_cluster_is_joined_through_ray_address(tmp_path):
    """Two Ray nodes on this machine (ray.cluster_utils.Cluster, one CPU each, started from
    this process without connecting it); the run joins them by address, and its two workers
    sample on both nodes."""
    from ray.cluster_utils import Cluster

    sigterm = signal.getsignal(signal.SIGTERM)  # Cluster installs Ray's for its shutdown
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        out = zygote.run(LAUNCH + ["--workers=2", "--ray_address=" + cluster.address,
                                   "--iterations=1", "--batch_steps=400", "--num_envs=2",
                                   "--eval_every=0", f"--logdir={tmp_path / 'run'}"],
                         capture_output=True, text=True, timeout=240)
    finally:
        cluster.shutdown()
        signal.signal(signal.SIGTERM, sigterm)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 Ray workers x 2 gymnasium envs x 100 steps per iteration" in out.stdout
    assert "it    1/1 | steps       400" in out.stdout
    assert os.path.isfile(tmp_path / "run" / "policy" / "saved_model.pb")


def test_a_cluster_that_does_not_answer_is_one_line_and_exit_2(tmp_path):
    out = zygote.run(LAUNCH + ["--workers=2", "--ray_address=127.0.0.1:9",
                                   f"--logdir={tmp_path}"], capture_output=True, text=True,
                     timeout=300)
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --ray_address=127.0.0.1:9: no Ray "
                                                   "cluster answers there"), out.stderr


def test_ray_address_auto_without_a_cluster_is_one_line_before_anything_starts(
        tmp_path, capsys, monkeypatch):
    """Ray's lookup for 'auto' finds nothing (no RAY_ADDRESS, no cluster on this machine):
    refused by the checks, before the run makes its envs, Ray session or event file."""
    from ray._private import services

    from commands import launch_here

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(services, "find_gcs_addresses", lambda: [])
    monkeypatch.setattr(services, "find_bootstrap_address", lambda temp_dir: None)
    out = launch_here(capsys, "--workers=2", "--ray_address=auto", f"--logdir={tmp_path}")
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(
        "error: --ray_address=auto: no Ray cluster runs on this machine"), out.stderr
    assert os.listdir(tmp_path) == []


def test_a_run_without_workers_never_imports_ray(tmp_path):
    """In a command's process (forked from the zygote, which imported the run's modules as a
    fresh interpreter does and never Ray)."""
    (tmp_path / "ray_probe.py").write_text(
        "import sys\nfrom trpo_tf import launch\nfrom trpo_tf.run import train\n"
        "print('ray' in sys.modules)\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{zygote.ROOT}"}
    cmd = [sys.executable, "-m", "ray_probe"]
    assert zygote.forkable(cmd, env, tmp_path)
    out = zygote.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert out.stdout == "False\n", out.stderr


@pytest.fixture(scope="module")
def local_ray():
    """8 logical CPUs on this machine's 2: every run's workers (one CPU each, as in a run)
    and the idle workers earlier runs left fit, whatever order the tests run in."""
    before = dict(os.environ)
    init_ray(ray, "", num_cpus=8)
    yield before
    ray.shutdown()


def test_a_local_instance_leaves_this_process_environment_as_it_was(local_ray):
    """Its processes got PYTHONPATH and TensorFlow's log level while ray.init started them;
    this process (and what it starts later) keeps its own (Ray sets variables of its own)."""
    for name in ("PYTHONPATH", "TF_CPP_MIN_LOG_LEVEL"):
        assert os.environ.get(name) == local_ray.get(name), name


class TestOneRunsWorkers:
    """Three checks of one run's two Ray workers. The run closes after them, leaving the worker
    that never died to the tests below (each new worker process imports TensorFlow: ~4 s of
    CPU)."""

    @pytest.fixture(scope="class")
    def cartpole_trainer(self, local_ray, tmp_path_factory):
        cfg = Config(env="Cartpole", workers=2, batch_steps=600, num_envs=3, eval_every=0,
                     logdir=str(tmp_path_factory.mktemp("ray_cartpole")), quiet=True)
        trainer = Trainer(cfg)
        yield trainer
        trainer.close()

    def test_workers_sample_what_the_same_env_split_samples_in_one_process(self, cartpole_trainer):
        """Worker w's streams come from the run's seed: two Ray workers give, batch for batch, the
        trajectories of the same two ShareSamplers stepped one after the other here."""
        trainer = cartpole_trainer
        reference = [ShareSampler(trainer.cfg, w, 2) for w in range(2)]
        for _ in range(2):
            weights = trainer.policy.get_weights()
            remote = trainer.sampler.sample(None)
            local = merge_batches([share.sample(weights, {}) for share in reference])
            assert remote["obs"].shape == (600, 4) and remote["sim_steps"] == 600
            for key in local:
                if not key.startswith("time_"):
                    np.testing.assert_array_equal(remote[key], local[key], err_msg=key)
            # another policy for the next batch: the weights travel with every iteration
            trainer.policy.set_weights([w + 0.05 for w in weights[:1]] + weights[1:])
        assert remote["episode_return"].size > 0

    def test_the_workers_sampler_states_go_back_where_they_were(self, cartpole_trainer):
        """What a checkpoint holds with --workers: each worker's envs, episode counters and noise
        stream; restored, the workers sample the same batch again."""
        sampler = cartpole_trainer.sampler
        state = sampler.state()
        assert len(state) == 2
        first = sampler.sample(None)
        sampler.load_state(state)
        again = sampler.sample(None)
        for key in ("obs", "act", "rew", "episode_return"):
            np.testing.assert_array_equal(first[key], again[key], err_msg=key)

    def test_a_worker_killed_mid_iteration_is_restarted_and_the_batch_is_whole(
            self, cartpole_trainer):
        sampler = cartpole_trainer.sampler
        sampler.sample(None)  # the workers are up (a task queued while one starts survives a kill)
        restarts, deaths = sampler.restarts, sampler.deaths[0]
        weights, shares, pending = sampler.submit()
        ray.kill(sampler.workers[0], no_restart=False)
        batch = sampler.gather(weights, shares, pending)
        assert sampler.restarts == restarts + 1
        assert batch["obs"].shape[0] == 600 and batch["sim_steps"] == 600
        assert np.isfinite(batch["rew"]).all()
        # the restarted worker's share: fresh streams of its restart count, not its first batch's
        fresh, restarted = (ShareSampler(cartpole_trainer.cfg, 0, 2) for _ in range(2))
        weights = cartpole_trainer.policy.get_weights()
        share = restarted.sample(weights, {}, deaths + 1)["obs"]
        np.testing.assert_array_equal(batch["obs"][:len(share)], share)
        assert not np.array_equal(fresh.sample(weights, {})["obs"], share)
        # the next batch goes on from the restarted worker's envs: it is not rebuilt again
        following = sampler.sample(None)["obs"]
        np.testing.assert_array_equal(following[:len(share)],
                                      restarted.sample(weights, {}, deaths + 1)["obs"])


def test_a_run_leaves_its_workers_to_the_next_run_of_the_process(local_ray, tmp_path):
    """The second run samples in the first run's worker processes (started, and TensorFlow
    imported, once) as fresh workers would: its batch equals that of ShareSamplers built here
    for it (another seed: the first run's envs going on would differ)."""
    pids, batches = [], []
    for seed in (1, 2):
        cfg = Config(env="Cartpole", workers=2, iterations=1, batch_steps=400, num_envs=2,
                     eval_every=0, seed=seed, logdir=str(tmp_path / str(seed)), quiet=True,
                     env_backend="gymnasium")
        trainer = Trainer(cfg)
        try:
            pids.append(ray.get([w.pid.remote() for w in trainer.remote.workers]))
            assert len(trainer.sampler.state()) == 2  # the shares are built before a batch
            weights = trainer.policy.get_weights()
            batches.append(trainer.sampler.sample(None))
        finally:
            trainer.close()
            trainer.remote.close()  # again: nothing more is left to the next run
    assert pids[0] == pids[1]
    assert len(set(distributed.IDLE_WORKERS["actors"])) == len(distributed.IDLE_WORKERS["actors"])
    reference = merge_batches([ShareSampler(cfg, w, 2).sample(weights, {}) for w in range(2)])
    for key in ("obs", "act", "rew"):
        np.testing.assert_array_equal(batches[1][key], reference[key], err_msg=key)


@pytest.mark.parametrize("env, sampler", [("Cartpole", "single_path"), ("Swimmer", "single_path"),
                                          ("Cartpole", "vine"), ("Swimmer", "vine")])
def test_two_workers_train_two_iterations(env, sampler, local_ray, tmp_path):
    cfg = Config(env=env, sampler=sampler, workers=2, iterations=2, batch_steps=400, num_envs=2,
                 eval_every=0, logdir=str(tmp_path), quiet=True, vine_trunk_paths=2,
                 vine_trunk_length=100, vine_states=6, vine_actions_per_state=2,
                 vine_rollout_length=10, env_backend="gymnasium")
    history = train(cfg)
    assert len(history) == 2 and all(m["worker_restarts"] == 0 for m in history)
    assert all(np.isfinite(m["kl"]) and m["kl"] <= cfg.max_kl for m in history)
    if sampler == "vine":  # 6 rollout-set states of 2 branches, split 3 + 3
        assert all(m["vine_states"] == 6 and m["vine_branches"] == 12 for m in history)
    else:
        assert [m["env_steps"] for m in history] == [400, 800]
    assert os.path.isfile(tmp_path / "policy" / "saved_model.pb")


def test_cem_candidates_played_by_two_workers_score_as_in_one_process(local_ray, tmp_path):
    """The search asks and draws each candidate's reset seed in the learner; the workers play
    a block of candidates each: the same episodes, so the same search."""
    cfg = Config(algo="cem", env="Cartpole", iterations=2, population=6, num_envs=2,
                 eval_every=0, logdir=str(tmp_path / "here"), quiet=True)
    here = train(cfg)
    there = train(dataclasses.replace(cfg, workers=2, logdir=str(tmp_path / "workers")))
    for key in ("return_mean", "return_max", "env_steps", "search_spread"):
        assert [m[key] for m in there] == [m[key] for m in here], key


def test_ctrl_c_or_kill_9_leaves_no_ray_process_behind(tmp_path):
    """Ctrl-C ends the run after the iteration (its workers with it); after a kill -9 of the
    learner, the local Ray instance's processes end within seconds too (ray_reaper: Ray's
    dashboard and runtime-env agents waited 40-80 s for a timeout of their own). The two runs,
    each with a local Ray instance of its own, go side by side (each mostly waits for Ray's
    processes). One worker each: a run ends one worker as it ends several, and each worker
    process imports TensorFlow (~4 s of CPU)."""
    signals = {"ctrl_c": signal.SIGINT, "kill_9": signal.SIGKILL}
    procs = {name: zygote.Popen(LAUNCH + ["--workers=1", "--iterations=1000", "--batch_steps=400",
                                          "--num_envs=2", "--eval_every=0",
                                          f"--logdir={tmp_path / name}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in signals}
    started, outs = {}, {}
    try:
        for name, proc in procs.items():
            for line in proc.stdout:  # wait for the first iteration: Ray and its workers are up
                if line.startswith("it    1/"):
                    break
            started[name] = descendants(proc.pid)
            assert len(started[name]) >= 3  # Ray's processes and the worker
        for name, proc in procs.items():
            proc.send_signal(signals[name])
        for name, proc in procs.items():
            outs[name] = proc.communicate(timeout=300)
    finally:
        for proc in procs.values():
            proc.kill()
    out, err = outs["ctrl_c"]
    assert procs["ctrl_c"].returncode == 0, err
    assert "stopping after iteration" in out
    assert procs["kill_9"].returncode == -signal.SIGKILL
    for name in signals:
        assert not still_running(started[name], timeout=20), name
