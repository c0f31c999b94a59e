import numpy as np
import pytest
import tensorflow as tf

from trpo_tf import envs, pipeline
from trpo_tf.distributions import for_action_space
from trpo_tf.sampling.single_path import SinglePathSampler


def zero_policy(dist):
    return lambda obs: np.zeros((len(obs), dist.param_dim), np.float32)  # mean 0, std 1


def make_sampler(name="Cartpole", num_envs=3, steps=50, seed=0, max_path_length=None):
    group = envs.GymnasiumEnvs(envs.resolve_env(name), num_envs, seed, max_path_length)
    dist = for_action_space(group.action_space)
    return SinglePathSampler(group, dist, steps, seed), dist


def test_batch_structure_paths_and_episodes():
    sampler, dist = make_sampler(max_path_length=20)
    batch = sampler.sample(zero_policy(dist))
    n = 3 * 50
    assert batch["obs"].shape == (n, 4) and batch["obs"].dtype == np.float32
    assert batch["act"].shape == (n, 1) and batch["rew"].shape == (n,)
    end = batch["path_end"].astype(bool)
    assert batch["end_obs"].shape == (end.sum(), 4)
    assert np.all(end[batch["terminal"].astype(bool)])           # terminal => path end
    assert np.all(end.reshape(3, 50)[:, -1])                     # the batch cut ends every env's run
    # every completed episode (terminated, or truncated at 20 steps) is reported
    assert len(batch["episode_return"]) > 0 and batch["episode_length"].max() <= 20


@pytest.mark.parametrize("backend", ["gymnasium", "envpool"])
def test_a_policy_that_raises_mid_batch_leaves_the_steps_before_it_recorded(backend):
    """The sampler records step t - 1 after sending step t's actions: a policy raising in
    between must not leave step t - 1 out (the next batch merged two episodes into one)."""
    group = envs.make_env_group(envs.resolve_env("CartPole-v1"), backend, 2, 0,
                                max_path_length=5)
    dist = for_action_space(group.action_space)
    sampler = SinglePathSampler(group, dist, 12, 0)
    calls = []

    def fails_on_the_11th_call(obs):
        calls.append(1)
        if len(calls) == 11:
            raise RuntimeError("the policy failed")
        return zero_policy(dist)(obs)

    with pytest.raises(RuntimeError, match="the policy failed"):
        sampler.sample(fails_on_the_11th_call)
    batch = sampler.sample(zero_policy(dist))  # every episode is cut at 5 steps, paying 1 each
    assert len(batch["episode_length"]) > 0
    np.testing.assert_array_equal(batch["episode_length"], 5)
    np.testing.assert_array_equal(batch["episode_return"], 5.0)
    group.close()


def test_vectorised_batch_replays_exactly_in_single_envs():
    """Env i's contiguous slice of the batch is the trajectory one env seeded seed+i yields
    under the same actions: layout, resets, end observations and rewards all line up."""
    sampler, dist = make_sampler(num_envs=3, steps=40, seed=7, max_path_length=15)
    batch = sampler.sample(lambda obs: np.tile([[0.3, -0.5]], (len(obs), 1)).astype(np.float32))
    ends = np.flatnonzero(batch["path_end"])
    for i in range(3):
        env = envs.make_env(envs.resolve_env("Cartpole"), 15)
        obs, _ = env.reset(seed=7 + i)
        for t in range(40):
            k = i * 40 + t
            np.testing.assert_allclose(batch["obs"][k], obs, rtol=1e-6)
            obs, rew, term, trunc, _ = env.step(np.clip(batch["act"][k], -3, 3))
            assert batch["rew"][k] == np.float32(rew) and batch["terminal"][k] == term
            if term or trunc or t == 39:
                assert batch["path_end"][k] == 1.0
                np.testing.assert_allclose(batch["end_obs"][np.searchsorted(ends, k)], obs, rtol=1e-6)
                if term or trunc:
                    obs, _ = env.reset()
        env.close()


def test_truncation_is_not_terminal():
    sampler, dist = make_sampler("Swimmer", num_envs=1, steps=25, max_path_length=10)
    batch = sampler.sample(zero_policy(dist))
    assert batch["terminal"].sum() == 0                        # Swimmer never terminates
    np.testing.assert_array_equal(np.flatnonzero(batch["path_end"]), [9, 19, 24])
    np.testing.assert_array_equal(batch["episode_length"], [10, 10])


def test_cut_paths_continue_into_the_next_batch():
    sampler, dist = make_sampler("Swimmer", num_envs=1, steps=6, max_path_length=10)
    first = sampler.sample(zero_policy(dist))
    second = sampler.sample(zero_policy(dist))
    np.testing.assert_array_equal(second["obs"][0], first["end_obs"][-1])
    np.testing.assert_array_equal(second["episode_length"], [10])


def test_same_seed_same_batch():
    a = make_sampler(seed=3)[0].sample(zero_policy(make_sampler()[1]))
    b = make_sampler(seed=3)[0].sample(zero_policy(make_sampler()[1]))
    for key in ("obs", "act", "rew", "path_end", "end_obs"):
        np.testing.assert_array_equal(a[key], b[key])


def test_dataset_draws_one_batch_per_element_and_never_ahead():
    sampler, dist = make_sampler()
    signature = pipeline.batch_signature((4,), np.float32, dist)
    stream = pipeline.BatchStream(lambda: sampler.sample(zero_policy(dist)), signature)
    it = iter(stream)
    for k in range(1, 4):
        batch = next(it)
        assert sampler.batches_produced == k
        assert batch["obs"].dtype == tf.float32 and batch["obs"].shape[0] == 150


def test_a_crashing_env_surfaces_as_its_own_exception_naming_the_env():
    class Boom(RuntimeError):
        pass

    calls = []

    def produce():
        calls.append(1)
        if len(calls) == 2:
            raise Boom("InvertedPendulum-v5 env 3 raised ValueError: bad physics")
        return make_sampler()[0].sample(zero_policy(make_sampler()[1]))

    stream = pipeline.BatchStream(produce, pipeline.batch_signature((4,), np.float32, make_sampler()[1]))
    it = iter(stream)
    next(it)
    import pytest

    with pytest.raises(Boom, match="env 3 raised ValueError"):
        next(it)
