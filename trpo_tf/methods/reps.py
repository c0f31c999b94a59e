"""Relative entropy policy search (Peters, Muelling & Altun, AAAI 2010), the one method of
section 8.1's list the paper did not run itself, in a discounted form.

The formulation. Let mu be the policy's normalised discounted occupancy of transitions,
mu = (1 - gamma) sum_t gamma^t P(s_t, a_t, s_t+1), from initial states s_0 ~ mu_0. A terminal
step leads to an absorbing state z (reward 0, phi(z) = 0) that stays there; z is a state of its
own with indicator feature 1_z, so the features are [phi, 1_z] and V(s) = theta^T phi(s) +
theta_z 1_z(s). Flow conservation of every feature (the discounted "stationarity" constraint)
over all transitions, z's self-loop included, reads

    E_mu[gamma psi(s') - psi(s)] = -(1 - gamma) E_mu0[psi(s_0)],   psi = [phi, 1_z],

the discounted constraint with its initial-state term (Peters et al.'s average-reward form is
gamma = 1 without it). The sampled transitions give p: uniform over the N of them, and on z's
self-loop the mass m_z the same flow gives the sampling policy, (1 - gamma) m_z = gamma (1 - m_z)
P(terminal) (sampling_log_weights; none without terminals). REPS looks for q over the N
transitions and z with KL(q || p) <= epsilon maximising E_q[r]; the Lagrangian with multipliers
theta (the value's weights), eta for the KL and one for sum q = 1 gives q_j ~ p_j exp(delta_j /
eta) and the dual

    g(eta, theta) = eta epsilon + eta log( sum_j p_j exp(delta_j(theta) / eta) ),
    delta_j(theta) = r_j + theta^T dpsi_j,
    dpsi_i = [gamma phi(s'_i) - phi(s_i) + (1 - gamma) phibar_0,  gamma [terminal_i]],
    dpsi_z = [(1 - gamma) phibar_0,  gamma - 1],    r_z = 0,    phibar_0 = E_mu0[phi(s_0)]:

delta_i is the Bellman error r + gamma V(s') - V(s) (V(s') = theta_z after a terminal) plus
(1 - gamma) E_mu0[V(s_0)], which is the same for every sample and leaves the log-sum-exp as
(1 - gamma) theta^T phibar_0, the initial-state term of the dual. Without terminals,
g = eta epsilon + eta log mean_i exp((r_i + theta^T(gamma phi'_i - phi_i)) / eta)
+ (1 - gamma) theta^T phibar_0. The rewards are scaled but not centred: z's reward 0 makes
their level mean something (staying alive is worth its reward). Minimised by SciPy's L-BFGS-B
with its analytic gradient:

    dg/dtheta = sum_j w_j dpsi_j                    (= 0: the constraint above, with q = w)
    dg/deta   = epsilon + log( sum_j p_j exp(delta_j / eta) ) - sum_j w_j delta_j / eta
    w_j       = p_j exp(delta_j / eta) / sum_k p_k exp(delta_k / eta)

The null space. If a combination v of the features is the same constant K in every state but z
(observations on a circle, c^2 + s^2 = 1; two-valued flags; one-hot codes; a constant column),
then v with theta_z = K is V = K everywhere: v^T dpsi = gamma K - K + (1 - gamma) K = 0 on every
row, z's included. g does not change along it, for every task, and is bounded below (the form
that leaves phibar_0 out falls along v by (1 - gamma) K per unit, without bound). A ridge
RIDGE / 2 |theta|^2 added to g makes the minimiser unique (theta has no part along such v) and
keeps near-null directions finite; it moves the constraint by RIDGE theta.

mu_0's feature mean comes from the episodes' first observations (path_start), accumulated
over the run (mu_0 does not depend on the policy) as raw first and second moments, from which
the mean of the quadratic features under any standardisation follows exactly
(InitialStates.feature_mean). The reweighted distribution w has KL(w || p) = epsilon at the
optimum (less if the bound is slack); the policy is then refitted to the transitions' weights
by weighted maximum likelihood (weighted_fit.py). Features: phi(s) = the observation
standardised over the batch and all its pairwise products (quadratic features); a constant
feature would be a null direction and is left out.
"""
import time

import numpy as np

from trpo_tf.methods.base import (NAN, POLICY_STEP_FAULT, SinglePathMethod, normalizer_moves,
                                  policy_step, update_normalizer)
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
RIDGE = 1e-6  # on theta: the dual's minimiser is unique where features are dependent


def quadratic_features(x):
    """[x_1 .. x_d, x_i x_j for i <= j] of each row of x [N, d] -> [N, d + d (d + 1) / 2]."""
    i, j = np.triu_indices(x.shape[1])
    return np.concatenate([x, x[:, i] * x[:, j]], axis=1)


