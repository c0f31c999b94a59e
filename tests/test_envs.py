import dataclasses

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
    with pytest.raises(envs.EnvError, match=r"short name \(Cartpole, Swimmer, Hopper, Walker, HalfCheetah, BeamRider, .*SpaceInvaders\)"):
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
