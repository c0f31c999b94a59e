"""Relative entropy policy search (Peters, Muelling & Altun, AAAI 2010), the one method of
section 8.1's list the paper did not run itself.

REPS maximises the expected reward over state-action distributions q(s, a) that stay within
KL(q || p) <= epsilon of the sampled one p, with the states' feature expectations consistent
with the dynamics. Its Lagrangian dual over the temperature eta > 0 and the weights theta of a
state value V(s) = theta^T phi(s), estimated on the N sampled transitions, is

    g(eta, theta) = eta epsilon + eta log( 1/N sum_i exp(delta_i(theta) / eta) )
    delta_i(theta) = r_i + gamma V(s'_i) - V(s_i)       (the Bellman error; V(s') = 0 at a terminal)

(the paper's eq. for g with discounting, as is common in discounted implementations), minimised
here by SciPy's L-BFGS-B with its analytic gradient:

    dg/dtheta = sum_i w_i (gamma phi(s'_i) - phi(s_i))
    dg/deta   = epsilon + log( 1/N sum_i exp(delta_i / eta) ) - sum_i w_i delta_i / eta
    w_i       = exp(delta_i / eta) / sum_j exp(delta_j / eta)

The reweighted sample distribution w has KL(w || uniform) = epsilon at the optimum (less if the
bound is slack); the policy is then refitted to it by weighted maximum likelihood
(weighted_fit.py). Features: phi(s) = the observation standardised over the batch and all its
pairwise products (quadratic features). No constant feature: with gamma < 1 a constant c
shifts every delta by -(1 - gamma) c, and this dual, which leaves out the (1 - gamma)
E_mu0[V(s_0)] term of the discounted state-distribution constraint, would be unbounded below.
"""
import time

import numpy as np

from trpo_tf.methods.base import NAN, POLICY_STEP_FAULT, SinglePathMethod, policy_step
from trpo_tf.settings import at_least, declare, positive

declare("4 method reps", "reps_epsilon", 0.5,
        "reps: KL bound epsilon between the reweighted and the sampled state-action distribution.",
        check=positive, rule="> 0")
declare("4 method reps", "reps_dual_iters", 100, "reps: L-BFGS-B iterations on the dual.",
        check=at_least(1), rule=">= 1")
declare("4 method reps", "reps_epochs", 50,
        "reps: full-batch Adam steps of the weighted maximum-likelihood policy fit.",
        check=at_least(1), rule=">= 1")
declare("4 method reps", "reps_lr", 0.01, "reps: Adam learning rate of the policy fit.", check=positive,
        rule="> 0")
MAX_OBSERVATION_SIZE = 64  # quadratic features: 64 inputs give 2,144 of them
MIN_ETA = 1e-6


def quadratic_features(x):
    """[x_1 .. x_d, x_i x_j for i <= j] of each row of x [N, d] -> [N, d + d (d + 1) / 2]."""
    i, j = np.triu_indices(x.shape[1])
    return np.concatenate([x, x[:, i] * x[:, j]], axis=1)


def feature_differences(obs, end_obs, terminal, path_end, gamma):
    """gamma phi(s'_i) - phi(s_i) per transition, phi the quadratic features of the observation
    standardised with the batch's mean and std; s'_i is the next row inside a path, the next
    entry of `end_obs` at a path end, and has phi = 0 after a terminal step."""
    mean, std = obs.mean(0), obs.std(0) + 1e-6
    phi = quadratic_features((obs - mean) / std)
    next_phi = np.concatenate([phi[1:], np.zeros_like(phi[:1])])
    ends = np.flatnonzero(path_end > 0)
    next_phi[ends] = quadratic_features((end_obs - mean) / std)
    next_phi[terminal > 0] = 0.0
    return gamma * next_phi - phi


def dual(x, rewards, dphi, epsilon):
    """The REPS dual g(eta, theta) at x = [eta, theta...] and its gradient (float64)."""
    eta, theta = x[0], x[1:]
    z = (rewards + dphi @ theta) / eta
    top = z.max()
    e = np.exp(z - top)
    total = e.sum()
    log_mean_exp = top + np.log(total) - np.log(len(z))
    w = e / total
    value = eta * epsilon + eta * log_mean_exp
    grad = np.concatenate([[epsilon + log_mean_exp - w @ z], w @ dphi])
    return value, grad


def sample_weights(x, rewards, dphi):
    """w_i = softmax(delta_i / eta) at x = [eta, theta...]: the reweighted sample distribution."""
    z = (rewards + dphi @ x[1:]) / x[0]
    e = np.exp(z - z.max())
    return e / e.sum()


def sample_kl(w):
    """KL(w || uniform) of a distribution over N samples."""
    nz = w[w > 0]
    return float(np.sum(nz * np.log(len(w) * nz)))


