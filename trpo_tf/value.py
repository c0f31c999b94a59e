"""The value-function baseline's fit: Adam on mean squared error over shuffled minibatches,
all epochs inside one tf.function traced once per run."""
import keras
import tensorflow as tf


class ValueFitter:
    def __init__(self, value_net, obs_spec, learning_rate, epochs, minibatch, seed=0):
        self.value_net = value_net
        self.epochs = epochs
        self.minibatch = minibatch
        self.optimizer = keras.optimizers.Adam(learning_rate)
        self.optimizer.build(value_net.trainable_variables)
        self.rng = tf.random.Generator.from_seed(seed)  # checkpointed: resumes reshuffle alike
        self.trace_count = 0
        self.fit = tf.function(
            self._fit, input_signature=[obs_spec, tf.TensorSpec((None,), tf.float32)])

    def _mse(self, obs, targets):
        return tf.reduce_mean(tf.square(self.value_net(obs) - targets))

    def _fit(self, obs, targets):
        self.trace_count += 1
        variables = self.value_net.trainable_variables
        loss_before = self._mse(obs, targets)
        n = tf.shape(obs)[0]
        num_minibatches = (n + self.minibatch - 1) // self.minibatch
        for _ in tf.range(self.epochs):
            order = tf.argsort(self.rng.uniform([n]))
            for j in tf.range(num_minibatches):
                idx = order[j * self.minibatch:(j + 1) * self.minibatch]
                with tf.GradientTape() as tape:
                    loss = self._mse(tf.gather(obs, idx), tf.gather(targets, idx))
                grads = tape.gradient(loss, variables)
                self.optimizer.apply_gradients(zip(grads, variables))
        return {"loss_before": loss_before, "loss_after": self._mse(obs, targets)}
