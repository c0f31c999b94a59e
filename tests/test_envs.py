import dataclasses
import os

import numpy as np
import pytest

from trpo_tf import envs
from trpo_tf.distributions import for_action_space
from trpo_tf.sampling.single_path import SinglePathSampler


def test_short_names_and_gym_ids_resolve():
    assert envs.resolve_env("Walker").gym_id == "Walker2d-v5"
    assert envs.resolve_env("HalfCheetah-v5").policy_hidden == envs.DEFAULT_HIDDEN
    for name, spec in envs.SHORT_NAMES.items():  # a task by its gymnasium id: the same defaults
        assert envs.resolve_env(spec.gym_id) == dataclasses.replace(spec, name=spec.gym_id)
    with pytest.raises(envs.EnvError, match=r"short name \(Cartpole, Swimmer, Hopper, Walker, HalfCheetah, Ant, InvertedDoublePendulum, Reacher, BeamRider, .*SpaceInvaders\)"):
        envs.resolve_env("Hoper")


def test_backend_choice():
    hopper, taxi = envs.resolve_env("Hopper"), envs.resolve_env("Taxi-v4")
    assert envs.pick_backend(hopper, "auto") == "envpool"
    assert envs.pick_backend(taxi, "auto") == "gymnasium"  # EnvPool has no Taxi
    assert envs.pick_backend(hopper, "gymnasium") == "gymnasium"
    assert envs.pick_backend(envs.resolve_env("Cartpole"), "auto") == "gymnasium"  # measured faster
    with pytest.raises(envs.EnvError, match="--env_backend=envpool: .* no Taxi-v4"):
        envs.pick_backend(taxi, "envpool")
    with pytest.raises(envs.EnvError, match="--env_backend must be"):
        envs.pick_backend(hopper, "ray")


@pytest.mark.parametrize("allowed, threads, offset", [
    ({0, 1}, 2, 0),  # one worker per core of the machine: pinned
    ({4, 5, 6}, 3, 4),  # a process held to cores 4-6 (taskset, a container): pinned there
    ({0, 1}, 1, -1),  # fewer workers than cores: the OS places them (and other processes')
    ({0, 1}, 4, -1),  # more workers than cores: two would share a core
    ({0, 2}, 2, -1),  # not contiguous: EnvPool pins worker i to core offset + i
    ({8, 9}, 2, -1)])  # beyond the count EnvPool takes core numbers modulo
def test_envpool_workers_are_pinned_only_where_they_cover_every_allowed_core(
        monkeypatch, allowed, threads, offset):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: allowed)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert envs.pinned_cores_offset(threads) == offset


@pytest.mark.parametrize("env_id, differences", [
    ("FrozenLake-v1", r"observations Discrete\(16\) against Box\(0, 1, \(16,\)"),
    ("Blackjack-v1", r"observations Box\(0, 31, \(3,\), int32\) against Box\(0, 1, \(45,\)")])
def test_auto_samples_on_gymnasium_where_envpools_spaces_differ(env_id, differences):
    """EnvPool has these envs, but observes them otherwise than trpo_tf's gymnasium env (which
    flattens Discrete and Tuple observations into one-hot vectors), on which evaluation and
    play run: auto takes gymnasium, and an explicit envpool is one line that says why."""
    spec = envs.resolve_env(env_id)
    assert envs.pick_backend(spec, "auto") == "gymnasium"
    with pytest.raises(envs.EnvError, match=f"--env_backend=envpool: EnvPool's {env_id} has "
                                            f"other spaces than gymnasium's.*{differences}"):
        envs.pick_backend(spec, "envpool")
    assert envs.envpool_space_differences(envs.resolve_env("Hopper")) is None  # float64 actions


def test_mujoco_and_atari_envs_are_told_by_their_entry_points():
    """A failed video names MUJOCO_GL's settings only for MuJoCo envs (a classic-control env
    fails for want of pygame instead)."""
    assert envs.is_mujoco("Hopper-v5") and envs.is_mujoco("InvertedPendulum-v5")
    assert not any(map(envs.is_mujoco, ("CartPole-v1", "ALE/Pong-v5", "NoSuchEnv-v0")))
    assert envs.is_atari("ALE/Pong-v5") and not envs.is_atari("Hopper-v5")


def rollouts(backend, name, num_envs=8, steps=400, max_path_length=None, seed=0):
    group = envs.make_env_group(envs.resolve_env(name), backend, num_envs, seed, max_path_length)
    dist = for_action_space(group.action_space)
    # a fixed, nearly deterministic policy: action 0.2 on every joint, std e^-10
    params = np.concatenate([np.full(dist.act_dim, 0.2), np.full(dist.act_dim, -10.0)])
    batch = SinglePathSampler(group, dist, steps, seed).sample(
        lambda obs: np.tile(params, (len(obs), 1)).astype(np.float32))
    spaces = (group.observation_space.shape, group.action_space.shape,
              tuple(group.action_space.low), tuple(group.action_space.high))
    group.close()
    return batch, spaces


