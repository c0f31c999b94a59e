"""One SeedSequence per run, spawned per consumer: seeds share no stream."""
import numpy as np
import pytest

from trpo_tf import seeding
from trpo_tf.config import Config
from trpo_tf.run.train import Trainer


def first_draws(seed):
    return {name: np.random.default_rng(seq).random(4) for name, seq in seeding.run_streams(seed).items()}


def test_streams_are_reproducible_and_distinct_within_and_across_seeds():
    a, again, b = first_draws(0), first_draws(0), first_draws(1)
    for name in seeding.STREAMS:
        np.testing.assert_array_equal(a[name], again[name])
    draws = [d[name] for d in (a, b) for name in seeding.STREAMS]
    firsts = {float(x[0]) for x in draws}
    assert len(firsts) == 2 * len(seeding.STREAMS)  # 14 streams, no two alike


@pytest.mark.parametrize("backend", ["gymnasium", "envpool"])
def test_two_seeds_share_no_env_reset_stream(tmp_path, backend):
    """Before: env i of seed s was reset with s + i, so under --seeds=2 seven of seed 1's eight
    envs replayed seed 0's. Now no reset seed is shared, and (gymnasium) no first state."""
    trainers = [Trainer(Config(env="Hopper", env_backend=backend, seed=s, num_envs=8,
                               batch_steps=800, logdir=str(tmp_path / str(s)), quiet=True))
                for s in (0, 1)]
    try:
        seeds = [set(t.envs.reset_seeds) for t in trainers]
        assert len(seeds[0]) == len(seeds[1]) == 8 and seeds[0].isdisjoint(seeds[1])
        if backend == "gymnasium":
            first = [t.envs.reset() for t in trainers]
            assert not any(np.array_equal(x, y) for x in first[0] for y in first[1])
        noise = [t.sampler.rng.standard_normal(8) for t in trainers]
        assert not np.any(np.isin(noise[0], noise[1]))  # action noise: other streams too
    finally:
        for t in trainers:
            t.close()
