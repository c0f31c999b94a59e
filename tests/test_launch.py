"""The command line: bad input is one line naming the flag, exit code 2; a run works."""
import copy
import glob
import os
import shutil
import signal
import subprocess
import sys

import pytest

import zygote
from commands import launch_here
from trpo_tf.config import Config, ConfigError, validate


def launch(*args, timeout=300, fresh=False):
    return zygote.run([sys.executable, "-m", "trpo_tf.launch", *args], capture_output=True,
                      text=True, timeout=timeout, fresh=fresh)


@pytest.mark.parametrize("args,needle", [
    (["--env=NoSuchEnv-v9"], "--env='NoSuchEnv-v9' is neither a short name (Cartpole, Swimmer, Hopper, Walker, "),
    (["--max_kl=0"], "--max_kl must be > 0"),
    (["--gamma=1.5"], "--gamma must be in (0, 1]"),
    (["--gae_lambda=-0.1"], "--gae_lambda must be in [0, 1]"),
    (["--batch_steps=4", "--num_envs=8"], "--batch_steps must be >= --num_envs=8"),
    (["--policy_hidden=64,x"], "--policy_hidden must be a comma-separated list of positive ints"),
    (["--policy_hidden=64,,64"], "--policy_hidden must be a comma-separated list of positive ints (got 64,,64)"),
    (["--value_hidden=64,"], "--value_hidden must be a comma-separated list of positive ints (got 64,)"),
    (["--max_kl=1e300"], "--max_kl must be > 0 and <= 1 (nats; the paper's 0.01: beyond 1 no region is left to trust) (got 1e+300)"),
    (["--init_log_std=100"], "--init_log_std must be between -10 and 10 (a std of 4.5e-5 to 22,026) (got 100.0)"),
    (["--flagfile=/no/such.cfg"], "Unable to open flagfile"),
    (["--max_kl=abc"], "flag --max_kl=abc: could not convert string to float"),
    (["--env_backend=ray"], "flag --env_backend=ray: value should be one of <auto|envpool|gymnasium>"),
    (["--batch_steps=500", "--max_path_length=1000"], "--batch_steps=500 is smaller than one path (--max_path_length=1000)"),
    (["--env=Taxi-v4", "--env_backend=envpool"], "--env_backend=envpool: EnvPool is not installed or has no Taxi-v4"),
    (["--iterations=3", "extra"], "unexpected arguments: extra"),
    (["--algo=vine"], "(vine is a sampler: --sampler=vine, with --algo=trpo)"),
    (["--sampler=vine", "--env=CartPole-v1"], "--sampler=vine needs a simulator whose state can be restored; CartPole-v1 cannot"),
    (["--sampler=vine", "--env_backend=envpool"], "--sampler=vine restores simulator states, which EnvPool cannot"),
    (["--env=Pong", "--env_backend=envpool", "--terminal_on_life_loss"], "--env_backend=envpool cannot take --terminal_on_life_loss"),
    (["--env=Pong", "--frame_skip=-1"], "--frame_skip must be >= 0"),
    (["--env=Pong", "--sticky_actions=1.5"], "--sticky_actions must be a probability in [0, 1)"),
    (["--env=Pong", "--algo=cem"], "--algo=cem searches MLP / linear policies; ALE/Pong-v5's CNN"),
    (["--algo=rwr", "--sampler=vine"], "--algo=rwr runs on single-path batches"),
    (["--algo=cma", "--population=1"], "--population must be >= 2"),
    (["--algo=natural_gradient", "--npg_step=0"], "--npg_step must be > 0"),
    (["--seeds=0"], "--seeds must be >= 1"),
    (["--seed=-1"], "--seed must be >= 0: it seeds numpy's SeedSequence"),
    (["--max_kl=inf"], "--max_kl must be a finite number (got inf)"),
    (["--algo=natural_gradient", "--npg_step=inf"], "--npg_step must be a finite number (got inf)"),
    (["--cg_damping=inf"], "--cg_damping must be a finite number (got inf)"),
    (["--vf_lr=inf"], "--vf_lr must be a finite number (got inf)"),
    (["--init_log_std=-inf"], "--init_log_std must be a finite number (got -inf)"),
    (["--gamma=nan"], "--gamma must be a finite number (got nan)"),
    (["--env=Hopper", "--batch_steps=10000000000"], "need about 1229.3 GiB while a batch is built"),
    (["--sampler=vine", "--vine_kl_states=-1"], "--vine_kl_states must be >= 0, 0 meaning every trunk state"),
    # Atari settings without a game: they were ignored, and the run trained cart-pole
    (["--flagfile=launch/paper/atari/single_path.cfg"], "--frame_skip (Atari preprocessing) is given, but --env='Cartpole' is no Atari game: name one"),
])
def test_bad_input_is_one_clear_line_and_exit_2(args, needle, tmp_path, capsys):
    """The launch command's parsing and checks, run in this process (a subprocess each would
    cost the suite a Python start-up per case; the test below runs the command itself)."""
    out = launch_here(capsys, *args, f"--logdir={tmp_path / 'run'}")
    assert out.returncode == 2
    assert_one_line(out.stderr, needle)