@pytest.mark.parametrize("name", ["Hopper", "Cartpole"])
def test_both_backends_are_the_same_task(name):
    """Same spaces; the same fixed policy gets the same returns and episode lengths (reward and
    termination rules agree) up to the reset noise."""
    gym_batch, gym_spaces = rollouts("gymnasium", name)
    pool_batch, pool_spaces = rollouts("envpool", name)
    assert gym_spaces == pool_spaces
    for key in ("episode_return", "episode_length"):
        g, p = gym_batch[key], pool_batch[key]
        assert len(g) >= 8 and len(p) >= 8
        noise = 3 * np.sqrt(g.var() / len(g) + p.var() / len(p)) + 0.02 * abs(g.mean())
        assert abs(g.mean() - p.mean()) <= noise, (key, g.mean(), p.mean())


def test_envpool_reset_rows_are_dropped_and_paths_line_up():
    batch, _ = rollouts("envpool", "Swimmer", num_envs=1, steps=25, max_path_length=10)
    # steps 1-10 episode 1, step 11 EnvPool's reset, 12-21 episode 2, 22 reset, 23-25 cut
    assert batch["rew"].shape == (23,)
    np.testing.assert_array_equal(np.flatnonzero(batch["path_end"]), [9, 19, 22])
    np.testing.assert_array_equal(batch["episode_length"], [10, 10])
    assert batch["terminal"].sum() == 0 and batch["end_obs"].shape[0] == 3
    assert np.all(batch["rew"] != 0.0)  # no dummy reset transitions


def test_env_kwargs_reach_gymnasium_make_and_are_checked_in_one_line():
    """--env_kwargs: Python literals (true / false too) for gymnasium.make; auto samples them
    on gymnasium, an explicit EnvPool is refused; a malformed item, one another flag sets, a
    value JSON cannot keep and an argument the env does not take are one line each."""
    from trpo_tf.config import Config, ConfigError, validate

    pairs = Config(env_kwargs="include_cfrc_ext_in_observation=false").make_kwargs
    assert pairs == (("include_cfrc_ext_in_observation", False),)
    ant = envs.resolve_env("Ant-v5", make_kwargs=pairs)
    assert ant.make_kwargs == pairs and envs.resolve_env("Ant-v5").make_kwargs == ()
    for spec, dims in ((ant, 27), (envs.resolve_env("Ant-v5"), 105)):
        env = envs.make_env(spec)
        assert env.observation_space.shape == (dims,)
        env.close()
    assert envs.pick_backend(ant, "auto") == "gymnasium"
    with pytest.raises(envs.EnvError, match="--env_backend=envpool cannot take --env_kwargs"):
        envs.pick_backend(ant, "envpool")
    assert Config(env_kwargs=" a = 0.5 ,b=x, c=None,d=TRUE,e=none, f='y'").make_kwargs == (
        ("a", 0.5), ("b", "x"), ("c", None), ("d", True), ("e", None), ("f", "y"))
    special = dict(Config(env_kwargs="g=nan,h=-inf,i=+Infinity,j=nano,k=--inf").make_kwargs)
    assert np.isnan(special["g"]) and special["h"] == -np.inf and special["i"] == np.inf
    assert special["j"] == "nano" and special["k"] == "--inf"  # one sign at most
    for text, says in (("ctrl_cost_weight", "'ctrl_cost_weight' is not name=value"),
                       ("a=1,a=2", "'a=2': a is given twice"), ("a=", "'a=' is not name=value"),
                       ("max_episode_steps=10", "set by --max_path_length"),
                       ("a=(1, 2)", "a comma separates arguments"), ("a=off", "true, false or none"),
                       ("a=b'x'", "values are numbers"), ("a={1: 2}", "values are numbers")):
        with pytest.raises(ConfigError) as err:
            validate(Config(env_kwargs=text))
        assert str(err.value).startswith(f"--env_kwargs={text}: ") and says in str(err.value)
        assert "\n" not in str(err.value)
    with pytest.raises(envs.EnvError, match=r"could not make Ant-v5 with --env_kwargs \{'wings': 2\}"):
        envs.make_env(envs.resolve_env("Ant-v5", make_kwargs=(("wings", 2),)))
    # an ALE game's own arguments are the preprocessing's; other envs may take them
    with pytest.raises(envs.EnvError, match="--env_kwargs: ALE/Pong-v5's frameskip is set by --frame_skip"):
        envs.resolve_env("Pong", make_kwargs=(("frameskip", 2),))
    assert validate(Config(env_kwargs="obs_type=pixels")).make_kwargs == (("obs_type", "pixels"),)


