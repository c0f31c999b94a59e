"""Atari (section 8.2): preprocessing, EnvPool's frames against gymnasium's wrappers', the
paper's CNN, ALE snapshots through the wrappers, single path (EnvPool) and vine (gymnasium)
runs on Pong whose exported policy `play` and `table1` load."""
import dataclasses
import gc
import os
import platform
import shutil
import subprocess
import sys
import weakref

import keras
import numpy as np
import pytest

from test_plot import run_module
from trpo_tf import envs
from trpo_tf.config import Config
from trpo_tf.distributions import Categorical
from trpo_tf.policies import CNNPolicy, build_policy, build_value_net


def test_the_seven_games_resolve_with_their_preprocessing():
    for game in envs.ATARI_GAMES:
        spec = envs.resolve_env(game)
        assert spec.gym_id == f"ALE/{game}-v5" and spec.policy_hidden == (20,)
        assert spec.atari.frame_skip == (3 if game == "SpaceInvaders" else 4)
    assert envs.resolve_env("ALE/Breakout-v5").atari is not None
    assert envs.resolve_env("Hopper").atari is None


def test_single_path_games_sample_on_envpool_unless_lives_end_episodes():
    assert envs.pick_backend(envs.resolve_env("Pong"), "auto") == "envpool"
    lives = envs.resolve_env("Pong", envs.AtariSettings(terminal_on_life_loss=True))
    assert envs.pick_backend(lives, "auto") == "gymnasium"
    with pytest.raises(envs.EnvError, match="cannot take --terminal_on_life_loss"):
        envs.pick_backend(lives, "envpool")


@pytest.mark.parametrize("game, settings, max_path_length", [
    ("Pong", envs.AtariSettings(noop_max=1), 400),
    ("SpaceInvaders", envs.AtariSettings(noop_max=1, screen_size=36, frame_stack=3), None),
    ("Breakout", envs.AtariSettings(noop_max=1, frame_skip=2), None)])
def test_envpool_atari_frames_equal_the_gymnasium_wrappers(game, settings, max_path_length):
    """The same actions into make_atari_env and EnvPool's Atari (envpool_atari_options):
    every observation, reward and end equal, to the path's end: a time limit, or a game over
    (inside a skip, its final observation's last frame is EnvPool's last frame, not the max
    of two; the earlier frames are equal). With noop_max=1 both play exactly one no-op frame
    at a reset."""
    spec = envs.resolve_env(game, settings)
    reference = envs.make_env(spec, max_path_length)
    pool = envs.EnvPoolEnvs(spec, 1, 0, max_path_length)
    assert pool.observation_space == reference.observation_space
    assert pool.action_space == reference.action_space
    np.testing.assert_array_equal(pool.reset()[0], reference.reset(seed=0)[0])
    actions = np.random.default_rng(1).integers(0, reference.action_space.n, 3000)
    for t, action in enumerate(actions):
        obs, rew, term, trunc, _ = reference.step(action)
        pool_obs, pool_rew, pool_term, pool_trunc, final = pool.step(np.array([action]))
        assert (pool_rew[0], pool_term[0], pool_trunc[0]) == (rew, term, trunc), t
        if term:  # the earlier frames of the stack
            np.testing.assert_array_equal(final[0][:-1], obs[:-1])
            break
        np.testing.assert_array_equal(pool_obs[0], obs, err_msg=f"step {t}")
        if trunc:
            break
    assert trunc == (max_path_length is not None) and t + 1 == (max_path_length or t + 1)
    assert term or trunc, "the game should end within 3,000 random actions"
    pool.close()
    reference.close()


def test_preprocessing_gives_stacked_uint8_frames_and_honours_the_flags():
    settings = envs.AtariSettings(screen_size=42, frame_stack=4, sticky_actions=0.25)
    env = envs.make_env(envs.resolve_env("Pong", settings), max_path_length=7)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 42, 42) and obs.dtype == np.uint8
    assert env.observation_space.shape == (4, 42, 42) and env.observation_space.dtype == np.uint8
    assert np.array_equal(obs[0], obs[3])  # reset pads the stack with the first frame
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    frames = [obs]
    for t in range(7):
        obs, _, term, trunc, _ = env.step(1)
        frames.append(obs)
    assert trunc and not term  # max_path_length counts agent steps, not emulator frames
    assert np.array_equal(frames[-1][:3], frames[-2][1:])  # the stack shifts by one frame
    assert frames[-1].max() > 0
    env.close()


