"""Out-of-the-box quality machinery: tuned presets and their overrides, reward scaling, the
Optuna tuner (resumes after a kill) and the returns benchmark."""
import csv
import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import zygote
from commands import launch_here
from trpo_tf import envs, launch
from trpo_tf.distributions import for_action_space
from trpo_tf.moments import REWARD_CLIP, RewardScale, merge_moments
from trpo_tf.run import presets
from trpo_tf.sampling.single_path import SinglePathSampler
from trpo_tf.tools import tune as tune_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse(*args):
    """Config from a launch command line, as `python -m trpo_tf.launch` builds it."""
    try:
        launch.APPLIED_PRESET.update(path="", given=set())
        launch.parse_flags_with_preset(["launch", *args])
        return launch.config_from_flags()
    finally:
        launch.FLAGS.unparse_flags()


def preset_values(name):
    values = {}
    with open(os.path.join(presets.PRESET_DIR, f"{name}.cfg")) as f:
        for line in f:
            if line.startswith("--"):
                key, value = line[2:].strip().split("=", 1)
                values[key] = value
    return values


def test_each_task_with_a_tuned_preset_finds_it_by_short_name_or_gym_id():
    for name, gym_id in (("Cartpole", "InvertedPendulum-v5"), ("Swimmer", "Swimmer-v5"),
                         ("Hopper", "Hopper-v5"), ("Walker", "Walker2d-v5"),
                         ("HalfCheetah", "HalfCheetah-v5"), ("Ant", "Ant-v5"),
                         ("InvertedDoublePendulum", "InvertedDoublePendulum-v5"),
                         ("Reacher", "Reacher-v5")):
        path = presets.preset_for(name)
        assert path and os.path.isfile(path) and presets.preset_for(gym_id) == path
        assert presets.preset_for(name.upper()) is None  # spelled as resolve_env spells them
        assert preset_values(name.lower())["env"] == name  # the file alone trains its task
    assert presets.preset_for("CartPole-v1") is None and presets.preset_for("ALE/Pong-v5") is None


def test_preset_applies_unless_a_flagfile_or_preset_none_and_the_command_line_overrides_it():
    tuned = preset_values("walker")
    cfg = parse("--env=Walker")
    assert cfg.preset_file.endswith(os.path.join("launch", "tuned", "walker.cfg"))
    assert cfg.logdir == "runs/tuned/walker"  # not the paper flagfile's runs/walker
    assert cfg.batch_steps == int(tuned["batch_steps"]) and cfg.steps == int(tuned["steps"])
    assert cfg.gae_lambda == float(tuned["gae_lambda"])
    # a flag on the command line wins over the preset, before or after --env
    assert parse("--batch_steps=3000", "--env=Walker").batch_steps == 3000
    assert parse("--env", "Walker2d-v5", "--seed=4").preset_file == cfg.preset_file
    generic = parse("--env=Walker", "--preset=none")
    assert generic.preset_file == "" and generic.steps == 0
    paper = parse("--env=Walker", f"--flagfile={ROOT}/launch/paper/walker.cfg")
    assert paper.preset_file == "" and paper.batch_steps == 1_000_000
    assert parse("--env=CartPole-v1").preset_file == ""
    # --iterations without --steps counts iterations; presets are TRPO single path's; the
    # default env (not named) trains on the generic defaults
    counted = parse("--env=Walker", "--iterations=3")
    assert counted.preset_file and counted.steps == 0 and counted.iterations == 3
    assert parse("--env=Walker", "--iterations=3", "--steps=5000").steps == 5000
    # of the budget flags the later one counts, flagfiles read in place (the tuned ones name
    # their env)
    tuned_file = f"--flagfile={presets.PRESET_DIR}/hopper.cfg"
    by_file = parse(tuned_file, "--iterations=2")
    assert by_file.env == "Hopper" and by_file.steps == 0 and by_file.iterations == 2
    assert parse("--iterations=2", tuned_file).steps == int(preset_values("hopper")["steps"])
    assert parse("--env=Walker", "--steps=5000", "--iterations=3").steps == 0
    assert parse("--env=Walker", "--algo=cem").preset_file == ""
    assert parse("--env=Walker", "--algo=natural_gradient").preset_file == ""  # TRPO's only
    assert parse("--env=Walker", "--sampler=vine").preset_file == ""
    assert parse("--iterations=3").preset_file == "" and parse().steps == 0