def test_an_export_plays_its_envs_arguments_when_play_names_its_env_by_short_name_or_id(tmp_path):
    """open_policy remakes the export's env with its gymnasium.make arguments when --env names
    that env (short name or id), and without them for another env."""
    import tensorflow as tf

    from trpo_tf.distributions import DiagGaussian
    from trpo_tf.policies import build_policy
    from trpo_tf.run.evaluate import open_policy
    from trpo_tf.run.export import export_policy

    spec = envs.resolve_env("Ant", make_kwargs=(("include_cfrc_ext_in_observation", False),))
    policy = build_policy((27,), DiagGaussian(8), (), normalize_obs=False)
    export_policy(policy, policy.dist, tf.TensorSpec((None, 27), tf.float32), spec.gym_id,
                  str(tmp_path / "policy"), envs.env_settings(spec))
    for name in (None, "Ant", "Ant-v5"):
        _, played, env = open_policy(str(tmp_path / "policy"), name)
        assert played.make_kwargs == spec.make_kwargs and env.observation_space.shape == (27,)
        env.close()
    with pytest.raises(envs.EnvError, match=r"takes observations of shape \(27,\), but --env=Hopper"):
        open_policy(str(tmp_path / "policy"), "Hopper")


def test_the_video_child_reports_a_numpy_return_the_parent_can_read(monkeypatch, capsys, tmp_path):
    """MuJoCo's locomotion envs return np.float64 rewards, whose repr under NumPy 2 is
    'np.float64(...)': the child prints a float the parent parses."""
    # video.py sets MUJOCO_GL on import; monkeypatch puts it back as it was after the test
    # (tests/zygote.py forks commands only while the MUJOCO_* variables match its server's)
    monkeypatch.setenv("MUJOCO_GL", os.environ.get("MUJOCO_GL", "egl"))
    from trpo_tf.tools import video

    monkeypatch.setattr(video, "render_replay", lambda *args: (3, np.float64(44.25)))
    replay = tmp_path / "replay.npz"
    meta = {"gym_id": "Ant-v5", "settings": None, "max_path_length": 5,
            "seed": 0, "path": str(tmp_path / "x.mp4"), "fps": 30.0}
    import json

    np.savez(replay, actions=np.zeros((3, 8)), meta=json.dumps(meta))
    video.main(str(replay))
    frames, ret = capsys.readouterr().out.split()[-2:]
    assert int(frames) == 3 and float(ret) == 44.25


def test_a_run_with_env_kwargs_samples_evaluates_records_exports_and_plays_that_env(tmp_path):
    """CartPole-v1 with sutton_barto_reward=true gives 0 per step and -1 at the fall: the
    training and evaluation returns are those of the changed env, the run record and the
    export keep its arguments (the played episodes too), and a resume with others is refused."""
    from trpo_tf.config import Config, ConfigError
    from trpo_tf.run.evaluate import open_policy, run_episodes
    from trpo_tf.run.train import Trainer, train

    base = dict(env="CartPole-v1", env_kwargs="sutton_barto_reward=true", iterations=1,
                batch_steps=256, num_envs=2, eval_every=1, eval_episodes=2, quiet=True,
                logdir=str(tmp_path))
    (metrics,) = train(Config(**base))
    assert -1.0 <= metrics["return_mean"] <= 0.0 and -1.0 <= metrics["eval_return_mean"] <= 0.0
    import json

    record = json.loads((tmp_path / "run.json").read_text())
    assert record["env_kwargs"] == {"sutton_barto_reward": True}
    assert record["env_backend"] == "gymnasium"
    serve, spec, env = open_policy(str(tmp_path / "policy"))
    assert spec.make_kwargs == (("sutton_barto_reward", True),)
    assert (run_episodes(serve, env, 2, seed=0, deterministic=True) <= 0.0).all()
    env.close()
    with pytest.raises(ConfigError, match="trained with env_kwargs="):
        Trainer(Config(**{**base, "env_kwargs": "", "iterations": 2}))


def test_an_env_that_names_nothing_says_what_may_have_been_meant():
    """A short name in another case or misspelt; a version gymnasium retired, which most
    tutorials use, says so (not 'neither ... nor a registered gymnasium id') with gymnasium's
    word on the version to use."""
    for name, hint in (("walker", "; did you mean --env=Walker?"),
                       ("hoper", "; did you mean --env=Hopper?"),
                       ("NoSuchEnv-v9", "that registers it)")):
        with pytest.raises(envs.EnvError) as err:
            envs.resolve_env(name)
        assert str(err.value).startswith(f"--env={name!r} is neither a short name (Cartpole")
        assert str(err.value).endswith(hint), str(err.value)
    with pytest.raises(envs.EnvError) as err:
        envs.resolve_env("Taxi-v3")
    assert str(err.value) == ("--env='Taxi-v3': gymnasium no longer has this version (Environment "
                              "version v3 for `Taxi` is deprecated. Please use `Taxi-v4` instead.)")