def test_frame_skip_and_life_loss_reach_the_wrappers():
    env = envs.make_env(envs.resolve_env(
        "Breakout", envs.AtariSettings(frame_skip=2, terminal_on_life_loss=True, noop_max=5,
                                       screen_size=32, frame_stack=2)))
    wrapper = env.env
    assert isinstance(wrapper, envs.gym.wrappers.AtariPreprocessing)
    assert (wrapper.frame_skip, wrapper.terminal_on_life_loss, wrapper.noop_max) == (2, True, 5)
    assert env.observation_space.shape == (2, 32, 32)
    env.close()


def test_cnn_architecture_and_parameter_count():
    """Figure 3 (bottom): conv 16 ch stride 2, conv 16 ch stride 2, dense 20, softmax. With
    4x4 filters on 4 x 42 x 42 frames: 42 -> 20 -> 9, so 9 * 9 * 16 = 1296 features."""
    policy = build_policy((4, 42, 42), Categorical(6), (20,), True)
    value = build_value_net(policy, (4, 42, 42), (64, 64))
    assert isinstance(policy, CNNPolicy)
    convs = [l for l in policy.net.layers if isinstance(l, keras.layers.Conv2D)]
    dense = [l for l in policy.net.layers if isinstance(l, keras.layers.Dense)]
    assert [(c.filters, c.kernel_size, c.strides) for c in convs] == [(16, (4, 4), (2, 2))] * 2
    assert [d.units for d in dense] == [20, 6]
    counts = [int(np.prod(v.shape)) for v in policy.trainable_variables]
    expected = (4 * 4 * 4 * 16 + 16) + (4 * 4 * 16 * 16 + 16) + (1296 * 20 + 20) + (20 * 6 + 6)
    assert sum(counts) == expected == 31_218
    assert abs(sum(counts) - 33_500) / 33_500 < 0.07  # the paper's "33,500 parameters"
    frames = np.random.default_rng(0).integers(0, 256, (3, 4, 42, 42)).astype(np.uint8)
    logits = policy(frames).numpy()  # NumPy and TensorFlow convolutions round differently
    np.testing.assert_allclose(policy.numpy_fn()(frames), logits, rtol=0,
                               atol=1e-5 * np.abs(logits).max())
    assert value(frames).shape == (3,)


def atari_config(tmp_path, **kw):
    # one evaluation episode of at most 50 steps: the CNN's evaluation path, kept short
    return Config(env="Pong", iterations=2, num_envs=4, batch_steps=200, logdir=str(tmp_path),
                  quiet=True, vf_minibatch=64, eval_episodes=1, max_path_length=50, **kw)


def test_single_path_batches_keep_frames_uint8(tmp_path):
    from trpo_tf.run.train import Trainer

    trainer = Trainer(atari_config(tmp_path))
    try:
        batch = next(iter(trainer.stream))
        assert batch["obs"].dtype.name == "uint8" and batch["obs"].shape[1:] == (4, 42, 42)
        assert batch["end_obs"].dtype.name == "uint8"
    finally:
        trainer.close()


def test_ale_snapshot_restores_the_frame_stack_into_another_env():
    """A vine branch restores a trunk state into whichever env is free: the frames it then
    sees must be those the trunk env would have seen."""
    group = envs.GymnasiumEnvs(envs.resolve_env("Pong", envs.AtariSettings(sticky_actions=0.25)), 2, 0)
    group.reset()
    rng = np.random.default_rng(0)
    for _ in range(60):
        group.step(rng.integers(0, 6, 2))
    snap = group.snapshot_one(0)
    actions = rng.integers(0, 6, 80)

    def roll(i):
        return [group.envs[i].step(int(a))[:2] for a in actions]

    first = roll(0)
    group.restore_one(1, snap)
    second = roll(1)
    for (o1, r1), (o2, r2) in zip(first, second):
        np.testing.assert_array_equal(o1, o2)
        assert r1 == r2
    group.close()