def test_an_explicit_preset_auto_with_a_flagfile_is_one_line(capsys):
    with pytest.raises(SystemExit) as done:
        parse("--env=Walker", "--preset=auto", f"--flagfile={ROOT}/launch/paper/walker.cfg")
    assert done.value.code == 2 and capsys.readouterr().err.strip().splitlines() == [
        "error: --preset=auto applies a tuned preset only without a --flagfile, which gives the "
        "settings itself: drop one of them"]


def test_launch_header_names_the_preset_and_command_line_flags_override_it(tmp_path, capsys):
    out = launch_here(capsys, "--env=Cartpole", "--steps=800", "--batch_steps=400",
                      "--eval_every=0", f"--logdir={tmp_path}")
    assert out.returncode == 0, out.stderr
    header = out.stdout.splitlines()[0]
    assert header.endswith("preset launch/tuned/cartpole.cfg"), header
    assert "50 steps per iteration" in header  # 400 steps over the preset's 8 envs
    assert sum(line.startswith("it ") for line in out.stdout.splitlines()) == 2


def test_merged_moments_equal_those_of_all_samples_at_once():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, 1000)
    state = (0.0, 0.0, 1.0)
    for part in np.split(x, [10, 300, 301]):
        state = merge_moments(*state, part)
    assert state[0] == 1000
    np.testing.assert_allclose(state[1:], (x.mean(), x.var()), rtol=1e-12)


def test_reward_scale_divides_by_the_std_of_discounted_returns_and_clips():
    scale = RewardScale()
    rew, state = scale.scaled(np.array([1.0, 2.0, -100.0, 4.0]), np.array([1.0, 2.0, 3.0, 4.0]))
    assert scale.state == (0.0, 0.0, 1.0)  # a candidate until committed
    std = np.sqrt(1.25)  # population std of 1, 2, 3, 4
    np.testing.assert_allclose(rew, [1.0 / std, 2.0 / std, -REWARD_CLIP, 4.0 / std], rtol=1e-6)
    assert state == pytest.approx((4.0, 2.5, 1.25))
    scale.commit(state)
    rew, state = scale.scaled(np.array([1.0]), np.array([2.5]))  # adds no spread: var 4 * 1.25 / 5
    assert rew[0] == pytest.approx(1.0 / np.sqrt(1.0))


def test_sampler_discounted_return_runs_along_episodes_across_batches_and_resets_at_ends():
    gamma = 0.5
    group = envs.GymnasiumEnvs(envs.resolve_env("CartPole-v1"), 2, 3, None)
    dist = for_action_space(group.action_space)
    sampler = SinglePathSampler(group, dist, 30, 0, gamma)
    policy = lambda obs: np.zeros((len(obs), dist.param_dim), np.float32)  # noqa: E731
    running = np.zeros(2)
    for _ in range(2):  # the second batch carries the first's unfinished episodes on
        batch = sampler.sample(policy)
        rew, ret = batch["rew"].reshape(2, 30), batch["discounted_return"].reshape(2, 30)
        ends = batch["path_end"].reshape(2, 30)
        for i in range(2):
            for t in range(30):
                running[i] = gamma * running[i] + rew[i, t]
                assert ret[i, t] == pytest.approx(running[i], rel=1e-6)
                if ends[i, t] and t < 29:  # an episode end (CartPole-v1 ends within 30 steps)
                    running[i] = 0.0
        assert ends.sum() > 2  # episodes did end inside the batches
    group.close()