def assert_one_line(stderr, needle):
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert needle in lines[0] and len(lines) <= 2, stderr  # absl adds one "Try --helpfull" line
    assert "Traceback" not in stderr


@pytest.mark.parametrize("args,needle", [
    (["--max_kl=abc"], "flag --max_kl=abc: could not convert string to float"),  # absl's parser
    (["--iterations=3", "extra"], "unexpected arguments: extra"),
    (["--algo=vine"], "(vine is a sampler: --sampler=vine, with --algo=trpo)"),
    (["--gamma=1.5"], "--gamma must be in (0, 1]"),  # a setting's check
    (["--env=NoSuchEnv-v9"], "--env='NoSuchEnv-v9' is neither a short name"),  # an env check
])
def test_the_command_itself_gives_one_line_and_exit_2(args, needle, tmp_path):
    out = launch(*args, f"--logdir={tmp_path / 'run'}")
    assert out.returncode == 2
    assert_one_line(out.stderr, needle)


def test_each_check_runs_once_and_before_tensorflow_loads(tmp_path, capsys, monkeypatch):
    """The env is probed once for a command of two seeds (checks.check_run, not again by each
    Trainer), and a batch too big for the memory is refused with TensorFlow never imported."""
    from trpo_tf import envs

    probes = []
    real_check = envs.check_spaces
    monkeypatch.setattr(envs, "check_spaces", lambda spec: probes.append(spec) or real_check(spec))
    out = launch_here(capsys, "--env=Cartpole", "--iterations=1", "--batch_steps=200",
                      "--num_envs=2", "--seeds=2", "--quiet", f"--logdir={tmp_path}")
    assert out.returncode == 0 and len(probes) == 1, out.stderr
    script = ("import sys\nfrom trpo_tf import launch\ntry:\n"
              "    launch.main(launch.parse_flags_with_preset(['launch', '--env=Hopper', "
              "'--batch_steps=10000000000', '--logdir=%s']))\n"
              "except SystemExit as done:\n"
              "    print(done.code, 'tensorflow' in sys.modules)\n" % (tmp_path / "big"))
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           timeout=300)
    assert child.stdout.split() == ["2", "False"], child.stderr
    assert "need about 1229.3 GiB while a batch is built" in child.stderr