class InitialStates:
    """Raw moments of the episodes' first observations (mu_0's samples), kept over the run."""

    def __init__(self, dim):
        self.count, self.total, self.outer = 0, np.zeros(dim), np.zeros((dim, dim))

    def add(self, obs):
        self.count += len(obs)
        self.total += obs.sum(0)
        self.outer += obs.T @ obs

    def feature_mean(self, mean, std):
        """phibar_0 = E_mu0[quadratic_features((s_0 - mean) / std)], from the moments: with
        z = (s_0 - mean) / std, E[z] = (m1 - mean) / std and
        E[z z^T] = (M2 - m1 mean^T - mean m1^T + mean mean^T) / (std std^T)."""
        m1, m2 = self.total / self.count, self.outer / self.count
        ez = (m1 - mean) / std
        ezz = (m2 - np.outer(m1, mean) - np.outer(mean, m1) + np.outer(mean, mean)) / np.outer(std, std)
        return np.concatenate([ez, ezz[np.triu_indices(len(mean))]])

    def state(self):
        return {"count": self.count, "total": self.total.tolist(), "outer": self.outer.tolist()}

    def load_state(self, saved):
        self.count, self.total, self.outer = (saved["count"], np.array(saved["total"]),
                                              np.array(saved["outer"]))


def feature_differences(obs, end_obs, terminal, path_end, gamma, initial):
    """The constraint's rows: [N + 1, F + 1], one per transition and a last one for the
    absorbing state z (the module's derivation). Columns: the features phi (the quadratic
    features of the observation standardised with the batch's mean and std; 0 at z), then
    z's indicator. A transition's row is gamma phi(s'_i) - phi(s_i) + (1 - gamma) phibar_0
    with gamma [terminal_i] in z's column, s'_i the next row inside a path, the next entry
    of `end_obs` at a path end; after a terminal step s'_i = z (phi = 0). z's row is
    (1 - gamma) phibar_0 and gamma - 1. phibar_0 = E_mu0[phi(s_0)] (`initial`)."""
    mean, std = obs.mean(0), obs.std(0) + 1e-6
    phi = quadratic_features((obs - mean) / std)
    next_phi = np.concatenate([phi[1:], np.zeros_like(phi[:1])])
    ends = np.flatnonzero(path_end > 0)
    next_phi[ends] = quadratic_features((end_obs - mean) / std)
    next_phi[terminal > 0] = 0.0
    start_term = (1.0 - gamma) * initial.feature_mean(mean, std)
    rows = np.concatenate([gamma * next_phi - phi + start_term, gamma * (terminal[:, None] > 0)], 1)
    return np.concatenate([rows, np.append(start_term, gamma - 1.0)[None]])


def sampling_log_weights(terminal, gamma):
    """log p over the N transitions and z: the sampled occupancy puts m_z on z, from
    (1 - gamma) m_z = gamma (1 - m_z) P(terminal), and (1 - m_z) / N on each transition."""
    share = gamma * np.mean(terminal > 0)
    m_z = share / (1.0 - gamma + share) if share else 0.0
    with np.errstate(divide="ignore"):  # no terminal step: z has no mass (log 0 = -inf)
        return np.append(np.full(len(terminal), np.log1p(-m_z) - np.log(len(terminal))),
                         np.log(m_z))


def uniform_log_weights(n):
    return np.full(n, -np.log(n))


def dual(x, rewards, dphi, epsilon, log_p=None):
    """The REPS dual g(eta, theta) + RIDGE / 2 |theta|^2 at x = [eta, theta...] and its
    gradient (float64); log_p: the sampling distribution's log-weights (default uniform)."""
    log_p = uniform_log_weights(len(rewards)) if log_p is None else log_p
    eta, theta = x[0], x[1:]
    z = (rewards + dphi @ theta) / eta
    a = z + log_p
    top = a.max()
    e = np.exp(a - top)
    total = e.sum()
    log_mean_exp = top + np.log(total)  # log E_p[exp(delta / eta)]
    w = e / total
    value = eta * epsilon + eta * log_mean_exp + 0.5 * RIDGE * theta @ theta
    grad = np.concatenate([[epsilon + log_mean_exp - w @ z], w @ dphi + RIDGE * theta])
    return value, grad


def sample_weights(x, rewards, dphi, log_p=None):
    """w_i = p_i exp(delta_i / eta) / sum_j p_j exp(delta_j / eta) at x = [eta, theta...]:
    the reweighted distribution (p uniform by default)."""
    log_p = uniform_log_weights(len(rewards)) if log_p is None else log_p
    a = (rewards + dphi @ x[1:]) / x[0] + log_p
    e = np.exp(a - a.max())
    return e / e.sum()


def sample_kl(w, log_p=None):
    """KL(w || p) of a distribution over N samples (p uniform by default)."""
    log_p = uniform_log_weights(len(w)) if log_p is None else log_p
    nz = w > 0
    return float(np.sum(w[nz] * (np.log(w[nz]) - log_p[nz])))