def tune(tmp_path, *extra):
    return zygote.Popen(
        [sys.executable, "-m", "trpo_tf.tune", "--env=Cartpole", "--trials=2", "--steps=1200",
         "--batch_steps=400", "--eval_every=1", "--eval_episodes=2", "--startup_trials=1",
         f"--logdir={tmp_path}", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def test_tuning_two_trials_resumes_after_a_kill_and_writes_the_best_flagfile(tmp_path):
    import optuna

    first = tune(tmp_path)
    for line in first.stdout:  # wait until the second trial trains, then kill the tuner
        if line.startswith("trial 1: training"):
            break
    first.kill()
    first.wait()
    study = optuna.load_study(study_name="trpo_tf", storage=f"sqlite:///{tmp_path}/study.db")
    assert len(study.trials) == 2 and study.trials[1].state.name == "RUNNING"  # cut by the kill
    second = tune(tmp_path)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    assert out.splitlines()[0].startswith("tuning Cartpole: 1 of 2 trials done, 1 to run")
    study = optuna.load_study(study_name="trpo_tf", storage=f"sqlite:///{tmp_path}/study.db")
    states = [t.state.name for t in study.trials]
    assert states[1] == "FAIL" and states.count("COMPLETE") + states.count("PRUNED") == 2
    start = study.trials[0].params  # the first trial is where the tuner starts: the base run
    assert start["max_kl"] == 0.01 and start["gae_lambda"] == 0.95 and "batch_steps" not in start
    retry = study.trials[2]
    assert retry.params == study.trials[1].params  # the cut trial, run again
    assert retry.user_attrs["logdir"] == study.trials[1].user_attrs["logdir"]
    # the best settings as a flagfile that launch reads back
    best = os.path.join(tmp_path, "best.cfg")
    cfg = parse(f"--flagfile={best}")
    assert cfg.env == "Cartpole" and cfg.batch_steps == 400  # given flags are held, not searched
    assert cfg.logdir == os.path.join(tmp_path, "best")  # not runs/default: it may hold a run
    best_trial = tune_module.best_trial(study)  # the earliest of the best, whatever the storage
    assert best_trial.value == study.best_value
    with open(best) as f:
        assert f.readline().startswith(f"# python -m trpo_tf.tune: trial {best_trial.number} of")
    for name, value in best_trial.params.items():
        got = getattr(cfg, name)
        assert (",".join(map(str, got)) if isinstance(got, tuple) else got) == pytest.approx(value, rel=1e-2)


def test_tuning_refuses_a_run_without_a_budget(tmp_path):
    out = zygote.run([sys.executable, "-m", "trpo_tf.tune", "--env=Cartpole", "--steps=0",
                          f"--logdir={tmp_path}"], capture_output=True, text=True, cwd=ROOT,
                     timeout=300)
    assert out.returncode == 2 and out.stderr.startswith("error: --steps must be > 0"), out.stderr


def test_returns_benchmark_smoke_writes_csv_curves_and_iqm_then_skips_finished_runs(tmp_path):
    """Seed 0 alone, then seeds 0-1 (0 finished earlier, 1 trained now), then seed 1 alone
    (finished earlier): the CSV holds every finished run of the grid (a command that added
    seeds with --first_seed wrote its own alone)."""
    def returns(*args):
        out = zygote.run([sys.executable, "bench/returns.py", "--smoke", f"--out={tmp_path}",
                          *args], capture_output=True, text=True, cwd=ROOT, timeout=600)
        assert out.returncode == 0, out.stderr
        with open(tmp_path / "returns.csv") as f:
            return out.stdout, list(csv.DictReader(f))

    out, rows = returns("--seeds=1")
    assert "seed 0: training" in out and [r["seed"] for r in rows] == ["0"]
    out, rows = returns()
    assert "seed 0: finished earlier" in out and "seed 1: training" in out
    assert [(r["env"], r["seed"]) for r in rows] == [("Cartpole", "0"), ("Cartpole", "1")]
    assert all(int(r["steps"]) >= 3000 and float(r["final_eval_return"]) >= 1.0 for r in rows)
    assert os.path.getsize(tmp_path / "returns.png") > 10_000
    summary = (tmp_path / "summary.md").read_text()
    assert "| Cartpole | 2 |" in summary and "IQM" in summary
    out, rows = returns("--first_seed=1", "--seeds=1")
    assert out.count("finished earlier") == 1 and "seed 1: finished earlier" in out
    assert "seed 1: training" not in out and [r["seed"] for r in rows] == ["0", "1"]
    assert "| Cartpole | 2 |" in (tmp_path / "summary.md").read_text()


def test_returns_benchmark_stopped_by_sigterm_ends_its_run_too(tmp_path):
    """SIGTERM (a scheduler's, `timeout`'s) reached the bench alone: its launch child trained
    on as an orphan and held the run's logdir. Now the run ends with the bench, which exits
    130, and the same command goes on (the lock is free)."""
    proc = zygote.Popen([sys.executable, "bench/returns.py", "--envs=Cartpole", "--seeds=1",
                         "--steps=10000000", "--flag=batch_steps=400", "--flag=num_envs=2",
                         "--flag=eval_every=1", "--flag=eval_episodes=1",
                         f"--out={tmp_path}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True, cwd=ROOT)
    assert proc.stdout.readline().startswith("Cartpole seed 0: training")
    logdir = tmp_path / "Cartpole" / "seed_0"
    events = lambda: glob.glob(str(logdir / "events.out.tfevents.*"))  # noqa: E731
    deadline = time.monotonic() + 300
    while not events() and time.monotonic() < deadline:  # the run is training
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and err.startswith("error: interrupted"), err
    from trpo_tf.run import outputs

    with outputs.lock_dir(str(logdir), "--logdir"):  # no run holds it
        pass
    assert float((logdir / "bench_wall_seconds").read_text()) > 0


class FakeTrainer:
    """Stands in for run.train.Trainer in the tuner: records each trial's Config, trains
    nothing, scores 1.0."""
    configs = []

    def __init__(self, cfg):
        import types

        FakeTrainer.configs.append(cfg)
        self.last_eval = 1.0
        self.checkpointer = types.SimpleNamespace(env_steps=types.SimpleNamespace(
            numpy=lambda: cfg.steps))

    def run(self, stop, on_iteration):
        return []

    def close(self):
        pass


def fake_tune(monkeypatch, base, trials=1):
    from trpo_tf.run import train
    from trpo_tf.tools import tune

    monkeypatch.setattr(train, "Trainer", FakeTrainer)
    FakeTrainer.configs = []
    tune.tune(base, trials, 0)
    return FakeTrainer.configs


def test_tuning_trial_0_trains_the_starting_point_even_outside_the_search_space(
        tmp_path, monkeypatch, capsys):
    from trpo_tf.config import Config

    base = Config(env="Cartpole", steps=1000, eval_every=1, logdir=str(tmp_path / "a?b%41"),
                  policy_hidden=(), gamma=0.9999, max_kl=0.02)
    first = fake_tune(monkeypatch, base)[0]
    # a budget below a batch the search may draw: said once (a trial trained past it silently)
    assert ("note: --steps=1,000 is less than the batches of 1,024, 2,048, 4,096, 8,192 steps "
            "trials may draw") in capsys.readouterr().out
    assert (first.policy_hidden, first.gamma, first.max_kl) == ((), 0.9999, 0.02)
    assert first.gae_lambda == base.gae_lambda and first.batch_steps == base.batch_steps
    # '?' and '%41' are part of the name: the study is inside that directory
    assert sorted(os.listdir(tmp_path)) == ["a?b%41"]
    assert "study.db" in os.listdir(tmp_path / "a?b%41")


def test_tuning_refuses_a_study_of_other_settings_a_bad_logdir_a_damaged_study_and_seeds(
        tmp_path, monkeypatch):
    from trpo_tf.config import Config
    from trpo_tf.errors import ConfigError

    base = Config(env="Cartpole", steps=1000, eval_every=1, logdir=str(tmp_path / "study"))
    fake_tune(monkeypatch, base)
    fake_tune(monkeypatch, Config(**{**base.__dict__, "checkpoint_every": 5}), trials=2)  # no result
    for changed, needle in (({"env": "Hopper"}, "--env=Cartpole, this command gives --env=Hopper"),
                            ({"steps": 2000}, "--steps=1000, this command gives --steps=2000")):
        with pytest.raises(ConfigError, match=f"was run with {needle}: give the same settings"):
            fake_tune(monkeypatch, Config(**{**base.__dict__, **changed}), trials=2)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "study.db").write_bytes(b"not a database" * 100)
    for logdir, needle in ((a_file, "is a file, not a directory"),
                           (a_file / "sub", "cannot be written"),
                           ("/proc/trpo_tf_study", "cannot be written"),
                           (garbage, "study.db cannot be opened as a study")):
        with pytest.raises(ConfigError, match=needle):
            fake_tune(monkeypatch, Config(**{**base.__dict__, "logdir": str(logdir)}))
    out = zygote.run([sys.executable, "-m", "trpo_tf.tune", "--env=Cartpole", "--seeds=3",
                          f"--logdir={tmp_path}"], capture_output=True, text=True, cwd=ROOT,
                     timeout=120)
    assert out.returncode == 2 and out.stderr.startswith("error: --seeds=3: a trial trains one "
                                                         "seed"), out.stderr


def test_each_method_is_tuned_over_its_own_settings_and_one_without_a_space_is_refused(
        tmp_path, monkeypatch):
    """PPO's trials drew TRPO's max_kl and cg_damping (which PPO never reads) and never its
    clip range, learning rate, epochs or minibatch; the ablations and vine, whose own settings
    the space does not hold, are refused in one line instead of tuned on half of them."""
    from trpo_tf.config import Config
    from trpo_tf.errors import ConfigError
    from trpo_tf.run import train
    from trpo_tf.tools import tune

    own = {"trpo": {"max_kl", "cg_damping"},
           "ppo": {"ppo_clip", "ppo_lr", "ppo_epochs", "ppo_minibatch"}}
    for algo in own:
        space = set(tune.search_space(Config(algo=algo)))
        assert own[algo] <= space and not own["ppo" if algo == "trpo" else "trpo"] & space, algo
    monkeypatch.setattr(train, "Trainer", FakeTrainer)
    FakeTrainer.configs = []
    study = tune.tune(Config(algo="ppo", env="Cartpole", steps=1000, eval_every=1,
                             logdir=str(tmp_path)), 2, 0)
    assert set(study.trials[1].params) == set(tune.SHARED_SPACE) | own["ppo"]
    # a study that held one of them fixed (as a PPO study did before the space was PPO's) is
    # not resumed searching it: its trials and their checkpoints were trained with it fixed
    base = Config(algo="ppo", env="Cartpole", steps=1000, eval_every=1,
                  logdir=str(tmp_path / "held"))
    tune.tune(base, 1, 0, fixed=["ppo_clip"])
    with pytest.raises(ConfigError, match=r"held --ppo_clip=0.2 fixed, this command searches "
                                          r"--ppo_clip: give --ppo_clip=0.2 to go on"):
        tune.tune(base, 2, 0)
    for settings in ({"algo": "natural_gradient"}, {"algo": "cem"}, {"sampler": "vine"}):
        with pytest.raises(ConfigError, match="the tuner has no search space for this method; "
                                              "it tunes --algo=ppo and --algo=trpo$"):
            tune.search_space(Config(**settings))
