"""tf.train.Checkpoint + CheckpointManager: policy, value net, normaliser statistics (inside
both nets), the value optimiser and the iteration / env-step counters; resume picks the last."""
import tensorflow as tf


class Checkpointer:
    def __init__(self, directory, policy, value_net, value_optimizer, max_to_keep=3):
        self.iteration = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.env_steps = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.checkpoint = tf.train.Checkpoint(
            policy=policy, value=value_net, value_optimizer=value_optimizer,
            iteration=self.iteration, env_steps=self.env_steps)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep)

    def restore_latest(self):
        """Restore the newest checkpoint if any; returns (iterations done, env steps done)."""
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
        return int(self.iteration.numpy()), int(self.env_steps.numpy())

    def save(self, iterations_done, env_steps):
        self.iteration.assign(iterations_done)
        self.env_steps.assign(env_steps)
        return self.manager.save(checkpoint_number=iterations_done)