def test_shipped_flagfiles_work_from_any_directory_and_flags_a_file_overrides_are_named(
        tmp_path, capsys, monkeypatch):
    """The shipped flagfiles name each other as launch/...: from another directory the nested
    one was not found (an error naming a file the user never typed). Flags before a file that
    sets them lost to it without a word."""
    from trpo_tf import launch

    monkeypatch.chdir(tmp_path)
    launch.FLAGS.unparse_flags()
    try:
        launch.parse_flags_with_preset([
            "trpo_tf.launch", "--iterations=3", "--seed=4",
            f"--flagfile={zygote.ROOT}/launch/paper/cartpole_quick.cfg", "--max_kl=0.02"])
        # cartpole.cfg's batch (the nested file), the quick file's iterations, ours after them
        assert (launch.FLAGS.batch_steps, launch.FLAGS.iterations) == (5000, 20)
        assert (launch.FLAGS.seed, launch.FLAGS.max_kl) == (4, 0.02)
    finally:
        launch.FLAGS.unparse_flags()
    assert capsys.readouterr().err.splitlines() == [
        f"note: --iterations=3 comes before --flagfile={zygote.ROOT}/launch/paper/cartpole_quick.cfg, "
        "which sets --iterations=20: the file's value counts (put flags after the file to "
        "override it)"]
    quick = f"{zygote.ROOT}/launch/paper/cartpole_quick.cfg"
    with launch.flagfiles_found_from_anywhere():  # as while flags are parsed
        # set again after the file, the command line's value counts; --flagfile PATH (a space)
        assert launch.overridden_by_flagfiles(["--iterations=3", f"--flagfile={quick}",
                                               "--iterations=7"]) == []
        assert len(launch.overridden_by_flagfiles(["--iterations=3", "--flagfile", quick])) == 1
        assert launch.overridden_by_flagfiles(["--flagfile"]) == []  # absl refuses it first


def parsed_notes(capsys, *args):
    """The notes launch's parser prints for `args` (the flags are reset after)."""
    from trpo_tf import launch

    launch.FLAGS.unparse_flags()
    try:
        launch.parse_flags_with_preset(["trpo_tf.launch", *args])
    finally:
        launch.FLAGS.unparse_flags()
    return capsys.readouterr().err.splitlines()


def test_a_flag_of_another_method_than_the_one_trained_is_named_in_a_note(capsys):
    """--max_kl with --algo=ppo was accepted without a word, and changed nothing."""
    assert parsed_notes(capsys, "--algo=ppo", "--max_kl=0.05", "--ppo_clip=0.1") == [
        "note: --max_kl is a setting of --algo=trpo|empirical_fim|max_kl, not of --algo=ppo: "
        "it changes nothing in this run"]
    # the sampler counts: vine's settings on single path, and TRPO's read by vine
    assert parsed_notes(capsys, "--vine_states=10", "--max_kl=0.02") == [
        "note: --vine_states is a setting of --algo=trpo --sampler=vine, not of --algo=trpo "
        "--sampler=single_path: it changes nothing in this run"]
    assert parsed_notes(capsys, "--sampler=vine", "--vine_states=10", "--max_kl=0.02") == []
    # a preset's settings are not the user's: Walker's preset sets TRPO's, PPO's given here;
    # the space-separated form counts too
    assert parsed_notes(capsys, "--env=Walker", "--ppo_clip", "0.1") == [
        "note: --ppo_clip is a setting of --algo=ppo, not of --algo=trpo --sampler=single_path: "
        "it changes nothing in this run"]
    assert parsed_notes(capsys, "--algo=cem", "--population=4", "--cma_sigma=0.3") == [
        "note: --cma_sigma is a setting of --algo=cma, not of --algo=cem: it changes nothing "
        "in this run"]
    # the natural gradient's fixed step has no trust region and no line search
    assert parsed_notes(capsys, "--algo=natural_gradient", "--npg_step=0.3", "--cg_iters=5",
                        "--max_kl=0.05", "--ls_shrink=0.5") == [
        f"note: --{name} is a setting of --algo=trpo|empirical_fim|max_kl, not of "
        "--algo=natural_gradient: it changes nothing in this run"
        for name in ("ls_shrink", "max_kl")]


