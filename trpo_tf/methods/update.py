"""The TRPO update (section 6, appendix C) as small TF functions, composed in TRPOLearner.

  maximise   L(theta) = mean_n [pi_theta(a_n|s_n) / pi_old(a_n|s_n) * A_n]      (eq. 14-15)
  subject to mean_n KL(pi_old(.|s_n) || pi_theta(.|s_n)) <= delta               (eq. 13)

Search direction s = A^{-1} g by conjugate gradient, A the Hessian of the mean KL applied
to vectors as J^T M J v (never formed: one forward-mode and one reverse pass through the
policy; M the action distribution's own Fisher); maximal step beta = sqrt(2 delta / s^T A s);
then backtracking until L improves and the KL is within delta.

A recurrent policy (policies.RNNPolicy) takes the batch as Sequences, one per env: every pass
above runs over whole sequences, the states recomputed from their stored starts, and the FVP
subsample takes whole sequences. TensorFlow's forward mode cannot enter the unroll's while
loop, so there the policy carries J v along the unroll itself (RNNPolicy.params_and_jvp).
"""
import tensorflow as tf

from trpo_tf.distributions import masked_logits
from trpo_tf.flat import flat_concat, get_flat, set_flat, unflatten, watchable
from trpo_tf.graph import traced
from trpo_tf.policies import Sequences, every_kth_sequence


def all_finite(*tensors):
    """No NaN or Inf in any of them (tensors or variables; integer ones, such as uint8 frames,
    always pass)."""
    return all(not tf.as_dtype(t.dtype).is_floating or bool(tf.reduce_all(tf.math.is_finite(t)))
               for t in tensors)


def surrogate_gain(dist, params, actions, old_log_prob, advantages):
    """Eq. 14-15 with q = pi_old (single path): importance-sampled mean advantage."""
    ratio = tf.exp(dist.log_prob(params, actions) - old_log_prob)
    return tf.reduce_mean(ratio * advantages)


def single_path_gain(dist):
    """gain(params, old_params, actions, advantages) for TRPOLearner: eq. 14-15, q = pi_old."""

    def gain(params, old_params, actions, advantages):
        return surrogate_gain(dist, params, actions, dist.log_prob(old_params, actions), advantages)

    return gain


def with_entropy_bonus(gain_fn, dist, coef):
    """gain_fn plus coef times the mean entropy of the policy at `params` (over the states the
    gain runs over): the surrogate the step and the line search maximise with --entropy_coef."""

    def gain(params, old_params, *data):
        return gain_fn(params, old_params, *data) + coef * tf.reduce_mean(dist.entropy(params))

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


def kl_hessian_vector_product(kl_fn, variables, vector):
    """A v with A = d^2/dtheta^2 mean KL by double backprop: the gradient of (grad KL . v).
    The reference that fisher_vector_product is tested against (tests/test_update.py)."""
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            kl = kl_fn()
        grad_kl = flat_concat(inner.gradient(kl, variables))
        grad_kl_v = tf.reduce_sum(grad_kl * tf.stop_gradient(vector))
    return flat_concat(outer.gradient(grad_kl_v, variables))


def jvp_through(fn, x, x_tangent):
    """fn(x)'s directional derivative along x_tangent (forward mode; fn has no loop)."""
    with tf.autodiff.ForwardAccumulator(x, x_tangent) as acc:
        y = fn(x)
    return acc.jvp(y)


def weighted_jacobian_product(outputs_fn, weigh, variables, vector, jvp_fn=None):
    """1/N sum_n J_n^T weigh(J v)_n, J_n the Jacobian of row n of outputs_fn() in the
    variables: J v by one forward-mode pass (or jvp_fn(vector), the outputs' own tangent pass
    where forward mode cannot enter: a recurrent policy's unroll), J^T by one backprop; the
    N x P matrix J is never formed."""
    with tf.GradientTape() as tape:
        if jvp_fn is None:
            with tf.autodiff.ForwardAccumulator(watchable(variables),
                                                unflatten(vector, variables)) as acc:
                outputs = outputs_fn()
            j_v = acc.jvp(outputs)
        else:
            outputs = outputs_fn()
            with tape.stop_recording():
                j_v = jvp_fn(vector)
        weighted = tf.stop_gradient(weigh(j_v))
    n = tf.cast(tf.shape(outputs)[0], vector.dtype)
    return flat_concat(tape.gradient(outputs, variables, output_gradients=weighted)) / n


