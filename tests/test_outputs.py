"""Nothing lost: exports replace only exports, damaged checkpoints are never overwritten,
nothing non-finite is checkpointed, a logdir resumes only with settings that fit it."""
import glob
import json
import os
import stat
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import zygote
from commands import launch_here
from test_train import event_steps
from trpo_tf.config import Config
from trpo_tf.errors import CheckpointError, ConfigError, TrainingFault
from trpo_tf.flat import get_flat
from trpo_tf.run import outputs
from trpo_tf.run.checkpoint import Checkpointer
from trpo_tf.run.train import Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = dict(env="Cartpole", env_backend="gymnasium", batch_steps=400, num_envs=2, quiet=True)


def launch(capsys, *args):
    """The launch command on a small cart-pole run, in this process."""
    return launch_here(capsys, "--env=Cartpole", "--env_backend=gymnasium", "--batch_steps=400",
                       "--num_envs=2", *args)


def one_line_exit_2(out, needle):
    lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1 and needle in lines[0], out.stderr


def run(logdir, iterations, **kwargs):
    trainer = Trainer(Config(iterations=iterations, logdir=str(logdir), **{**BASE, **kwargs}))
    try:
        return trainer.run(), trainer
    finally:
        trainer.close()


# 1. --export_dir replaces only an earlier export ---------------------------------------------

def test_export_dir_over_a_foreign_directory_or_file_or_the_logdir_is_refused_before_training(
        tmp_path, capsys):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    logdir = tmp_path / "run"
    for export, needle in ((foreign, "is a directory trpo_tf did not export"),
                           (a_file, "is a file trpo_tf did not export"),
                           (logdir, "would replace the run's --logdir"),
                           (tmp_path, "would replace the run's --logdir"),
                           (logdir / "checkpoints", "lies in the run's checkpoints")):
        out = launch(capsys, "--iterations=1", f"--logdir={logdir}", f"--export_dir={export}")
        one_line_exit_2(out, needle)
        assert out.stdout == ""  # refused before training started
    assert (foreign / "thesis.tex").read_text() == "years of work"
    assert a_file.read_text() == "keep me"
    assert not glob.glob(str(logdir / "events.*"))


def test_an_earlier_export_is_replaced_and_export_policy_refuses_anything_else(tmp_path):
    history, trainer = run(tmp_path / "run", 1)
    policy = tmp_path / "run" / "policy"
    assert outputs.is_trpo_tf_export(str(policy))
    # what an export killed midway left (a half-written model, an earlier one set aside) goes
    # with the next export; the export's directories follow the umask as the logdir's do
    for stale in (".policy-tmp-abc123", ".policy-old-def456"):
        (tmp_path / "run" / stale / "variables").mkdir(parents=True)
    (tmp_path / "run" / ".other-tmp-1").mkdir()  # another export's: kept
    previous = os.umask(0o027)
    try:
        trainer.export()  # over its own earlier export: fine
    finally:
        os.umask(previous)
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")) == [
        ".other-tmp-1"]
    assert stat.S_IMODE(os.stat(policy).st_mode) == 0o750
    (policy / "extra.txt").write_text("not ours")
    os.remove(policy / outputs.EXPORT_MARKER)
    with pytest.raises(ConfigError, match="is not a policy trpo_tf exported: not replaced"):
        trainer.export()
    assert (policy / "extra.txt").exists()


