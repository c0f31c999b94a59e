"""The TRPO update (section 6, appendix C) as small TF functions, composed in TRPOLearner.

  maximise   L(theta) = mean_n [pi_theta(a_n|s_n) / pi_old(a_n|s_n) * A_n]      (eq. 14-15)
  subject to mean_n KL(pi_old(.|s_n) || pi_theta(.|s_n)) <= delta               (eq. 13)

Search direction s = A^{-1} g by conjugate gradient, A the Hessian of the mean KL applied
to vectors by double backprop (never formed); maximal step beta = sqrt(2 delta / s^T A s);
then backtracking until L improves and the KL is within delta.
"""
import math

import tensorflow as tf


def flat_concat(tensors):
    return tf.concat([tf.reshape(t, [-1]) for t in tensors], 0)


def get_flat(variables):
    return flat_concat(variables)


def set_flat(variables, flat):
    """Assign a flat parameter vector back into `variables`, slice by slice."""
    offset = 0
    for v in variables:
        size = math.prod(v.shape)
        v.assign(tf.reshape(flat[offset:offset + size], v.shape))
        offset += size


def surrogate_gain(dist, params, actions, old_log_prob, advantages):
    """Eq. 14-15 with q = pi_old (single path): importance-sampled mean advantage."""
    ratio = tf.exp(dist.log_prob(params, actions) - old_log_prob)
    return tf.reduce_mean(ratio * advantages)


def single_path_gain(dist):
    """gain(params, old_params, actions, advantages) for TRPOLearner: eq. 14-15, q = pi_old."""

    def gain(params, old_params, actions, advantages):
        return surrogate_gain(dist, params, actions, dist.log_prob(old_params, actions), advantages)

    return gain


def branch_log_prob(dist, params, actions):
    """log pi(a_{n,k} | s_n) for K actions per state: params [N, P], actions [N, K, ...] -> [N, K]."""
    k = tf.shape(actions)[1]
    flat_actions = tf.reshape(actions, tf.concat([[-1], tf.shape(actions)[2:]], 0))
    log_p = dist.log_prob(tf.repeat(params, k, axis=0), flat_actions)
    return tf.reshape(log_p, [-1, k])


def vine_gain(dist, proposal):
    """gain(params, old_params, actions [N, K, ...], q_hat [N, K]) for vine (section 5.2):

      all     eq. 16: L_n = sum_k pi(a_k|s_n) Q(s_n, a_k), every action of a small discrete space
      policy  eq. 17: self-normalised importance sampling, w_k = pi(a_k|s_n) / pi_old(a_k|s_n)
      uniform eq. 17 with q uniform: w_k = pi(a_k|s_n) / (1/|A|), the constant cancels
    The mean over the rollout set's states is the surrogate.
    """

    def gain(params, old_params, actions, q_hat):
        log_p = branch_log_prob(dist, params, actions)
        if proposal == "all":
            return tf.reduce_mean(tf.reduce_sum(tf.exp(log_p) * q_hat, 1))
        if proposal == "policy":
            log_p = log_p - branch_log_prob(dist, old_params, actions)
        w = tf.exp(log_p - tf.reduce_max(log_p, 1, keepdims=True))  # the scale cancels in eq. 17
        return tf.reduce_mean(tf.reduce_sum(w * q_hat, 1) / tf.reduce_sum(w, 1))

    return gain


def mean_kl(dist, old_params, params):
    """Eq. 13's constraint: the mean over states of KL(pi_old || pi_theta)."""
    return tf.reduce_mean(dist.kl(old_params, params))


def fisher_vector_product(kl_fn, variables, vector):
    """A v with A = d^2/dtheta^2 mean KL (section 6's analytic FIM): grad of (grad KL . v)."""
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            kl = kl_fn()
        grad_kl = flat_concat(inner.gradient(kl, variables))
        grad_kl_v = tf.reduce_sum(grad_kl * tf.stop_gradient(vector))
    return flat_concat(outer.gradient(grad_kl_v, variables))


def conjugate_gradient(matvec, b, iters, residual_tol=1e-10):
    """Solve A x = b for symmetric positive definite A given only x -> A x.

    Returns (x, ||b - A x||); stops early once the squared residual is below residual_tol.
    """
    x = tf.zeros_like(b)
    r, p = b, b
    r_dot_r = tf.reduce_sum(r * r)
    for _ in tf.range(iters):
        if r_dot_r < residual_tol:
            break
        z = matvec(p)
        alpha = r_dot_r / tf.reduce_sum(p * z)
        x = x + alpha * p
        r = r - alpha * z
        new_r_dot_r = tf.reduce_sum(r * r)
        p = r + (new_r_dot_r / r_dot_r) * p
        r_dot_r = new_r_dot_r
    return x, tf.sqrt(r_dot_r)


