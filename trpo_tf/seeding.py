"""Every random stream of a run from one numpy SeedSequence(--seed), spawned per consumer.

Child k of SeedSequence(seed) is SeedSequence(seed, spawn_key=(k,)): streams of one run are
independent of each other, and those of seeds s and s + 1 share nothing (before, env i of
seed s was reset with s + i, so 7 of 8 envs of seed 1 replayed seed 0's). A stream's index
is its place in STREAMS: new consumers go at the end, so existing streams keep their draws.
"""
import numpy as np

STREAMS = (
    "env_resets",      # first reset of env i of the sampling group: base + i (both backends)
    "actions",         # single path action noise
    "network_init",    # Keras / TensorFlow initialisers
    "value_shuffle",   # the value fit's minibatch order (a tf.random.Generator)
    "vine",            # trunk resets, rollout-set draws, proposals, branch noise
    "search",          # CEM's draws, CMA-ES's seed
    "search_episodes", # resets of the candidates' episodes (CEM / CMA)
    "evaluation",      # resets of the evaluation stage's episodes (the same at every evaluation)
    "method",          # a method's own draws (PPO's minibatch order, REPS's Fourier features)
)


def run_streams(seed):
    """{consumer: SeedSequence} for the run seeded `seed`."""
    return dict(zip(STREAMS, np.random.SeedSequence(seed).spawn(len(STREAMS))))


def int_seed(seq, bits=31):
    """A `bits`-bit int from the stream, for APIs that take an int seed."""
    return int(seq.generate_state(1, np.uint64)[0] >> np.uint64(64 - bits))