def test_the_sweeps_notes_judge_flags_against_the_natural_gradient_it_trains(capsys):
    from trpo_tf import launch
    from trpo_tf.tools import sweep

    launch.FLAGS.unparse_flags()
    try:
        sweep.FLAGS_PARSER(["trpo_tf.sweep", "--npg_step=0.3", "--max_kl=0.05"])
    finally:
        launch.FLAGS.unparse_flags()
    assert capsys.readouterr().err.splitlines() == [
        "note: --max_kl is a setting of --algo=trpo|empirical_fim|max_kl, not of "
        "--algo=natural_gradient: it changes nothing in this run"]


def test_every_method_settings_group_is_read_by_a_method_and_flagfiles_give_no_such_note(capsys):
    """A flagfile's settings may be its family's: figure4/cartpole_cem.cfg reads the task's
    cartpole.cfg, TRPO's settings included; only flags typed on the command line are noted."""
    from trpo_tf import launch
    from trpo_tf.settings import SETTINGS

    claimed = {g for m in launch.methods.METHODS for g in m.setting_groups}
    assert {s.group for s in SETTINGS.values() if s.group.startswith("4 method")} == claimed
    flagfiles = sorted(glob.glob(os.path.join(zygote.ROOT, "launch", "**", "*.cfg"), recursive=True))
    assert len(flagfiles) > 20
    for path in flagfiles:
        assert parsed_notes(capsys, f"--flagfile={path}") == [], path


def test_gymnasium_warnings_are_one_line_of_ours(capsys, monkeypatch):
    """gymnasium's logger warned in colour codes with the source line that warned (--env=
    Hopper-v4: 'registration.py:511: DeprecationWarning: \\x1b[33mWARN: ...' and a second
    line); a command shows one note. Other warnings are shown as Python shows them."""
    import warnings

    import gymnasium

    from trpo_tf.cli import main_guard

    def command():
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            gymnasium.logger.deprecation("The environment %s is out of date.", "Hopper-v4")
            warnings.warn("not gymnasium's", UserWarning)

    others = []
    monkeypatch.setattr(warnings, "showwarning", lambda message, *rest: others.append(message))
    capsys.readouterr()
    main_guard(command)
    assert capsys.readouterr().err.splitlines() == [
        "note: gymnasium: The environment Hopper-v4 is out of date."]
    assert [str(m) for m in others] == ["not gymnasium's"]  # shown as before


def test_tools_without_a_logdir_write_beside_the_default_run_not_into_it():
    from trpo_tf.launch import tool_logdir

    assert tool_logdir("tune", "Pendulum-v1") == "runs/tune_pendulum-v1"
    assert tool_logdir("npg_sweep", "ALE/Pong-v5") == "runs/npg_sweep_ale_pong-v5"
    assert tool_logdir("npg_sweep", "my_pkg:Env-v0") == "runs/npg_sweep_my_pkg_env-v0"


def test_validate_catches_each_bad_value():
    for bad in (dict(iterations=0), dict(cg_iters=0), dict(cg_damping=-1.0), dict(fvp_subsample=0.0),
                dict(ls_shrink=1.0), dict(advantage="td"), dict(resume="maybe"), dict(vf_lr=0.0),
                dict(max_faults=0), dict(env_threads=-1), dict(vf_minibatch=0), dict(export_every=-1)):
        with pytest.raises(ConfigError, match="--" + next(iter(bad))):
            validate(Config(**bad))
    assert validate(Config()) == Config()


def test_short_run_from_a_flagfile_prints_progress_and_exports(tmp_path):
    out = launch("--flagfile=launch/paper/cartpole_quick.cfg", "--iterations=2", "--batch_steps=500",
                 f"--logdir={tmp_path}", fresh=True)  # a fresh interpreter: its start-up too
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith("trpo_tf: Cartpole (InvertedPendulum-v5)")
    assert [line[:12] for line in lines[1:3]] == ["it    1/2 | ", "it    2/2 | "]
    assert lines[-1] == f"exported policy to {tmp_path}/policy"
    assert out.stderr.strip() == ""  # no TensorFlow start-up logs
    assert os.path.isfile(tmp_path / "policy" / "saved_model.pb")


