"""Scoring an exported policy: returns of whole episodes in one env (no flags here, so
benchmarks and tools can import it)."""
import numpy as np
import tensorflow as tf

from trpo_tf import envs
from trpo_tf.cli import check_policy_dir
from trpo_tf.export import load_policy, observation_shape, observation_spec


def open_policy(policy_dir, env_name=None, max_path_length=None):
    """(serving function, EnvSpec, env) for an exported policy: the env it was trained on
    (or `env_name`) with the preprocessing recorded in the export, so it plays exactly as it
    trained. EnvError for a directory that holds no policy or an env of another shape."""
    check_policy_dir(policy_dir)
    serve, env_id, settings = load_policy(policy_dir)
    atari = envs.AtariSettings(**settings) if settings else envs.AtariSettings()
    spec = envs.resolve_env(env_name or env_id, atari)
    env = envs.make_env(spec, max_path_length)
    if observation_shape(serve) != env.observation_space.shape:
        env.close()
        raise envs.EnvError(
            f"--policy={policy_dir} takes observations of shape {observation_shape(serve)}, "
            f"but --env={spec.name} gives {env.observation_space.shape}")
    return serve, spec, env


def run_episodes(serve, env, episodes, seed, deterministic, actions_taken=None):
    """Returns of `episodes` episodes acting with the exported policy (the env's actions are
    appended to `actions_taken` if given)."""
    key = "deterministic_action" if deterministic else "action"
    box = hasattr(env.action_space, "low")
    obs_dtype = observation_spec(serve).dtype  # float32 vectors, uint8 frames
    returns = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        total, done = 0.0, False
        while not done:
            action = serve(tf.constant(obs[None], obs_dtype))[key].numpy()[0]
            if box:
                action = np.clip(action, env.action_space.low, env.action_space.high)
            obs, rew, term, trunc, _ = env.step(action)
            total += rew
            done = term or trunc
            if actions_taken is not None:
                actions_taken.append(action)
        returns.append(total)
    return np.asarray(returns)


def record_video(serve, spec, env, path, seed, max_path_length=None):
    """Play one deterministic episode and write its video to `path` (video.py renders a
    replay of its actions) -> (the episode's return, frames written, the replay's return,
    which equals the first: the simulators are deterministic)."""
    from trpo_tf.video import write_video

    actions = []
    ret = run_episodes(serve, env, 1, seed, True, actions)[0]
    fps = (60.0 / spec.atari.frame_skip if spec.atari is not None  # a 60 Hz console
           else float(env.metadata.get("render_fps") or 30))
    return (ret, *write_video(spec, max_path_length, seed, actions, path, fps))