def max_step_length(direction, a_direction, max_kl):
    """beta = sqrt(2 delta / s^T A s): the step along s whose quadratic KL model equals delta."""
    return tf.sqrt(2.0 * max_kl / (tf.reduce_sum(direction * a_direction) + 1e-12))


def backtracking_line_search(evaluate, theta_old, full_step, gain_old, max_kl, shrink,
                             max_backtracks):
    """First theta_old + shrink^k * full_step (k = 0, 1, ...) that improves the surrogate and
    keeps the mean KL <= max_kl, all finite; else theta_old (the step is rejected).

    evaluate(theta) -> (gain, kl) at theta (it may set the parameters as a side effect).
    Returns (theta, accepted, steps_tried, gain, kl).
    """
    theta, gain, kl = theta_old, gain_old, tf.zeros_like(gain_old)
    accepted = tf.constant(False)
    tried = tf.constant(0)
    for k in tf.range(max_backtracks):
        candidate = theta_old + tf.pow(shrink, tf.cast(k, full_step.dtype)) * full_step
        gain_k, kl_k = evaluate(candidate)
        tried = k + 1
        if (tf.math.is_finite(gain_k) and tf.math.is_finite(kl_k) and gain_k > gain_old
                and kl_k <= max_kl):
            theta, gain, kl, accepted = candidate, gain_k, kl_k, tf.constant(True)
            break
    return theta, accepted, tried, gain, kl


class TRPOLearner:
    """One TRPO update per call, as a tf.function traced once per run (input_signature).

    step(obs, *data) maximises gain_fn(params, old_params, *data), the surrogate of the
    sampling scheme (single path: single_path_gain; vine: eq. 16 / 17), under the mean KL
    over `obs`. input_specs = [obs spec, *data specs].
    """

    def __init__(self, policy, dist, gain_fn, input_specs, max_kl, cg_iters, cg_damping,
                 fvp_subsample, ls_shrink, ls_max_backtracks):
        self.policy = policy
        self.dist = dist
        self.gain_fn = gain_fn
        self.variables = policy.trainable_variables
        self.max_kl = max_kl
        self.cg_iters = cg_iters
        self.cg_damping = cg_damping
        self.fvp_stride = max(1, round(1.0 / fvp_subsample))  # appendix C: FVPs on a subsample
        self.ls_shrink = ls_shrink
        self.ls_max_backtracks = ls_max_backtracks
        self.trace_count = 0
        self.step = tf.function(self._step, input_signature=list(input_specs))

    def _step(self, obs, *data):
        self.trace_count += 1  # Python side effect: runs only while tracing
        dist, policy, variables = self.dist, self.policy, self.variables
        old_params = tf.stop_gradient(policy(obs))
        theta_old = get_flat(variables)

        with tf.GradientTape() as tape:
            gain_old = self.gain_fn(policy(obs), old_params, *data)
        grad = flat_concat(tape.gradient(gain_old, variables))

        fvp_obs, fvp_old = obs[::self.fvp_stride], old_params[::self.fvp_stride]

        def damped_fvp(v):  # (A + damping I) v
            kl_fn = lambda: mean_kl(dist, fvp_old, policy(fvp_obs))
            return fisher_vector_product(kl_fn, variables, v) + self.cg_damping * v

        direction, cg_residual = conjugate_gradient(damped_fvp, grad, self.cg_iters)
        full_step = max_step_length(direction, damped_fvp(direction), self.max_kl) * direction
        # a non-finite gradient, Fisher-vector product or CG solution never reaches theta
        finite = tf.reduce_all(tf.math.is_finite(full_step)) & tf.math.is_finite(gain_old)
        full_step = tf.where(finite, full_step, tf.zeros_like(full_step))

        def evaluate(theta):
            set_flat(variables, theta)
            params = policy(obs)
            return self.gain_fn(params, old_params, *data), mean_kl(dist, old_params, params)

        theta, accepted, tried, gain, kl = backtracking_line_search(
            evaluate, theta_old, full_step, gain_old, self.max_kl, self.ls_shrink,
            self.ls_max_backtracks)
        set_flat(variables, theta)
        return {
            "surrogate_before": gain_old,
            "surrogate_after": gain,
            "kl": kl,
            "entropy": tf.reduce_mean(dist.entropy(old_params)),
            "linesearch_steps": tried,
            "step_accepted": tf.cast(accepted, tf.float32),
            "cg_residual": cg_residual,
            "grad_norm": tf.norm(grad),
            "step_norm": tf.norm(theta - theta_old),
            "fault": 1.0 - tf.cast(finite, tf.float32),
        }