def test_every_flagfile_parses_to_a_valid_config():
    from absl import flags

    import trpo_tf.launch as launch_mod

    from trpo_tf import envs

    names = sorted(glob.glob("launch/**/*.cfg", recursive=True))
    assert len(names) >= 15 + 7 * 4
    for name in names:
        fv = flags.FlagValues()
        for flag in launch_mod.FLAGS.get_key_flags_for_module(launch_mod):
            fv[flag.name] = copy.deepcopy(flag)  # our flags only; launch's own stay untouched
        fv.unparse_flags()
        fv(["prog", f"--flagfile={name}"])
        cfg = launch_mod.config_from_flags(fv)
        assert cfg.logdir.startswith("runs/"), name
        envs.resolve_env(cfg.env, cfg.atari)


def play(*args):
    return zygote.run([sys.executable, "-m", "trpo_tf.play", *args], capture_output=True,
                      text=True, timeout=300)


def test_play_rejects_a_directory_that_is_not_a_saved_model(tmp_path):
    out = play(f"--policy={tmp_path}")
    assert out.returncode == 2 and "is not an exported policy directory" in out.stderr
    assert "Traceback" not in out.stderr
    from trpo_tf.cli import check_policy_dir
    from trpo_tf.errors import EnvError

    (tmp_path / "saved_model.pb").write_bytes(b"")
    for policy, says in ((None, "--policy is required"), (str(tmp_path / "no"), "does not exist"),
                         (str(tmp_path / "saved_model.pb"), "is not a directory")):
        with pytest.raises(EnvError, match=says):
            check_policy_dir(policy)
    (tmp_path / "run" / "policy").mkdir(parents=True)  # a run's logdir instead of its policy
    (tmp_path / "run" / "policy" / "saved_model.pb").write_bytes(b"")
    with pytest.raises(EnvError, match=f"a run's logdir\\? its policy is --policy={tmp_path}/run/policy$"):
        check_policy_dir(str(tmp_path / "run"))


def test_play_rejects_an_env_whose_observations_do_not_fit_the_policy(tmp_path):
    import tensorflow as tf

    from trpo_tf.distributions import DiagGaussian
    from trpo_tf.run.export import export_policy
    from trpo_tf.policies import build_policy

    policy = build_policy((4,), DiagGaussian(1), (), normalize_obs=False)
    path = export_policy(policy, policy.dist, tf.TensorSpec((None, 4), tf.float32),
                         "InvertedPendulum-v5", str(tmp_path / "policy"))
    out = play(f"--policy={path}", "--env=Hopper")
    assert out.returncode == 2
    assert "takes observations of shape (4,), but --env=Hopper gives (11,)" in out.stderr
    assert "Traceback" not in out.stderr


def test_module_colon_env_id_imports_the_users_module_then_trains_and_plays(tmp_path):
    (tmp_path / "my_envs.py").write_text(
        "import gymnasium as gym\n"
        "gym.register('MyPendulum-v0', max_episode_steps=1000, entry_point="
        "'gymnasium.envs.mujoco.inverted_pendulum_v5:InvertedPendulumEnv')\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    run = lambda module, *args: zygote.run([sys.executable, "-m", module, *args], env=env,
                                           capture_output=True, text=True, timeout=300)
    out = run("trpo_tf.launch", "--env=my_envs:MyPendulum-v0", "--iterations=1",
              "--batch_steps=400", "--num_envs=2", f"--logdir={tmp_path / 'run'}")
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert out.stdout.startswith("trpo_tf: my_envs:MyPendulum-v0 (my_envs:MyPendulum-v0)")
    played = run("trpo_tf.play", f"--policy={tmp_path / 'run' / 'policy'}", "--episodes=1")
    assert played.returncode == 0 and "my_envs:MyPendulum-v0 deterministic" in played.stdout, played.stderr
    for name, needle in (("no_such_module:X-v0", "importing 'no_such_module' failed (ModuleNotFoundError"),
                         ("my_envs:Nope-v0", "importing 'my_envs' did not register 'Nope-v0'")):
        bad = run("trpo_tf.launch", f"--env={name}", f"--logdir={tmp_path / 'bad'}")
        lines = bad.stderr.strip().splitlines()
        assert bad.returncode == 2 and len(lines) == 1 and needle in lines[0], bad.stderr


