"""Discounted returns, GAE(lambda) and advantage normalisation as TF functions.

All functions take flat per-step tensors in path order (see sampling/single_path.py):
`path_end` marks the last step of each segment and `terminal` the steps after which the
env terminated; `next_values` holds V(s_{t+1}) for every step, bootstrapped at path ends.
"""
import tensorflow as tf

from trpo_tf.graph import traced


def reverse_linear_recurrence(x, coeff):
    """y_t = x_t + coeff_t * y_{t+1}, y_N = 0, for all t at once.

    Hillis-Steele doubling: after the round with shift k, y_t sums the next 2k terms with
    their products of coefficients, so ceil(log2 N) rounds of vector ops replace an N-step
    Python or tf.scan loop (50k steps: 16 rounds).
    """
    x = tf.convert_to_tensor(x)
    coeff = tf.convert_to_tensor(coeff, x.dtype)
    n = tf.shape(x)[0]

    def double(k, y, a):
        pad = tf.zeros([k], x.dtype)
        return k * 2, y + a * tf.concat([y[k:], pad], 0), a * tf.concat([a[k:], pad], 0)

    return tf.while_loop(lambda k, y, a: k < n, double, (tf.constant(1), x, coeff))[1]


def next_state_values(values, end_values, path_end):
    """V(s_{t+1}) per step: the next step's value inside a path, `end_values` at path ends."""
    shifted = tf.concat([values[1:], tf.zeros([1], values.dtype)], 0)
    end_idx = tf.where(path_end > 0)
    return tf.tensor_scatter_nd_update(shifted, end_idx, end_values)


def discounted_returns(rew, next_values, terminal, path_end, gamma):
    """Q-hat_t = sum_k gamma^k r_{t+k} along the path (section 5.1), plus gamma^len V(s_end)
    where the path was cut by a time limit or the batch rather than terminated."""
    bootstrap = gamma * (1.0 - terminal) * path_end * next_values
    return reverse_linear_recurrence(rew + bootstrap, gamma * (1.0 - path_end))


def gae(rew, values, next_values, terminal, path_end, gamma, lam):
    """GAE(lambda) (Schulman et al. 2016): A_t = sum_k (gamma lam)^k delta_{t+k},
    delta_t = r_t + gamma V(s_{t+1}) [0 if terminal] - V(s_t); lam = 1 gives Q-hat - V."""
    delta = rew + gamma * (1.0 - terminal) * next_values - values
    return reverse_linear_recurrence(delta, gamma * lam * (1.0 - path_end))


def normalize(x, eps=1e-8):
    mean, var = tf.nn.moments(x, axes=[0])
    return (x - mean) / (tf.sqrt(var) + eps)


def explained_variance(predicted, target):
    """1 - Var(target - predicted) / Var(target): 1 is perfect, 0 is no better than a constant."""
    var_target = tf.math.reduce_variance(target)
    return 1.0 - tf.math.reduce_variance(target - predicted) / (var_target + 1e-8)


def advantages_and_targets(mode, rew, values, next_values, terminal, path_end, gamma, lam):
    """(advantages, value targets) for --advantage:
      q        the paper's plain Monte Carlo Q-hat (eq. 15 uses Q in place of A)
      baseline Q-hat - V(s)
      gae      GAE(lam), with TD(lam) value targets A + V
    """
    if mode == "gae":
        adv = gae(rew, values, next_values, terminal, path_end, gamma, lam)
        return adv, adv + values
    returns = discounted_returns(rew, next_values, terminal, path_end, gamma)
    if mode == "q":
        return returns, returns
    return returns - values, returns


def make_advantage_fn(value_net, cfg, obs_spec, inputs_spec=None):
    """A tf.function: (what the value net reads the batch as: its observations, or for a
    recurrent one Sequences of `inputs_spec`; the segments' end observations, rewards,
    terminal, path_end) -> (advantages, value targets, explained variance) (traced once)."""
    per_step = tf.TensorSpec((None,), tf.float32)

    @traced(input_signature=[inputs_spec or obs_spec, obs_spec, per_step, per_step, per_step])
    def advantage_fn(inputs, end_obs, rew, terminal, path_end):
        values, end_values = value_net.values_and_end_values(inputs, end_obs, path_end)
        next_values = next_state_values(values, end_values, path_end)
        adv, targets = advantages_and_targets(
            cfg.advantage, rew, values, next_values, terminal, path_end, cfg.gamma,
            cfg.gae_lambda)
        if cfg.normalize_advantages:
            adv = normalize(adv)
        return adv, targets, explained_variance(values, targets)

    return advantage_fn