@pytest.mark.parametrize("sampler", ["single_path", "vine"])
def test_two_iterations_on_pong_write_summaries_and_a_policy_that_play_runs(tmp_path, sampler):
    from test_train import event_steps
    from trpo_tf.run.train import Trainer

    kw = {}
    if sampler == "vine":
        kw = dict(sampler="vine", vine_proposal="uniform", vine_trunk_paths=2,
                  vine_trunk_length=60, vine_states=8, vine_actions_per_state=3,
                  vine_rollout_length=10)
    cfg = atari_config(tmp_path, **kw)
    import envpool  # noqa: F401  (first: its import keeps a traceback holding the importer's frames)
    trainer = Trainer(cfg)
    evaluation = [weakref.ref(env.unwrapped) for env in trainer.evaluator.envs]
    sampling = [weakref.ref(env.unwrapped) for env in getattr(trainer.envs, "envs", [])]
    assert len(evaluation) == 1 and len(sampling) == {"single_path": 0, "vine": 4}[sampler]
    try:
        history = trainer.run()
    finally:
        trainer.close()
    # closed, the evaluation games are let go though the run is held; dropped, the run and its
    # sampling games are freed (tf.data held it): ale_py reports games alive at exit as leaks
    gc.collect()
    assert all(game() is None for game in evaluation)
    run = weakref.ref(trainer)
    del trainer
    gc.collect()
    assert run() is None and all(game() is None for game in sampling)
    assert len(history) == 2 and all(m["kl"] <= cfg.max_kl * 1.0001 for m in history)
    assert event_steps(str(tmp_path), "Policy/MeanKL") == [1, 2]
    out = run_module("trpo_tf.play", f"--policy={tmp_path}/policy", "--episodes=1",
                     "--max_path_length=30", fresh=sampler == "single_path")  # its start-up too
    assert out.returncode == 0, out.stderr
    assert "ALE/Pong-v5 deterministic: return" in out.stdout
    assert out.stderr.strip() == ""  # no TensorFlow or ALE banners


def export_pong_policy(directory):
    """An untrained Pong CNN exported as training exports it (uint8 frames in)."""
    import tensorflow as tf

    from trpo_tf.run.export import export_policy

    policy = build_policy((4, 42, 42), Categorical(6), (20,), True)
    settings = envs.resolve_env("Pong").atari
    return export_policy(policy, policy.dist, tf.TensorSpec((None, 4, 42, 42), tf.uint8),
                         "ALE/Pong-v5", str(directory), dataclasses.asdict(settings))


def cpu_without_avx512():
    """The prefix that runs a program on an x86-64 CPU without AVX-512: none where this CPU
    has none (the condition holds natively, ~8x cheaper than emulated), else qemu-user's 'max'
    model (AVX2 and FMA, no AVX-512); None where neither is at hand."""
    if platform.machine() != "x86_64":
        return None
    try:
        with open("/proc/cpuinfo") as f:
            if "avx512f" not in f.read():
                return []
    except OSError:  # not Linux: emulate, if we can
        pass
    qemu = shutil.which("qemu-x86_64")
    return [qemu, "-cpu", "max"] if qemu else None


WITHOUT_AVX512 = cpu_without_avx512()


@pytest.mark.skipif(WITHOUT_AVX512 is None,
                    reason="needs an x86-64 CPU without AVX-512, or qemu-user to emulate one "
                           "(apt-get install qemu-user; .ci/run installs it)")
def test_play_on_an_atari_policy_is_quiet_on_a_cpu_without_avx512(tmp_path):
    """A CPU without AVX-512 (this one, or qemu's 'max' model) as an AMD EPYC without it: with
    oneDNN on, TensorFlow notes at ERROR severity that its uint8 kernels fall back to Eigen
    ("oneDNN supports DT_UINT8 only on platforms with AVX-512", seen under
    TF_CPP_MIN_LOG_LEVEL=0). play, in a fresh interpreter, prints its own lines and nothing on
    stderr."""
    path = export_pong_policy(tmp_path / "policy")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run([*WITHOUT_AVX512, sys.executable, "-m", "trpo_tf.play",
                          f"--policy={path}", "--episodes=1", "--max_path_length=5"],
                         capture_output=True, text=True, timeout=900,
                         env={**env, "TF_ENABLE_ONEDNN_OPTS": "1"})
    assert out.returncode == 0, out.stderr
    assert "ALE/Pong-v5 deterministic: return" in out.stdout
    assert out.stderr == ""


def test_table1_prints_the_papers_rows_beside_ours(tmp_path):
    export_pong_policy(tmp_path / "policy")
    out = run_module("trpo_tf.table1", f"--policy={tmp_path}/policy", "--episodes=2",
                     "--max_path_length=20")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "| Pong | mean score | std | episodes |"
    assert "| TRPO - single path | 20.9 | | |" in lines
    assert lines[-1].startswith("| trpo_tf (this policy, episodes cut at 20 steps) |")
    assert lines[-1].endswith("| 2 |")
    missing = run_module("trpo_tf.table1", "--policy=/no/such/dir")
    assert missing.returncode == 2 and "--policy='/no/such/dir' does not exist" in missing.stderr