def test_tools_refuse_bad_counts_extensions_damaged_models_and_mismatched_actions(tmp_path):
    import tensorflow as tf

    from trpo_tf.distributions import Categorical
    from trpo_tf.run.export import export_policy
    from trpo_tf.policies import build_policy

    policy = build_policy((4,), Categorical(2), (), normalize_obs=False)
    path = export_policy(policy, policy.dist, tf.TensorSpec((None, 4), tf.float32),
                         "CartPole-v1", str(tmp_path / "policy"))
    damaged = tmp_path / "damaged"
    shutil.copytree(path, damaged)
    pb = damaged / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[: pb.stat().st_size // 3])

    def tool(module, *args):
        return zygote.run([sys.executable, "-m", f"trpo_tf.{module}", *args],
                          capture_output=True, text=True, timeout=300)

    cases = [
        (("play", f"--policy={path}", "--episodes=0"), "flag --episodes=0: 0 is not a positive integer"),
        (("play", f"--policy={path}", "--seed=-1"), "flag --seed=-1: -1 is not a non-negative integer"),
        (("play", f"--policy={path}", "--max_path_length=-5"), "flag --max_path_length=-5"),
        (("play", f"--policy={path}", "--video=out.txt"), "--video=out.txt: the extension picks the format"),
        (("play", f"--policy={damaged}"), "the SavedModel cannot be loaded"),
        # a categorical CartPole policy on InvertedPendulum: same observations, other actions
        (("play", f"--policy={path}", "--env=InvertedPendulum-v5"),
         "chooses discrete actions of shape () from 2 logits, but --env=InvertedPendulum-v5 takes Box("),
        (("table1", f"--policy={path}", "--episodes=-3"), "flag --episodes=-3"),
        (("plot", f"--logdir={tmp_path}", "--out=figure.docx"), "--out=figure.docx: the extension picks the format"),
        (("plot", f"--logdir={tmp_path}", "--final_window=0"), "flag --final_window=0"),
        (("sweep", "--npg_steps=0.1,-1", f"--logdir={tmp_path / 'sweep'}"), "--npg_step must be > 0 (got -1.0)"),
        (("sweep", "--final_window=0"), "flag --final_window=0"),
    ]
    for args, needle in cases:
        out = tool(*args)
        lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
        assert out.returncode == 2 and needle in lines[0] and len(lines) <= 2, (args, out.stderr)
        assert "Traceback" not in out.stderr, args
    for module in ("launch", "play", "table1", "plot", "sweep"):
        helped = tool(module, "--helpfull")
        assert helped.returncode == 0 and "--" in helped.stdout, module


def test_the_sweep_reads_the_shipped_flagfiles_from_any_directory_and_refuses_atari_flags_alone(
        tmp_path):
    """From another directory, the figure 4 flagfile the sweep's help names (it names
    launch/paper/cartpole.cfg inside) is read: the sweep gets as far as its own check of
    --npg_steps. An Atari flagfile without an Atari --env is refused, as launch refuses it."""
    env = {**os.environ, "PYTHONPATH": zygote.ROOT}
    for flagfile, said in [
            ("launch/paper/figure4_quick/cartpole_natural_gradient.cfg",
             "error: --npg_step must be > 0 (got -1.0)"),
            ("launch/paper/atari/single_path.cfg",
             "error: --frame_skip (Atari preprocessing) is given, but --env='Cartpole' is no "
             "Atari game")]:
        out = zygote.run([sys.executable, "-m", "trpo_tf.sweep", f"--flagfile={flagfile}",
                          "--npg_steps=-1"], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env=env)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith(said), out.stderr


def test_ray_address_takes_a_bracketed_ipv6_address():
    import socket

    from trpo_tf.run.distributed import check_reachable

    try:
        server = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with server:
        check_reachable(f"[::1]:{server.getsockname()[1]}")  # answers: no error


def test_local_ray_workers_are_checked_against_the_memory_available(monkeypatch):
    import trpo_tf.sampling
    from trpo_tf.run.checks import check_workers_fit

    monkeypatch.setattr(trpo_tf.sampling, "available_memory", lambda: 4 * 2**30)
    check_workers_fit(4)  # 2.8 GiB of 4
    with pytest.raises(ConfigError, match=r"^--workers=5: each local Ray worker takes about "
                       r"0.7 GiB and 4.0 GiB are available: use at most 4, or a cluster"):
        check_workers_fit(5)


def test_many_envs_are_measured_against_the_memory_available(monkeypatch):
    """--num_envs=100000 filled 23 GiB before the kernel killed the run: from MANY_ENVS envs
    on, what one takes is measured and the count refused in one line if it does not fit."""
    import trpo_tf.sampling
    from trpo_tf import envs
    from trpo_tf.run import checks

    spec = envs.resolve_env("Hopper")
    monkeypatch.setattr(trpo_tf.sampling, "available_memory", lambda: 2**30)
    checks.check_envs_fit(spec, checks.MANY_ENVS - 1)  # not measured below the threshold
    with pytest.raises(ConfigError, match=r"^--num_envs: 100,000 envs of Hopper-v5 need about "
                       r"[1-9][0-9.]* GiB \([0-9,]+ KiB each, measured\) and 1.0 GiB are "
                       r"available: use at most [0-9,]+$"):
        checks.check_envs_fit(spec, 100_000)
    monkeypatch.setattr(trpo_tf.sampling, "available_memory", lambda: 2**40)
    checks.check_envs_fit(spec, 100_000)  # 1 TiB: they fit


def test_a_long_error_is_cut_at_a_word_end():
    from trpo_tf.errors import first_line

    err = ConnectionError("Could not find any running Ray instance. Please specify the one to "
                          "connect to by setting `--address` flag")
    assert first_line(err, 50) == "ConnectionError: Could not find any running Ray instance. Please ..."


def test_a_reader_of_stdout_that_goes_away_does_not_stop_the_run(tmp_path):
    """`launch ... | head -1`: once the header is read the pipe closes; the run trains on
    with its lines in /dev/null, exports and exits 0, with nothing on stderr (it died in a
    BrokenPipeError traceback at its first progress line)."""
    proc = zygote.Popen([sys.executable, "-m", "trpo_tf.launch", "--iterations=3",
                         "--batch_steps=400", "--num_envs=2", "--eval_every=0",
                         f"--logdir={tmp_path}"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().startswith("trpo_tf: Cartpole")
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 0, err
    assert err == ""
    assert os.path.isfile(tmp_path / "policy" / "saved_model.pb")


def test_seeds_export_each_to_a_directory_of_its_own():
    """--seeds=2 --export_dir=DIR: seed 1's policy replaced seed 0's in DIR."""
    from trpo_tf.launch import seed_configs

    exported = seed_configs(Config(logdir="runs/x", export_dir="out/policy", seed=3), 2)
    assert [c.policy_export_dir for c in exported] == ["out/policy/seed_3", "out/policy/seed_4"]
    assert [c.policy_export_dir for c in seed_configs(Config(logdir="runs/x"), 2)] == [
        "runs/x/seed_0/policy", "runs/x/seed_1/policy"]


def test_a_command_with_stdout_closed_sends_its_lines_nowhere(monkeypatch):
    """`launch ... >&-` (sys.stdout None): print did nothing before, and the heartbeat's
    isatty crashed; the command's lines now go to /dev/null and stdout is as it was after."""
    from trpo_tf.cli import main_guard

    monkeypatch.setattr(sys, "stdout", None)

    def command():
        print("a progress line", flush=True)
        return sys.stdout.isatty()

    assert main_guard(command) is False
    assert sys.stdout is None


def test_a_setting_too_big_for_memory_is_one_line_naming_the_tensor_and_the_flags(capsys):
    """`--policy_hidden=200000,200000` or `--policy_rnn_units=100000` ended in a Keras
    traceback around TensorFlow's OOM ("Exception encountered when calling Dense.call()" on
    its first line): now one line naming the tensor and the flags that size memory, exit 2.
    MemoryError likewise; any other exception still propagates."""
    import tensorflow as tf

    from trpo_tf.cli import main_guard

    oom = tf.errors.ResourceExhaustedError(
        None, None, "Exception encountered when calling Dense.call().\n\n{{function_node "
        "__wrapped__StatelessRandomUniformV2}} OOM when allocating tensor with "
        "shape[200000,200000] and type float on /job:localhost by allocator mklcpu\n\n"
        "Arguments received by Dense.call():")
    for err, said in [(oom, "out of memory (OOM when allocating tensor with shape[200000,200000]): "),
                      (MemoryError(), "out of memory (MemoryError): ")]:
        def command():
            raise err

        with pytest.raises(SystemExit) as done:
            main_guard(command)
        lines = capsys.readouterr().err.splitlines()
        assert done.value.code == 2 and len(lines) == 1, lines
        assert lines[0].startswith("error: " + said) and "--policy_hidden" in lines[0], lines
    disk = tf.errors.ResourceExhaustedError(None, None, "/runs/x/events.out; No space left on device")
    for other in (disk, ZeroDivisionError()):  # TensorFlow's full disk is no memory problem
        def command():
            raise other

        with pytest.raises(type(other)):
            main_guard(command)


def test_two_signals_inside_one_long_call_still_stop_at_once():
    """Two SIGINTs that arrive while the main thread is inside one C call (a long TensorFlow
    op; here builtin sum, which checks no signal) reach Python's handler as one call: the
    second Ctrl-C was lost, and the run went on to finish its iteration. StopOnSignal counts
    them, and the second stops at once; one alone only asks the loop to stop."""
    import threading

    from trpo_tf.cli import StopOnSignal

    def sigint_pending():
        """Whether a SIGINT sent to this process waits for delivery (/proc's ShdPnd): one
        sent before the last is delivered merges into it, as no two key presses do."""
        with open("/proc/self/status") as f:
            mask = next(line for line in f if line.startswith("ShdPnd:")).split()[1]
        return int(mask, 16) >> (signal.SIGINT - 1) & 1

    def send(times, inside):
        inside.wait()
        for _ in range(times):
            while sigint_pending():
                pass
            os.kill(os.getpid(), signal.SIGINT)

    for times in (2, 1):
        with StopOnSignal(announce=False) as stop:
            inside = threading.Event()
            sender = threading.Thread(target=send, args=(times, inside))
            sender.start()
            try:
                inside.set()
                sum(range(30_000_000))  # ~1 s of C holding the GIL: both signals are taken
                # (their bytes written) before Python's handler runs once, at its end
                sender.join()
                sum(range(1))  # a call after both: Python's handler has run by its end
                interrupted = False
            except KeyboardInterrupt:
                interrupted = True
            sender.join()
        assert interrupted == (times == 2), times
    assert stop.signum == signal.SIGINT  # the one signal: the loop stops after the iteration