def fisher_vector_product(dist, params_fn, old_params, variables, vector, jvp_fn=None):
    """A v for A the Hessian of the mean KL(pi_old || pi_theta) at theta = theta_old (section
    6's analytic FIM): A = 1/N sum_n J_n^T M_n J_n, J_n = d params_n / d theta and M_n the
    distribution's Fisher in its parameters at old_params[n] (distributions.py). Exact at
    theta_old, where the KL's gradient in the parameters, the Hessian's other term, is zero.
    One forward-mode and one reverse pass (a recurrent policy: its forward pass, its tangent
    pass jvp_fn, one reverse pass); params_fn() gives the parameters at theta."""
    return weighted_jacobian_product(params_fn, lambda j_v: dist.fisher_product(old_params, j_v),
                                     variables, vector, jvp_fn)


def empirical_fisher_vector_product(log_prob_fn, variables, vector, jvp_fn=None):
    """F v with F = 1/N sum_n g_n g_n^T, g_n = grad log pi(a_n|s_n): the empirical FIM, the
    covariance of the per-sample score (its mean is zero under pi), which section 6 compares
    with the analytic KL Hessian."""
    return weighted_jacobian_product(log_prob_fn, lambda j_v: j_v, variables, vector, jvp_fn)


def fvp_subsample(inputs, stride):
    """Appendix C's subsample for the Fisher-vector products: every stride-th state of the
    policy's inputs -> (those inputs, a function taking the same rows out of a per-row
    tensor). Sequences are never cut: every stride-th sequence, whole."""
    if isinstance(inputs, Sequences):
        return every_kth_sequence(inputs, stride)
    rows = slice(None, None, stride)
    return inputs[rows], lambda x: x[rows]


def conjugate_gradient(matvec, b, iters, residual_tol=1e-10):
    """Solve A x = b for symmetric positive definite A given only x -> A x.

    Returns (x, ||b - A x||); stops early once the squared residual is below residual_tol
    (a NaN residual does not stop it: the caller's finiteness check sees the NaN).
    """
    def not_done(i, x, r, p, r_dot_r):
        return (i < iters) & tf.logical_not(r_dot_r < residual_tol)

    def cg_step(i, x, r, p, r_dot_r):
        z = matvec(p)
        alpha = r_dot_r / tf.reduce_sum(p * z)
        x = x + alpha * p
        r = r - alpha * z
        new_r_dot_r = tf.reduce_sum(r * r)
        p = r + (new_r_dot_r / r_dot_r) * p
        return i + 1, x, r, p, new_r_dot_r

    start = (tf.constant(0), tf.zeros_like(b), b, b, tf.reduce_sum(b * b))
    _, x, _, _, r_dot_r = tf.while_loop(not_done, cg_step, start)
    return x, tf.sqrt(r_dot_r)


def max_step_length(direction, a_direction, max_kl):
    """beta = sqrt(2 delta / s^T A s): the step along s whose quadratic KL model equals delta."""
    return tf.sqrt(2.0 * max_kl / (tf.reduce_sum(direction * a_direction) + 1e-12))


def backtracking_line_search(evaluate, theta_old, full_step, gain_old, max_kl, shrink,
                             max_backtracks, constrain_max=False):
    """First theta_old + shrink^k * full_step (k = 0, 1, ...) that improves the surrogate and
    keeps the mean KL (constrain_max: the maximum per-state KL, eq. 12) <= max_kl, all finite;
    else theta_old (the step is rejected).

    evaluate(theta) -> (gain, mean KL, max KL) at theta (it may set the parameters).
    Returns (theta, accepted, steps_tried, gain, mean KL, max KL).
    """
    def not_done(k, theta, accepted, gain, kl, kl_max):
        return (k < max_backtracks) & tf.logical_not(accepted)

    def try_step(k, theta, accepted, gain, kl, kl_max):
        candidate = theta_old + tf.pow(shrink, tf.cast(k, full_step.dtype)) * full_step
        gain_k, kl_k, kl_max_k = evaluate(candidate)
        bound = kl_max_k if constrain_max else kl_k
        ok = (tf.math.is_finite(gain_k) & tf.math.is_finite(bound) & (gain_k > gain_old)
              & (bound <= max_kl))
        return (k + 1, tf.where(ok, candidate, theta), ok, tf.where(ok, gain_k, gain),
                tf.where(ok, kl_k, kl), tf.where(ok, kl_max_k, kl_max))

    zero = tf.zeros_like(gain_old)
    tried, theta, accepted, gain, kl, kl_max = tf.while_loop(
        not_done, try_step, (tf.constant(0), theta_old, tf.constant(False), gain_old, zero, zero))
    return theta, accepted, tried, gain, kl, kl_max


