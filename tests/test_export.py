import os
import sys

import keras
import numpy as np
import tensorflow as tf

import zygote
from trpo_tf.distributions import Categorical, DiagGaussian
from trpo_tf.policies import build_policy
from trpo_tf.run.export import env_action_op, export_policy, load_policy


def test_saved_model_round_trip_gives_the_same_actions(tmp_path):
    for dist, key in ((DiagGaussian(2), "mean"), (Categorical(3), "logits")):
        keras.utils.set_random_seed(0)
        policy = build_policy((4,), dist, (8,), normalize_obs=True, init_log_std=-1.0)
        rng = np.random.default_rng(0)
        policy.normalizer.update(rng.normal(1.0, 3.0, (100, 4)).astype(np.float32))
        obs = rng.normal(1.0, 3.0, (10, 4)).astype(np.float32)
        path = export_policy(policy, dist, tf.TensorSpec((None, 4), tf.float32), "Some-v0",
                             str(tmp_path / "policy"))
        serve, env_id, _ = load_policy(path)
        out = serve(tf.constant(obs))
        assert env_id == "Some-v0"
        params = policy(obs).numpy()
        # two compute paths (SavedModel graph, eager Keras) round differently: the tolerance is
        # absolute, on the scale of the outputs (~1e-4 here: the output layer starts small)
        atol = 1e-5 * np.abs(params).max()
        np.testing.assert_allclose(out[key].numpy(), params[:, : out[key].shape[1]], rtol=0, atol=atol)
        np.testing.assert_allclose(out["deterministic_action"].numpy(), np.asarray(dist.mode(params)),
                                   rtol=0, atol=atol)
        assert out["action"].shape == out["deterministic_action"].shape


def test_export_replaces_an_old_policy_atomically(tmp_path):
    policy = build_policy((4,), DiagGaussian(1), (), normalize_obs=False)
    spec = tf.TensorSpec((None, 4), tf.float32)
    target = str(tmp_path / "policy")
    export_policy(policy, policy.dist, spec, "A-v0", target)
    export_policy(policy, policy.dist, spec, "B-v0", target)
    assert load_policy(target)[1] == "B-v0"
    assert sorted(os.listdir(tmp_path)) == ["policy"]  # no temporary directories left behind


def test_play_cli_loads_and_runs_an_exported_policy(tmp_path):
    policy = build_policy((4,), DiagGaussian(1), (), normalize_obs=False)
    path = export_policy(policy, policy.dist, tf.TensorSpec((None, 4), tf.float32),
                         "InvertedPendulum-v5", str(tmp_path / "policy"))
    out = zygote.run([sys.executable, "-m", "trpo_tf.play", f"--policy={path}", "--episodes=2"],
                     capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2 and "deterministic" in lines[0] and "stochastic" in lines[1]
    assert "over 2 episodes" in lines[0]


def test_the_env_actions_are_the_draws_as_the_env_takes_them(tmp_path):
    """env_action / deterministic_env_action: what the sampler gives the env (env_action_fn),
    inside the action space: Gaussian draws clipped to an asymmetric Box whose policy means
    (near 0) all lie outside it, a Discrete space's start added to the indices."""
    import gymnasium as gym

    from trpo_tf.sampling import env_action_fn

    rng = np.random.default_rng(0)
    obs = rng.standard_normal((200, 4)).astype(np.float32)
    for space in (gym.spaces.Box(np.float32([2, -10]), np.float32([10, -5]), dtype=np.float32),
                  gym.spaces.Discrete(3, start=-1)):
        dist = DiagGaussian(2) if isinstance(space, gym.spaces.Box) else Categorical(3)
        policy = build_policy((4,), dist, (8,), normalize_obs=False, init_log_std=1.0)
        path = export_policy(policy, dist, tf.TensorSpec((None, 4), tf.float32), "Some-v0",
                             str(tmp_path / type(space).__name__), action_space=space)
        out = {k: v.numpy() for k, v in load_policy(path)[0](tf.constant(obs)).items()}
        to_env = env_action_fn(space, dist)
        for draws, env_actions in (("deterministic_action", "deterministic_env_action"),
                                   ("action", "env_action")):
            np.testing.assert_array_equal(out[env_actions], to_env(out[draws]))
            assert all(space.contains(a.astype(space.dtype)) for a in out[env_actions])
            assert not all(space.contains(a.astype(space.dtype)) for a in out[draws])
    box = gym.spaces.Box(np.float32([-1, -1, -1]), np.float32([1, 1, 1]), dtype=np.float32)
    odd = np.float32([[np.nan, np.inf, -np.inf]])  # as the sampler: NaN as 0, inf at its bound
    np.testing.assert_array_equal(env_action_op(box, DiagGaussian(3))(tf.constant(odd)).numpy(),
                                  env_action_fn(box, DiagGaussian(3))(odd))
