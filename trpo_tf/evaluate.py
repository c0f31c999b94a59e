"""Scoring an exported policy: returns of whole episodes in one env (no flags here, so
benchmarks and tools can import it)."""
import numpy as np
import tensorflow as tf


def run_episodes(serve, env, episodes, seed, deterministic):
    """Returns of `episodes` episodes acting with the exported policy."""
    key = "deterministic_action" if deterministic else "action"
    box = hasattr(env.action_space, "low")
    returns = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        total, done = 0.0, False
        while not done:
            action = serve(tf.constant(obs[None], tf.float32))[key].numpy()[0]
            if box:
                action = np.clip(action, env.action_space.low, env.action_space.high)
            obs, rew, term, trunc, _ = env.step(action)
            total += rew
            done = term or trunc
        returns.append(total)
    return np.asarray(returns)
