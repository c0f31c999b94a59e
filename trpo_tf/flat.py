"""A model's parameters as one flat vector and back (conjugate gradient, line searches and
the derivative-free searches work on it). A leaf module: policies and methods both use it."""
import math

import tensorflow as tf


def flat_concat(tensors):
    return tf.concat([tf.reshape(t, [-1]) for t in tensors], 0)


def get_flat(variables):
    return flat_concat(variables)


def unflatten(flat, variables):
    """A flat vector -> tensors shaped like `variables`, in order."""
    sizes = [math.prod(v.shape) for v in variables]
    return [tf.reshape(part, v.shape) for part, v in zip(tf.split(flat, sizes), variables)]


def set_flat(variables, flat):
    """Assign a flat parameter vector back into `variables`, slice by slice."""
    for v, part in zip(variables, unflatten(flat, variables)):
        v.assign(part)


def revert_unless(ok, variables, flat):
    """Keep the values of `variables` where the scalar bool `ok` holds, else set them to the
    flat vector `flat` (a fit that diverged never reaches the policy); one write either way,
    no branch in the graph."""
    set_flat(variables, tf.where(ok, get_flat(variables), flat))


def watchable(variables):
    """The tf.Variables under `variables` (a Keras 3 variable holds one as `.value`; a
    tf.Variable's own `.value` is a method): what tf.autodiff.ForwardAccumulator watches."""
    return [v if isinstance(v, tf.Variable) else v.value for v in variables]