def test_logdir_that_is_a_file_or_under_a_file_is_one_line(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    one_line_exit_2(launch(capsys, "--iterations=1", f"--logdir={a_file}"), f"--logdir={a_file} is a file")
    one_line_exit_2(launch(capsys, "--iterations=1", f"--logdir={a_file}/run"), "cannot be written")


# 2. damaged checkpoints -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def three_checkpoints(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("pristine")
    run(logdir, 3)
    return logdir


# The tests of three_checkpoints' run go to one test process, which runs it once.
ON_THREE_CHECKPOINTS = pytest.mark.xdist_group("three_checkpoints")


def truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


DAMAGE = {
    "garbled index": (lambda d: (d / "checkpoint").write_text("model_checkpoint_pa\x00th: ckpt-"), 3),
    "truncated index file": (lambda d: truncate(d / "ckpt-3.index"), 2),
    "truncated data file": (lambda d: truncate(glob.glob(str(d / "ckpt-3.data-*"))[0]), 2),
    "missing data file": (lambda d: os.remove(glob.glob(str(d / "ckpt-3.data-*"))[0]), 2),
    "empty sampler state": (lambda d: (d / "sampler-3.pkl").write_bytes(b""), 2),
    "missing sampler state": (lambda d: os.remove(d / "sampler-3.pkl"), 2),
    "index names a missing checkpoint": (lambda d: [os.remove(p) for p in glob.glob(str(d / "ckpt-3.*"))], 2),
}


@ON_THREE_CHECKPOINTS
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_each_damaged_checkpoint_file_resumes_from_the_newest_intact_one_and_is_kept(
        three_checkpoints, tmp_path, damage):
    logdir = tmp_path / "run"
    shutil.copytree(three_checkpoints, logdir)
    ckpts = logdir / "checkpoints"
    make_damage, newest_intact = DAMAGE[damage]
    make_damage(ckpts)
    # what must be set aside, byte for byte: ckpt-3's remains if it is not restored, and the
    # index where it is what is damaged
    names = [os.path.basename(p) for p in glob.glob(str(ckpts / "*-3*"))] if newest_intact == 2 else []
    names += ["checkpoint"] if damage in ("garbled index", "index names a missing checkpoint") else []
    kept = {name: (ckpts / name).read_bytes() for name in names}
    history, trainer = run(logdir, 5)
    assert history[0]["env_steps"] == (newest_intact + 1) * 400
    assert f"resuming from ckpt-{newest_intact}" in trainer.checkpointer.recovery
    assert names and {n: (ckpts / "damaged-1" / n).read_bytes() for n in names} == kept
    # the recovered checkpoints rotate out as usual: the last 3 are left
    assert sorted(p.name for p in ckpts.glob("ckpt-*.index")) == [f"ckpt-{n}.index" for n in (3, 4, 5)]
    assert sorted(p.name for p in ckpts.glob("sampler-*.pkl")) == [f"sampler-{n}.pkl" for n in (3, 4, 5)]
    # TensorBoard: every iteration once (the redone ones keep the values first logged)
    assert event_steps(str(logdir), "Train/EnvSteps") == [1, 2, 3, 4, 5]
    # the rewritten index is readable: a second resume finds nothing to repair
    again = Checkpointer(str(ckpts), trainer.policy, trainer.method.trackables())
    assert again.restore_latest()[0] == 5 and again.recovery is None


@ON_THREE_CHECKPOINTS
def test_a_save_killed_before_the_index_resumes_from_its_files_without_a_damage_report(
        three_checkpoints, tmp_path, capsys):
    logdir = tmp_path / "run"
    shutil.copytree(three_checkpoints, logdir)
    index = logdir / "checkpoints" / "checkpoint"
    index.write_text(index.read_text().replace('"ckpt-3"', '"ckpt-2"', 1))  # index one behind
    history, trainer = run(logdir, 4)
    assert history[0]["env_steps"] == 1600 and trainer.checkpointer.recovery is None
    assert not glob.glob(str(logdir / "checkpoints" / "damaged-*"))


@ON_THREE_CHECKPOINTS
def test_when_no_checkpoint_is_intact_the_run_stops_with_one_line_and_changes_nothing(
        three_checkpoints, tmp_path, capsys):
    logdir = tmp_path / "run"
    shutil.copytree(three_checkpoints, logdir)
    for p in glob.glob(str(logdir / "checkpoints" / "ckpt-*.index")):
        truncate(p)
    listing = sorted(os.listdir(logdir / "checkpoints"))
    out = launch(capsys, "--iterations=5", f"--logdir={logdir}")
    one_line_exit_2(out, "no intact checkpoint in")
    assert "--resume=never starts over" in out.stderr
    assert sorted(os.listdir(logdir / "checkpoints")) == listing


# 3. nothing non-finite is checkpointed ----------------------------------------------------------

def test_a_value_fit_that_diverges_is_rolled_back_and_the_last_good_checkpoint_resumes(tmp_path):
    _, good = run(tmp_path, 2)
    # the nets, Adam's step count and the shuffling RNG: what a skipped iteration must not move
    nets = lambda: (get_flat(good.policy.variables + good.method.value_net.variables).numpy(),
                    int(good.method.value_fitter.optimizer.iterations.numpy()),
                    good.method.value_fitter.rng.state.numpy().tolist())
    theta = nets()
    # --vf_lr=1e30 is finite, so it passes validation (and is used, not the checkpoint's rate);
    # Adam then overflows: iterations 3, 4 are skipped and rolled back, the 5th stops the run
    with pytest.raises(TrainingFault, match=r"3 iterations in a row had non-finite parameters "
                                            r"after the update.*last good checkpoint \(iteration 4\)"):
        run(tmp_path, 8, vf_lr=1e30)
    history, trainer = run(tmp_path, 6)  # sane flags: goes on from iteration 4
    assert [m["env_steps"] for m in history] == [2000, 2400]
    restored = Checkpointer(str(tmp_path / "checkpoints"), good.policy, good.method.trackables())
    restored.try_restore(4, expect_sampler=False)  # the skipped iterations changed nothing
    after = nets()
    np.testing.assert_array_equal(after[0], theta[0])
    assert after[1:] == theta[1:]


def test_a_checkpoint_with_non_finite_values_is_never_written(tmp_path):
    history, trainer = run(tmp_path, 1)
    trainer.method.value_net.trainable_variables[0].assign(
        tf.fill(trainer.method.value_net.trainable_variables[0].shape, np.nan))
    with pytest.raises(CheckpointError, match="non-finite values .* not checkpointed"):
        trainer.checkpointer.save(2, 800, [], None)
    assert not glob.glob(str(tmp_path / "checkpoints" / "ckpt-2*"))


def test_a_full_disk_during_a_checkpoint_is_one_error_and_leaves_the_previous_intact(tmp_path, monkeypatch):
    history, trainer = run(tmp_path, 1)
    ckpts = tmp_path / "checkpoints"
    real_save = tf.train.CheckpointManager.save

    def disk_full(self, checkpoint_number=None):
        os.makedirs(ckpts / f"ckpt-{checkpoint_number}_temp")  # what a cut-short save leaves
        (ckpts / f"ckpt-{checkpoint_number}_temp" / "part-0").write_bytes(b"\0" * 10)
        raise tf.errors.ResourceExhaustedError(None, None, "No space left on device")

    monkeypatch.setattr(tf.train.CheckpointManager, "save", disk_full)
    with pytest.raises(CheckpointError, match=r"checkpoint 2 could not be written .*No space left"
                                              r" on device\); ckpt-1 is intact: the same "
                                              r"command resumes from it once the directory can "
                                              r"be written \(space, permissions\)$"):
        trainer.checkpointer.save(2, 800, [], trainer.sampler.state())
    assert not glob.glob(str(ckpts / "*_temp*")) and not glob.glob(str(ckpts / "*-2.*"))
    monkeypatch.setattr(tf.train.CheckpointManager, "save", real_save)
    again = Checkpointer(str(ckpts), trainer.policy, trainer.method.trackables())
    assert again.restore_latest()[0] == 1 and again.recovery is None


# 5. resuming with other settings ----------------------------------------------------------------

def test_resuming_with_another_network_or_seed_is_refused_other_sampler_shape_starts_new_episodes(
        tmp_path, capsys):
    run(tmp_path, 1)
    with pytest.raises(ConfigError, match=r"holds a run trained with policy_hidden=\[\], these "
                                          r"settings give policy_hidden=\[8\].*--resume=never"):
        Trainer(Config(iterations=2, logdir=str(tmp_path), **{**BASE, "policy_hidden": (8,)}))
    with pytest.raises(ConfigError, match=r"holds a run trained with activation=tanh, these "
                                          r"settings give activation=relu"):
        Trainer(Config(iterations=2, logdir=str(tmp_path), **{**BASE, "activation": "relu"}))
    with pytest.raises(ConfigError, match=r"holds a run trained with seed=0, these settings give "
                                          r"seed=5"):  # it resumed seed 0's run, training nothing
        Trainer(Config(iterations=2, logdir=str(tmp_path), seed=5, **BASE))
    capsys.readouterr()
    # a resume that trains nothing leaves the record saying what the checkpoints were made
    # with (it had said 4 envs, and the next resume on 2 fed the 4-env sampler state to 2 envs)
    run(tmp_path, 1, num_envs=4, quiet=False)
    assert "nothing left to train" in capsys.readouterr().out
    assert json.loads((tmp_path / "run.json").read_text())["num_envs"] == 2
    run(tmp_path, 2, quiet=False)
    assert "sampling goes on where it stopped" in capsys.readouterr().out
    run(tmp_path, 3, num_envs=4, quiet=False)
    assert ("sampler settings changed (num_envs 2 -> 4): the envs start new episodes"
            in capsys.readouterr().out)
    assert json.loads((tmp_path / "run.json").read_text())["num_envs"] == 4
    # a kill between the checkpoint and the record leaves the record behind: each checkpoint
    # says which settings its sampler state was sampled with
    record = json.loads((tmp_path / "run.json").read_text())
    (tmp_path / "run.json").write_text(json.dumps({**record, "num_envs": 2}))
    run(tmp_path, 4, quiet=False)
    assert "sampler settings changed (num_envs 4 -> 2)" in capsys.readouterr().out
    assert event_steps(str(tmp_path), "Train/EnvSteps") == [1, 2, 3, 4]


def test_a_run_without_checkpoints_is_moved_aside_by_the_next_not_interleaved(tmp_path, capsys):
    """--checkpoint_every=0 leaves nothing to resume: the same command again starts over, and
    the earlier run's events, record and export move to previous-1 as under --resume=never."""
    run(tmp_path, 2, checkpoint_every=0)
    capsys.readouterr()
    run(tmp_path, 1, checkpoint_every=0, quiet=False)
    assert ("no checkpoint to resume from (the earlier run stopped before its first, or ran "
            f"with --checkpoint_every=0): moved the earlier run in {tmp_path} to "
            f"{tmp_path / 'previous-1'}") in capsys.readouterr().out
    assert event_steps(str(tmp_path), "Train/EnvSteps") == [1]
    assert event_steps(str(tmp_path / "previous-1"), "Train/EnvSteps") == [1, 2]


def test_resume_never_moves_the_earlier_run_aside_instead_of_interleaving(tmp_path):
    run(tmp_path, 2)
    history, trainer = run(tmp_path, 1, resume="never")
    assert event_steps(str(tmp_path), "Train/EnvSteps") == [1]
    assert event_steps(str(tmp_path / "previous-1"), "Train/EnvSteps") == [1, 2]
    assert sorted(os.listdir(tmp_path / "previous-1" / "checkpoints"))[:1] == ["checkpoint"]
    assert outputs.is_trpo_tf_export(str(tmp_path / "previous-1" / "policy"))
    from trpo_tf.tools.figures import find_runs

    assert list(find_runs(str(tmp_path)).values()) == [[str(tmp_path)]]  # plot skips previous-1


# 6. one command per output directory ------------------------------------------------------------

def hold(directory):
    """A child process holding `directory`'s lock, as a live run does."""
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; from trpo_tf.run import outputs; "
         "lock = outputs.lock_dir(sys.argv[1]); print('held', flush=True); sys.stdin.read()",
         str(directory)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "held\n"
    return child


def tree(directory):
    return sorted((os.path.relpath(os.path.join(d, n), directory), os.path.getsize(os.path.join(d, n)))
                  for d, _, names in os.walk(directory) for n in names)


def test_a_released_lock_is_taken_anew_by_the_next_command_of_the_process(tmp_path):
    """A command releases its logdir as it ends, however it ends (a traceback may keep the lock
    object alive): the file goes, and the next lock_dir of the directory in this process locks
    it again instead of handing back the released object."""
    import fcntl

    first = outputs.lock_dir(str(tmp_path))
    first.release()
    assert not os.path.exists(tmp_path / outputs.LOCK_FILE)
    second = outputs.lock_dir(str(tmp_path))
    assert second is not first
    with open(tmp_path / outputs.LOCK_FILE) as other, pytest.raises(BlockingIOError):
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as another process would try
    second.release()
    with pytest.raises(KeyboardInterrupt), outputs.lock_dir(str(tmp_path)):  # as the commands
        assert os.path.exists(tmp_path / outputs.LOCK_FILE)                  # hold it
        raise KeyboardInterrupt
    assert not os.path.exists(tmp_path / outputs.LOCK_FILE)


def test_a_second_command_on_a_live_logdir_is_one_line_and_changes_nothing(tmp_path, capsys):
    run(tmp_path / "run", 1)
    seeds = tmp_path / "seeds"
    (seeds / "seed_1").mkdir(parents=True)
    holders = [hold(tmp_path / "run"), hold(seeds / "seed_1")]
    before = tree(tmp_path)
    try:
        for args, held in ((["--resume=never", f"--logdir={tmp_path / 'run'}"], holders[0]),
                           (["--seeds=2", f"--logdir={seeds}"], holders[1])):  # a seed's logdir
            out = launch(capsys, "--iterations=1", *args)
            one_line_exit_2(out, f"is in use by pid {held.pid} on host ")
            assert "wait for it to end or stop it, or use another --logdir" in out.stderr
            assert out.stdout == ""
        with pytest.raises(ConfigError, match=f"is in use by pid {holders[0].pid}"):
            Trainer(Config(iterations=2, logdir=str(tmp_path / "run"), **BASE))
        returns = zygote.run([sys.executable, "bench/returns.py", f"--out={seeds / 'seed_1'}"],
                             capture_output=True, text=True, cwd=ROOT, timeout=120)
        one_line_exit_2(returns, f"--out={seeds / 'seed_1'} is in use by pid {holders[1].pid}")
        sweep = zygote.run([sys.executable, "-m", "trpo_tf.sweep", f"--logdir={tmp_path / 'run'}"],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
        one_line_exit_2(sweep, f"is in use by pid {holders[0].pid}")
        from trpo_tf.tools import tune

        with pytest.raises(ConfigError, match=f"is in use by pid {holders[0].pid}"):
            tune.tune(Config(logdir=str(tmp_path / "run"), steps=1000, **BASE), 1, 0)
        assert tree(tmp_path) == before  # nothing moved aside, written or created
    finally:
        for child in holders:
            child.kill()  # kill -9: the lock file stays behind, held by nobody
            child.wait()
    assert os.path.isfile(tmp_path / "run" / outputs.LOCK_FILE)
    lock = outputs.lock_dir(str(tmp_path / "run"))  # taken over
    with open(tmp_path / "run" / outputs.LOCK_FILE) as f:
        assert f'"pid": {os.getpid()},' in f.read()
    del lock  # let go: the file goes with it
    assert not os.path.exists(tmp_path / "run" / outputs.LOCK_FILE)


def test_returns_benchmark_bad_flags_are_one_line():
    out = zygote.run([sys.executable, "bench/returns.py", "--seeds=0"], capture_output=True,
                     text=True, cwd=ROOT, timeout=120)
    one_line_exit_2(out, "--seeds and --steps must be >= 1")


def test_a_ray_cluster_that_cannot_be_joined_leaves_no_event_file(tmp_path, monkeypatch):
    from trpo_tf.run import distributed

    def no_cluster(*args):
        raise ConfigError("--ray_address=(local): cannot start or join Ray (RuntimeError: ...)")

    monkeypatch.setattr(distributed, "RaySampler", no_cluster)
    with pytest.raises(ConfigError, match="cannot start or join Ray"):
        Trainer(Config(iterations=1, logdir=str(tmp_path), workers=2, **BASE))
    assert not glob.glob(str(tmp_path / (outputs.EVENTS_PREFIX + "*")))


def test_a_directory_that_cannot_be_locked_is_one_line(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_locks(*args):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(ConfigError, match=r"^--out=.* cannot be locked against a second command "
                                          r"\(No locks available\): use a local directory$"):
        outputs.lock_dir(str(tmp_path), "--out")
