"""tf.train.Checkpoint + CheckpointManager: policy, value net, normaliser statistics (inside
both nets), the value optimiser and its shuffling RNG, the iteration / env-step counters,
the metrics of the iterations since the previous checkpoint (so TensorBoard can be filled in
after a kill), and beside it a pickle of the sampler's state where the envs can be saved."""
import glob
import json
import os
import pickle

import tensorflow as tf


class Checkpointer:
    def __init__(self, directory, policy, value_net, value_optimizer, value_rng, max_to_keep=3):
        self.directory = directory
        self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.env_steps = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.metrics = tf.Variable("[]", dtype=tf.string, trainable=False)
        self.checkpoint = tf.train.Checkpoint(
            policy=policy, value=value_net, value_optimizer=value_optimizer, value_rng=value_rng,
            iteration=self.iteration, env_steps=self.env_steps, metrics=self.metrics)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep)

    def _sampler_path(self, iteration):
        return os.path.join(self.directory, f"sampler-{iteration}.pkl")

    def restore_latest(self):
        """Restore the newest checkpoint, if any. Returns (iterations done, env steps done,
        [(iteration, metrics)] logged since the previous checkpoint, sampler state or None)."""
        if not self.manager.latest_checkpoint:
            return 0, 0, [], None
        self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
        iteration = int(self.iteration.numpy())
        sampler_state = None
        if os.path.exists(self._sampler_path(iteration)):
            with open(self._sampler_path(iteration), "rb") as f:
                sampler_state = pickle.load(f)
        metrics = [tuple(x) for x in json.loads(self.metrics.numpy().decode())]
        return iteration, int(self.env_steps.numpy()), metrics, sampler_state

    def save(self, iteration, env_steps, metrics, sampler_state):
        """metrics: [(iteration, dict)] since the last save. The sampler pickle goes first
        (atomically); the checkpoint index, written last by TensorFlow, makes both current."""
        if sampler_state is not None:
            tmp = self._sampler_path(iteration) + ".tmp"
            os.makedirs(self.directory, exist_ok=True)
            with open(tmp, "wb") as f:
                pickle.dump(sampler_state, f)
            os.replace(tmp, self._sampler_path(iteration))
        self.iteration.assign(iteration)
        self.env_steps.assign(env_steps)
        self.metrics.assign(json.dumps(metrics))
        path = self.manager.save(checkpoint_number=iteration)
        kept = {self._sampler_path(int(p.rsplit("-", 1)[1])) for p in self.manager.checkpoints}
        for stale in set(glob.glob(os.path.join(self.directory, "sampler-*.pkl"))) - kept:
            os.remove(stale)
        return path