class TRPOLearner:
    """One TRPO update per call, as a tf.function traced once per run (input_signature).

    step(obs, *data) maximises gain_fn(params, old_params, *data), the surrogate of the
    sampling scheme (single path: single_path_gain; vine: eq. 16 / 17), under the mean KL
    over `obs`. input_specs = [obs spec, *data specs]. With kl_states=True the last input is
    a separate set of states for the KL and the Fisher-vector products (vine: its trunk
    states; its rollout set `obs` is ~100 times sparser) and its spec ends input_specs.
    With a recurrent policy (policy.state_size > 0) the first input is the batch as
    policies.Sequences, not observations (kl_states is then refused).
    With action_masks=True the input after the data is the batch's action masks (bool, one
    per logit): every distribution the step reads, pi_old's included, is masked by them
    (distributions.masked_logits), so the surrogate, the KL, the Fisher-vector products and
    the entropy are those of the masked policy. With behaviour_params=True the inputs end
    with the sampling policy's parameters on `obs` (and then on the KL states): pi_old of the surrogate and of the KL is the policy that
    sampled, computed before the observation normaliser took in the batch, so the line search
    bounds the whole change, normaliser's included, and a step must improve on that policy's
    surrogate; the Fisher-vector products are those at the current parameters.

    fisher="analytic" applies the KL Hessian as J^T M J v (fisher_vector_product);
    fisher="kl_hessian" is the same matrix by double backprop, about twice the cost (the
    reference: tests/test_update.py, bench/update.py). The ablations of section 8.1 change
    one piece each:
      fisher="empirical"  CG on the empirical FIM (covariance of the scores; data[0] must be
                          the actions taken) instead of the analytic KL Hessian;
      constraint="max"    the step keeps the *maximum* per-state KL <= delta (eq. 12): the
                          mean-KL step is scaled by the quadratic model of the max KL, then
                          the line search checks the max;
      fixed_step=lam > 0  natural policy gradient (section 7, after eq. 18): theta + lam A^-1 g,
                          no trust region and no line search.
    """

    def __init__(self, policy, dist, gain_fn, input_specs, max_kl, cg_iters, cg_damping,
                 fvp_subsample, ls_shrink, ls_max_backtracks, fisher="analytic",
                 constraint="mean", fixed_step=0.0, kl_states=False, behaviour_params=False,
                 action_masks=False):
        if kl_states and fisher == "empirical":
            raise ValueError("the empirical FIM needs the actions taken in the KL states")
        if kl_states and action_masks:
            raise ValueError("action masks are those of the batch's states, not of KL states")
        if kl_states and policy.state_size:
            raise ValueError("a recurrent policy's KL runs over the batch's own sequences")
        self.policy = policy
        self.dist = dist
        self.gain_fn = gain_fn
        self.variables = policy.trainable_variables
        self.max_kl = tf.Variable(max_kl, trainable=False, dtype=tf.float32)  # a schedule sets it
        self.cg_iters = cg_iters
        self.cg_damping = cg_damping
        self.fvp_stride = max(1, round(1.0 / fvp_subsample))  # appendix C: FVPs on a subsample
        self.ls_shrink = ls_shrink
        self.ls_max_backtracks = ls_max_backtracks
        self.fisher, self.constraint, self.fixed_step = fisher, constraint, fixed_step
        self.kl_states, self.behaviour_params = kl_states, behaviour_params
        self.action_masks = action_masks
        self.trace_count = 0
        self.step = traced(self._step, input_signature=list(input_specs))

    def damped_fvp_fn(self, obs, old_params, actions, mask):
        """v -> (F + damping I) v on the FVP subsample, F analytic (either form) or empirical,
        of the policy masked by `mask` (None: unmasked)."""
        dist, policy, variables = self.dist, self.policy, self.variables
        fvp_obs, rows_of = fvp_subsample(obs, self.fvp_stride)
        fvp_old = rows_of(old_params)
        fvp_mask = None if mask is None else rows_of(mask)
        if self.fisher == "empirical":  # what the FVP differentiates, of the policy's params
            fvp_act = rows_of(actions)
            outputs_of = lambda params: dist.log_prob(masked_logits(params, fvp_mask), fvp_act)
        else:
            outputs_of = lambda params: masked_logits(params, fvp_mask)
        jvp_fn = None
        if policy.state_size:  # forward mode cannot enter the unroll: the policy's tangent pass
            jvp_fn = lambda v: jvp_through(
                outputs_of, *policy.params_and_jvp(fvp_obs, unflatten(v, variables)))
        outputs_fn = lambda: outputs_of(policy(fvp_obs))
        if self.fisher == "empirical":
            fvp = lambda v: empirical_fisher_vector_product(outputs_fn, variables, v, jvp_fn)
        elif self.fisher == "kl_hessian":
            kl_fn = lambda: mean_kl(dist, fvp_old, outputs_fn())
            fvp = lambda v: kl_hessian_vector_product(kl_fn, variables, v)
        else:
            fvp = lambda v: fisher_vector_product(dist, outputs_fn, fvp_old, variables, v, jvp_fn)
        return lambda v: fvp(v) + self.cg_damping * v

    def _step(self, obs, *data):
        self.trace_count += 1  # Python side effect: runs only while tracing
        dist, policy, variables = self.dist, self.policy, self.variables
        theta_old = get_flat(variables)
        behaviour = ()
        if self.behaviour_params:  # pi_old as it sampled: on obs (and on the KL states)
            behaviour, data = data[-1 - self.kl_states:], data[:-1 - self.kl_states]
        # the states eq. 13's mean KL runs over: the last input, or the batch's own
        kl_obs, data = (data[-1], data[:-1]) if self.kl_states else (obs, data)
        mask, data = (data[-1], data[:-1]) if self.action_masks else (None, data)
        with tf.GradientTape() as tape:  # one forward pass gives pi_old and the gradient at it
            params = masked_logits(policy(obs), mask)
            old_params = masked_logits(behaviour[0], mask) if behaviour else tf.stop_gradient(params)
            gain_old = self.gain_fn(params, old_params, *data)
        grad = flat_concat(tape.gradient(gain_old, variables))
        # the bar a step must clear: the surrogate of the policy that sampled (eq. 14 at
        # theta_old, every ratio 1), not of the old weights under the moved normaliser
        gain_sampling = self.gain_fn(old_params, old_params, *data) if behaviour else gain_old
        # the Fisher matrix at the current parameters; the KL from pi_old
        current = tf.stop_gradient(policy(kl_obs)) if self.kl_states else tf.stop_gradient(params)
        kl_old_params = masked_logits(behaviour[-1], mask) if behaviour else current

        # traced once, applied in CG and for the step length
        damped_fvp = traced(self.damped_fvp_fn(kl_obs, current, data[0], mask),
                            input_signature=[tf.TensorSpec(grad.shape, grad.dtype)])
        direction, cg_residual = conjugate_gradient(damped_fvp, grad, self.cg_iters)
        if self.fixed_step:
            full_step = self.fixed_step * direction
        else:
            full_step = max_step_length(direction, damped_fvp(direction), self.max_kl) * direction
        # a non-finite gradient, Fisher-vector product or CG solution never reaches theta
        finite = (tf.reduce_all(tf.math.is_finite(full_step)) & tf.math.is_finite(gain_old)
                  & tf.math.is_finite(gain_sampling))
        full_step = tf.where(finite, full_step, tf.zeros_like(full_step))

        def evaluate(theta):
            set_flat(variables, theta)
            params = masked_logits(policy(obs), mask)
            kl_params = policy(kl_obs) if self.kl_states else params
            kl = dist.kl(kl_old_params, kl_params)
            return self.gain_fn(params, old_params, *data), tf.reduce_mean(kl), tf.reduce_max(kl)

        line_search = {}  # a fixed step has none
        if self.fixed_step:
            theta = theta_old + full_step
            gain, kl, kl_max = evaluate(theta)
        else:
            if self.constraint == "max":  # eq. 12: scale to the max KL's quadratic model
                max_kl_full = evaluate(theta_old + full_step)[2]
                full_step *= tf.minimum(1.0, tf.sqrt(self.max_kl / (max_kl_full + 1e-12)))
            theta, accepted, tried, gain, kl, kl_max = backtracking_line_search(
                evaluate, theta_old, full_step, gain_sampling, self.max_kl, self.ls_shrink,
                self.ls_max_backtracks, constrain_max=self.constraint == "max")
            # rejected: the old weights stay, under the normaliser that took in the batch: its
            # change from the sampling policy is what the metrics report (not 0); `current`
            # and gain_old are that policy's already
            kl_stay = dist.kl(kl_old_params, current)
            gain, kl, kl_max = (tf.where(accepted, got, stay) for got, stay in zip(
                (gain, kl, kl_max), (gain_old, tf.reduce_mean(kl_stay), tf.reduce_max(kl_stay))))
            line_search = {"linesearch_steps": tried,
                           "step_accepted": tf.cast(accepted, tf.float32)}
        set_flat(variables, theta)
        return {
            "surrogate_before": gain_sampling,
            "surrogate_after": gain,
            "kl": kl,
            "kl_max": kl_max,
            "entropy": tf.reduce_mean(dist.entropy(kl_old_params)),
            **line_search,
            "cg_residual": cg_residual,
            "grad_norm": tf.norm(grad),
            "step_norm": tf.norm(theta - theta_old),
            "fault": 1.0 - tf.cast(finite, tf.float32),
        }
