"""tf.function without AutoGraph, for every graph trpo_tf traces, and the graph helpers that
keep tracing cheap.

The graphs write their loops and branches as tf.while_loop / tf.cond / tf.where, so tracing
runs the Python as written and converts no source. AutoGraph's conversion of the ~70
functions a training run reaches (parsing and rewriting each one's AST, in every new process)
cost ~2.5 s of the first iteration of a Cartpole run here, more than the tracing itself."""
import tensorflow as tf


def traced(fn=None, **kwargs):
    """tf.function(fn, autograph=False, **kwargs); without fn, a decorator."""
    if fn is None:
        return lambda f: tf.function(f, autograph=False, **kwargs)
    return tf.function(fn, autograph=False, **kwargs)


def repeat(times, body):
    """body(i) for i = 0 .. times - 1 in one tf.while_loop (for its side effects: it returns
    nothing)."""
    def once(i):
        body(i)
        return (i + 1,)

    tf.while_loop(lambda i: i < times, once, (tf.constant(0),))


def adam_step(optimizer, grads, variables):
    """optimizer.apply_gradients(zip(grads, variables)) for a built keras.optimizers.Adam
    without amsgrad, weight decay or clipping, written as the TensorFlow ops its update_step
    runs, in its order, on its own slots and step counter (the same numbers, the same
    checkpoints). Tracing Keras's apply_gradients (its distribution-strategy and name-scope
    machinery) cost ~0.2 s per traced fit, more than the fit's own graph."""
    step = tf.cast(optimizer.iterations + 1, tf.float32)
    lr = tf.cast(optimizer.learning_rate, tf.float32)
    alpha = lr * tf.sqrt(1 - tf.pow(tf.cast(optimizer.beta_2, tf.float32), step)) / (
        1 - tf.pow(tf.cast(optimizer.beta_1, tf.float32), step))
    for grad, variable in zip(grads, variables):
        if grad is None:  # Keras skips a variable the loss does not reach
            continue
        index = optimizer._get_variable_index(variable)
        m, v = optimizer._momentums[index], optimizer._velocities[index]
        m.assign_add((grad - m) * (1 - optimizer.beta_1))
        v.assign_add((tf.square(grad) - v) * (1 - optimizer.beta_2))
        variable.assign_sub(m * alpha / (tf.sqrt(v) + optimizer.epsilon))
    optimizer.iterations.assign_add(1)