def eta_within_bound(x, rewards, dphi, epsilon, log_p=None, rounds=60):
    """x with eta raised, by bisection on log eta, until KL(w || p) <= epsilon, if the
    optimiser stopped short of it. With theta fixed, dg/deta = epsilon - KL(w), and the KL falls
    as eta grows, so this step only lowers the dual."""
    kl = lambda eta: sample_kl(sample_weights(np.concatenate([[eta], x[1:]]), rewards, dphi, log_p),
                               log_p)
    low = high = x[0]
    if kl(low) <= epsilon:
        return x
    while kl(high) > epsilon:
        low, high = high, high * 2.0
    for _ in range(rounds):
        mid = np.sqrt(low * high)
        low, high = (low, mid) if kl(mid) <= epsilon else (mid, high)
    return np.concatenate([[high], x[1:]])


def solve_dual(rewards, dphi, epsilon, max_iters, log_p=None):
    """argmin of the dual over eta >= MIN_ETA and theta by L-BFGS-B, from eta = 1, theta = 0,
    then eta raised if need be so the weights keep the bound -> (x, g(x), iterations)."""
    from scipy.optimize import minimize

    rewards, dphi = np.asarray(rewards, np.float64), np.asarray(dphi, np.float64)
    x0 = np.concatenate([[1.0], np.zeros(dphi.shape[1])])
    bounds = [(MIN_ETA, None)] + [(None, None)] * dphi.shape[1]
    result = minimize(dual, x0, args=(rewards, dphi, epsilon, log_p), jac=True,
                      method="L-BFGS-B", bounds=bounds, options={"maxiter": max_iters})
    x = eta_within_bound(result.x, rewards, dphi, epsilon, log_p)
    return x, float(dual(x, rewards, dphi, epsilon, log_p)[0]), int(result.nit)


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
        self.initial_states = InitialStates(shape[0])
        self.learner = WeightedMaxLikelihood(
            parts.policy, parts.dist, [parts.obs_spec, sig["act"], sig["rew"]], cfg.reps_epochs,
            cfg.reps_lr, "reps", normalizer_moves(parts.policy))

    def progress(self, m):
        return f"kl {m.get('kl', NAN):.4f} eta {m.get('reps_eta', NAN):.3g}"

    def improve(self, batch, rew):
        """Solve the dual on the batch's transitions, then refit the policy to the weights."""
        t0 = time.perf_counter()
        # scaled to unit root mean square, not centred (z's reward 0 anchors them): the
        # weights are the same (eta and theta scale with the rewards), and the dual starts
        # from eta = 1 on the scale its solution has
        rewards = np.asarray(rew, np.float64)
        rewards = np.append(rewards / (np.sqrt(np.mean(rewards ** 2)) + 1e-8), 0.0)  # z: 0
        obs = batch["obs"].numpy().astype(np.float64)
        self.initial_states.add(obs[batch["path_start"].numpy() > 0])
        initial = self.initial_states
        if not initial.count:  # a resumed run whose first batch starts no episode: mu_0 ~ p
            initial = InitialStates(obs.shape[1])
            initial.add(obs)
        terminal = batch["terminal"].numpy()
        dphi = feature_differences(obs, batch["end_obs"].numpy().astype(np.float64), terminal,
                                   batch["path_end"].numpy(), self.cfg.gamma, initial)
        log_p = sampling_log_weights(terminal, self.cfg.gamma)
        x, value, iters = solve_dual(rewards, dphi, self.cfg.reps_epsilon,
                                     self.cfg.reps_dual_iters, log_p)
        weights = sample_weights(x, rewards, dphi, log_p)
        reweighted_kl = sample_kl(weights, log_p)
        weights = weights[:-1] / weights[:-1].sum()  # the transitions' (z has no action)
        if not np.all(np.isfinite(weights)):
            return None, "REPS dual solution"
        t1 = time.perf_counter()
        behaviour = update_normalizer(self.parts.policy, batch["obs"])
        metrics = policy_step(self.learner, batch["obs"], batch["act"],
                              weights.astype(np.float32), *behaviour)
        if metrics is None:
            return None, POLICY_STEP_FAULT
        metrics.update(reps_eta=float(x[0]), reps_dual=value, reps_dual_iterations=float(iters),
                       reps_kl=reweighted_kl, explained_variance=NAN,
                       time_advantage=t1 - t0, time_update=time.perf_counter() - t1,
                       time_value=0.0)
        return metrics, None

    def state(self):
        return {**super().state(), "initial_states": self.initial_states.state()}

    def load_state(self, saved):
        super().load_state(saved)
        if saved.get("initial_states"):  # older checkpoints have none
            self.initial_states.load_state(saved["initial_states"])
