"""tf.function without AutoGraph, for every graph trpo_tf traces.

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