def eta_within_bound(x, rewards, dphi, epsilon, rounds=60):
    """x with eta raised, by bisection on log eta, until KL(w || uniform) <= epsilon, if the
    optimiser stopped short of it. With theta fixed, dg/deta = epsilon - KL(w), and the KL falls
    as eta grows, so this step only lowers the dual."""
    kl = lambda eta: sample_kl(sample_weights(np.concatenate([[eta], x[1:]]), rewards, dphi))
    low = high = x[0]
    if kl(low) <= epsilon:
        return x
    while kl(high) > epsilon:
        low, high = high, high * 2.0
    for _ in range(rounds):
        mid = np.sqrt(low * high)
        low, high = (low, mid) if kl(mid) <= epsilon else (mid, high)
    return np.concatenate([[high], x[1:]])


def solve_dual(rewards, dphi, epsilon, max_iters):
    """argmin of the dual over eta >= MIN_ETA and theta by L-BFGS-B, from eta = 1, theta = 0,
    then eta raised if need be so the weights keep the bound -> (x, g(x), iterations)."""
    from scipy.optimize import minimize

    rewards, dphi = np.asarray(rewards, np.float64), np.asarray(dphi, np.float64)
    x0 = np.concatenate([[1.0], np.zeros(dphi.shape[1])])
    bounds = [(MIN_ETA, None)] + [(None, None)] * dphi.shape[1]
    result = minimize(dual, x0, args=(rewards, dphi, epsilon), jac=True, method="L-BFGS-B",
                      bounds=bounds, options={"maxiter": max_iters})
    x = eta_within_bound(result.x, rewards, dphi, epsilon)
    return x, float(dual(x, rewards, dphi, epsilon)[0]), int(result.nit)


class REPS(SinglePathMethod):
    algo = "reps"
    tags = {"reps_eta": "REPS/Eta", "reps_dual": "REPS/Dual", "reps_kl": "REPS/SampleKL",
            "reps_dual_iterations": "REPS/DualIterations",
            "reps_effective_samples": "REPS/EffectiveSamples"}

    @classmethod
    def check_env(cls, spec):
        from trpo_tf.errors import EnvError

        if spec.atari is not None:
            raise EnvError(f"--algo=reps fits quadratic features of vector observations; "
                           f"{spec.gym_id}'s frames are not: train it with --algo=trpo")

    def __init__(self, cfg, parts):
        super().__init__(cfg, parts)
        from trpo_tf.errors import ConfigError
        from trpo_tf.methods.weighted_fit import WeightedMaxLikelihood

        shape = parts.envs.observation_space.shape
        if len(shape) != 1 or shape[0] > MAX_OBSERVATION_SIZE:
            raise ConfigError(f"--algo=reps fits quadratic features of vector observations of "
                              f"at most {MAX_OBSERVATION_SIZE} numbers; {parts.spec.gym_id}'s "
                              f"are {shape}")
        sig = self.signature
        self.learner = WeightedMaxLikelihood(
            parts.policy, parts.dist, [parts.obs_spec, sig["act"], sig["rew"]], cfg.reps_epochs,
            cfg.reps_lr, "reps")

    def progress(self, m):
        return f"kl {m.get('kl', NAN):.4f} eta {m.get('reps_eta', NAN):.3g}"

    def improve(self, batch, rew):
        """Solve the dual on the batch's transitions, then refit the policy to the weights."""
        t0 = time.perf_counter()
        # standardised: the weights are the same (eta and theta scale with the rewards), and
        # the dual starts from eta = 1 on the scale its solution has
        rewards = np.asarray(rew, np.float64)
        rewards = (rewards - rewards.mean()) / (rewards.std() + 1e-8)
        dphi = feature_differences(batch["obs"].numpy().astype(np.float64),
                                   batch["end_obs"].numpy().astype(np.float64),
                                   batch["terminal"].numpy(), batch["path_end"].numpy(),
                                   self.cfg.gamma)
        x, value, iters = solve_dual(rewards, dphi, self.cfg.reps_epsilon, self.cfg.reps_dual_iters)
        weights = sample_weights(x, rewards, dphi)
        if not np.all(np.isfinite(weights)):
            return None, "REPS dual solution"
        t1 = time.perf_counter()
        metrics = policy_step(self.learner, batch["obs"], batch["act"],
                              weights.astype(np.float32))
        if metrics is None:
            return None, POLICY_STEP_FAULT
        metrics.update(reps_eta=float(x[0]), reps_dual=value, reps_dual_iterations=float(iters),
                       reps_kl=sample_kl(weights), explained_variance=NAN,
                       time_advantage=t1 - t0, time_update=time.perf_counter() - t1,
                       time_value=0.0)
        return metrics, None
