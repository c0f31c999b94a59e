"""Relative entropy policy search (Peters, Muelling & Altun, AAAI 2010), the one method of
section 8.1's list the paper did not run itself, in a discounted form.

The formulation. Let mu(s, a) be the policy's normalised discounted state-action occupancy,
mu = (1 - gamma) sum_t gamma^t P(s_t, a_t), from initial states s_0 ~ mu_0; a terminal step
leads to an absorbing state z with phi(z) = 0, reward 0 and occupancy m_z. Flow conservation
of every feature phi (the "stationarity" constraint, discounted) reads

    E_mu[phi(s)] = (1 - gamma) E_mu0[phi(s_0)] + gamma E_mu[phi(s')]        (phi(s') = 0 at z)
    m_z = gamma m_z + gamma P_mu(terminal)  =>  (1 - gamma) m_z = gamma P_mu(terminal).

REPS looks for the distribution q over the N sampled (non-absorbing) transitions with
KL(q || p) <= epsilon, p uniform over the samples, that maximises E_q[r], the reward per
non-absorbing transition. (The discounted return itself is (1 - m_z) E_q[r], a ratio in q. Kept
as a state of its own, z with V(z) a multiplier and the sampled occupancy's mass on it, it
spent the KL budget on moving mass off z rather than between actions: cart-pole's return at
iteration 30 was 74 against 265 here, seed 0.) The occupancy of the non-absorbing states is
(1 - m_z) q; eliminating m_z from the two lines above, the constraint on q is linear:

    E_q[ gamma phi(s') - phi(s) + (1 - gamma + gamma [terminal]) phibar_0 ] = 0,
    phibar_0 = E_mu0[phi(s_0)].

The reward of the step entering z. E_q[r] and the constraint above do not change when every
reward moves by the same constant (every delta below moves with it), so the reward z earns,
zero, never enters them: on a task that pays the same reward at every step until it ends
(CartPole-v1: 1 per step alive) the dual has no signal at all, its weights follow rounding
noise, and the fit drove the policy deterministic (entropy 0.69 -> 0.07 in 6 iterations,
evaluation return 9.7). The return does see it: with q_T = E_q[terminal], the two lines
above give 1 - m_z = (1 - gamma) / (1 - gamma + gamma q_T), so
J(q) = (1 - gamma) E_q[r] / (1 - gamma + gamma q_T), whose gradient in q at the sampled
distribution p (E_p[r] = rbar, q_T = p_T, the batch's share of terminal steps) is, up to a
positive factor, that of E_q[r'] with

    r'_i = r_i - [terminal_i] rbar gamma / (1 - gamma + gamma p_T)        (`dual_rewards`):

a step that ends forgoes rbar at every later step, discounted by gamma and by the chance the
episode would have ended anyway. The dual keeps its form (linear in q) with r' for r. Where
ending is good (a negative rbar: a cost per step until a goal) the charge is a bonus; without
terminal steps r' = r. CartPole-v1, 20 iterations: evaluation 341, 500, 410 on seeds 0, 1, 2
(500, 372, 500 when E_mu0 came from moments of every episode start).

Without terminal steps the constraint is E_q[gamma phi' - phi] = -(1 - gamma) E_mu0[phi] (the
discounted constraint with its initial-state term); with gamma = 1 it is Peters et al.'s
average-reward form. The Lagrangian with multipliers theta (V(s) = theta^T phi(s)), eta for
the KL and one for sum q = 1 gives q_i ~ p_i exp(delta_i / eta), and the dual

    g(eta, theta) = eta epsilon + eta log( 1/N sum_i exp(delta_i(theta) / eta) )
    delta_i(theta) = r_i + theta^T dphi_i,
    dphi_i = gamma phi(s'_i) - phi(s_i) + (1 - gamma + gamma [terminal_i]) phibar_0,

that is the Bellman error r + gamma V(s') - V(s) (V(s') = 0 after a terminal) plus
(1 - gamma + gamma [terminal]) E_mu0[V(s_0)]. Without terminals the last term is the same for
every sample and leaves log-mean-exp as (1 - gamma) theta^T phibar_0, the initial-state term
of the dual. Minimised by SciPy's L-BFGS-B with its analytic gradient:

    dg/dtheta = sum_i w_i dphi_i                    (= 0: the constraint above, with q = w)
    dg/deta   = epsilon + log( 1/N sum_i exp(delta_i / eta) ) - sum_i w_i delta_i / eta
    w_i       = exp(delta_i / eta) / sum_j exp(delta_j / eta)

The null space. If a combination v of the features is the same constant K in every state
(observations on a circle, c^2 + s^2 = 1; two-valued flags; one-hot codes; a constant column;
a constant feature itself), then v^T dphi_i = gamma K - K + (1 - gamma) K = 0 for a
non-terminal step and -K + K = 0 after a terminal: g does not change along v, for every task,
and is bounded below (the form that leaves phibar_0 out falls along v by (1 - gamma) K per
unit, without bound). A ridge RIDGE / 2 |theta|^2 added to g makes the minimiser unique (theta
has no part along such v) and keeps near-null directions finite; it moves the constraint by
RIDGE theta.

mu_0's feature mean comes from the episodes' first observations (path_start), the latest
INITIAL_STATES of the run (mu_0 does not depend on the policy), standardised as the batch is
(InitialStates.feature_mean). The reweighted sample distribution w has KL(w || uniform) =
epsilon at the optimum (less if the bound is slack); the policy is then refitted to it by
weighted maximum likelihood (weighted_fit.py).

The features (--reps_features). quadratic: phi(s) = z and its pairwise products z_i z_j, z the
observation standardised over the batch. fourier: phi(s) = [z, sqrt(2) cos(z W + b)], W and b
drawn once per run (FourierFeatures: random Fourier features of a Gaussian kernel,
--reps_fourier_count of them, length scale --reps_bandwidth x sqrt(d) batch standard
deviations). A constant feature would be a null direction and is left out of both. With the
quadratic features V cannot tell "upright and slow" from "spinning" on Pendulum-v1 (the value
of a swing-up is quartic in the angular velocity): the weights favoured pumping energy at
every state and the return (`python -m trpo_tf.launch --env=Pendulum-v1 --algo=reps`, seed 0,
EnvPool: the mean of the last 100 episodes) fell from -1,243 to -1,521 in 40 iterations; with
--reps_features=fourier it rose to -398 by the 20th (evaluation -304). On CartPole-v1 the
Fourier features' value function absorbs the terminal charge (eta falls to ~1e-5) and
learning is slower (evaluation 175 against 341 at the 20th iteration, seed 0), so quadratic
stays the default. The dual over 300 features takes ~1 s per 2K batch (L-BFGS-B), against
~0.01 s over the quadratic ones.
"""
import time

import numpy as np

from trpo_tf.methods.base import (NAN, POLICY_STEP_FAULT, POLICY_STEP_TAGS, REWARD_SCALE_TAGS,
                                  SinglePathMethod, behaviour_specs, policy_step, timed,
                                  update_normalizer)
from trpo_tf.settings import at_least, declare, positive

GROUP = "4 method reps"
declare(GROUP, "reps_epsilon", 0.5,
        "reps: KL bound epsilon between the reweighted and the sampled state-action distribution.",
        check=positive, rule="> 0")
declare(GROUP, "reps_dual_iters", 100, "reps: L-BFGS-B iterations on the dual.",
        check=at_least(1), rule=">= 1")
declare(GROUP, "reps_epochs", 50,
        "reps: full-batch Adam steps of the weighted maximum-likelihood policy fit.",
        check=at_least(1), rule=">= 1")
declare(GROUP, "reps_lr", 0.01, "reps: Adam learning rate of the policy fit.", check=positive,
        rule="> 0")
declare(GROUP, "reps_features", "quadratic",
        "reps: the features the dual's value function is linear in: the standardised "
        "observation and its pairwise products (quadratic), or the observation and random "
        "Fourier features of it (fourier; Pendulum-v1 learns with these, not with quadratic).",
        choices=("quadratic", "fourier"))
MAX_FOURIER_COUNT = 4096  # the dual holds [batch, count] float64 arrays
declare(GROUP, "reps_fourier_count", 300,
        "reps: how many random Fourier features --reps_features=fourier draws (the dual's cost "
        "grows with them: ~1 s per 2K batch at 300).",
        check=lambda n: 1 <= n <= MAX_FOURIER_COUNT, rule=f"between 1 and {MAX_FOURIER_COUNT}")
declare(GROUP, "reps_bandwidth", 0.3,
        "reps: the Fourier features' length scale, in batch standard deviations per square root "
        "of the observation's size.", check=positive, rule="> 0")
MAX_QUADRATIC_SIZE = 64  # quadratic features: 64 inputs give 2,144 of them
MIN_ETA = 1e-6
RIDGE = 1e-6  # on theta: the dual's minimiser is unique where features are dependent
INITIAL_STATES = 500  # episodes' first observations kept for E_mu0[phi] (the latest ones)


def quadratic_features(z):
    """[z_1 .. z_d, z_i z_j for i <= j] of each row of z [N, d] -> [N, d + d (d + 1) / 2]."""
    i, j = np.triu_indices(z.shape[1])
    return np.concatenate([z, z[:, i] * z[:, j]], axis=1)


class FourierFeatures:
    """phi(z) = [z, sqrt(2) cos(z W + b)] of each row of z [N, d], the standardised observation:
    W [d, count] ~ N(0, 1 / (bandwidth^2 d)), b ~ U[0, 2 pi) drawn once per run (random Fourier
    features of a Gaussian kernel of length scale bandwidth sqrt(d), Rahimi & Recht 2007)."""

    def __init__(self, dim, count, bandwidth, seed):
        rng = np.random.default_rng(seed)
        self.w = rng.normal(0.0, 1.0 / (bandwidth * np.sqrt(dim)), (dim, count))
        self.b = rng.uniform(0.0, 2.0 * np.pi, count)

    def __call__(self, z):
        return np.concatenate([z, np.sqrt(2.0) * np.cos(z @ self.w + self.b)], axis=1)


class InitialStates:
    """The latest `capacity` episodes' first observations (mu_0's samples; mu_0 does not depend
    on the policy, so they are samples of it however old)."""

    def __init__(self, capacity=INITIAL_STATES):
        self.capacity, self.obs = capacity, None

    @property
    def count(self):
        return 0 if self.obs is None else len(self.obs)

    def add(self, obs):
        obs = np.asarray(obs, np.float64)
        kept = obs if self.obs is None else np.concatenate([self.obs, obs])
        self.obs = kept[-self.capacity:]

    def feature_mean(self, mean, std, features):
        """phibar_0 = E_mu0[phi((s_0 - mean) / std)] over the kept first observations."""
        return features((self.obs - mean) / std).mean(0)

    def state(self):
        return {"observations": [] if self.obs is None else self.obs.tolist()}

    def load_state(self, saved):
        """Checkpoints from before the Fourier features hold moments, no observations: those
        start empty (the next batches' first observations refill them)."""
        kept = saved.get("observations")
        self.obs = np.array(kept, np.float64) if kept else None


def feature_differences(obs, end_obs, terminal, path_end, gamma, initial, features):
    """dphi_i = gamma phi(s'_i) - phi(s_i) + (1 - gamma + gamma [terminal_i]) phibar_0 per
    transition (the module's constraint), phi = `features` of the observation standardised with
    the batch's mean and std, phibar_0 their mean under mu_0 (`initial`, an InitialStates);
    s'_i is the next row inside a path, the next entry of `end_obs` at a path end, and has
    phi = 0 after a terminal step."""
    mean, std = obs.mean(0), obs.std(0) + 1e-6
    phi = features((obs - mean) / std)
    next_phi = np.concatenate([phi[1:], np.zeros_like(phi[:1])])
    ends = np.flatnonzero(path_end > 0)
    next_phi[ends] = features((end_obs - mean) / std)
    next_phi[terminal > 0] = 0.0
    start_weight = 1.0 - gamma + gamma * (terminal > 0)
    phibar_0 = initial.feature_mean(mean, std, features)
    return gamma * next_phi - phi + start_weight[:, None] * phibar_0


def dual_rewards(rew, terminal, gamma):
    """The rewards the dual weighs: r'_i = r_i - [terminal_i] rbar gamma / (1 - gamma + gamma
    p_T), the step entering the absorbing state charged with what it forgoes (rbar, p_T: the
    batch's mean reward and share of terminal steps; the module's docstring), then
    standardised over the batch (the weights do not change with a shift or a scale of every
    reward, and the dual starts from eta = 1 on the scale its solution has)."""
    rewards = np.asarray(rew, np.float64)
    ends = np.asarray(terminal) > 0
    if ends.any():
        rewards = rewards - ends * rewards.mean() * gamma / (1.0 - gamma + gamma * ends.mean())
    return (rewards - rewards.mean()) / (rewards.std() + 1e-8)


def dual(x, rewards, dphi, epsilon):
    """The REPS dual g(eta, theta) + RIDGE / 2 |theta|^2 at x = [eta, theta...] and its
    gradient (float64)."""
    eta, theta = x[0], x[1:]
    z = (rewards + dphi @ theta) / eta
    top = z.max()
    e = np.exp(z - top)
    total = e.sum()
    log_mean_exp = top + np.log(total) - np.log(len(z))
    w = e / total
    value = eta * epsilon + eta * log_mean_exp + 0.5 * RIDGE * theta @ theta
    grad = np.concatenate([[epsilon + log_mean_exp - w @ z], w @ dphi + RIDGE * theta])
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
    setting_groups = (GROUP,)
    stages, _stage_tags = timed(("dual", "time_dual"), ("update", "time_update"))
    tags = {**POLICY_STEP_TAGS, **REWARD_SCALE_TAGS, **_stage_tags, "reps_eta": "REPS/Eta", "reps_dual": "REPS/Dual", "reps_kl": "REPS/SampleKL",
            "reps_dual_iterations": "REPS/DualIterations",
            "reps_effective_samples": "REPS/EffectiveSamples"}

    @classmethod
    def check_env(cls, spec):
        from trpo_tf.errors import EnvError

        if spec.atari is not None:
            raise EnvError(f"--algo=reps fits features of vector observations; "
                           f"{spec.gym_id}'s frames are not: train it with --algo=trpo")

    def __init__(self, cfg, parts):
        super().__init__(cfg, parts)
        from trpo_tf.errors import ConfigError
        from trpo_tf.methods.weighted_fit import WeightedMaxLikelihood

        shape = parts.envs.observation_space.shape
        if len(shape) != 1:
            raise ConfigError(f"--algo=reps fits features of vector observations; "
                              f"{parts.spec.gym_id}'s are {shape}")
        if cfg.reps_features == "quadratic" and shape[0] > MAX_QUADRATIC_SIZE:
            raise ConfigError(f"--reps_features=quadratic takes vector observations of at most "
                              f"{MAX_QUADRATIC_SIZE} numbers; {parts.spec.gym_id}'s are {shape}: "
                              "use --reps_features=fourier")
        sig = self.signature
        self.features = (quadratic_features if cfg.reps_features == "quadratic" else
                         FourierFeatures(shape[0], cfg.reps_fourier_count, cfg.reps_bandwidth,
                                         parts.seeds["method"]))
        self.initial_states = InitialStates()
        self.learner = WeightedMaxLikelihood(
            parts.policy, parts.dist,
            [parts.obs_spec, sig["act"], sig["rew"], *behaviour_specs(parts)], cfg.reps_epochs,
            cfg.reps_lr, "reps")

    def progress(self, m):
        return f"kl {m.get('kl', NAN):.4f} eta {m.get('reps_eta', NAN):.3g}"

    def improve(self, batch, rew):
        """Solve the dual on the batch's transitions, then refit the policy to the weights."""
        t0 = time.perf_counter()
        rewards = dual_rewards(rew, batch["terminal"].numpy(), self.cfg.gamma)
        obs = batch["obs"].numpy().astype(np.float64)
        self.initial_states.add(obs[batch["path_start"].numpy() > 0])
        initial = self.initial_states
        if not initial.count:  # a resumed run whose first batch starts no episode: mu_0 ~ p
            initial = InitialStates(len(obs))
            initial.add(obs)
        dphi = feature_differences(obs, batch["end_obs"].numpy().astype(np.float64),
                                   batch["terminal"].numpy(), batch["path_end"].numpy(),
                                   self.cfg.gamma, initial, self.features)
        x, value, iters = solve_dual(rewards, dphi, self.cfg.reps_epsilon, self.cfg.reps_dual_iters)
        weights = sample_weights(x, rewards, dphi)
        if not np.all(np.isfinite(weights)):
            return None, "REPS dual solution"
        t1 = time.perf_counter()
        behaviour = update_normalizer(self.parts.policy, batch["obs"])
        metrics = policy_step(self.learner, batch["obs"], batch["act"],
                              weights.astype(np.float32), *behaviour)
        if metrics is None:
            return None, POLICY_STEP_FAULT
        metrics.update(reps_eta=float(x[0]), reps_dual=value, reps_dual_iterations=float(iters),
                       reps_kl=sample_kl(weights), time_dual=t1 - t0,
                       time_update=time.perf_counter() - t1)
        return metrics, None

    def state(self):
        return {**super().state(), "initial_states": self.initial_states.state()}

    def load_state(self, saved):
        super().load_state(saved)
        if saved.get("initial_states"):  # older checkpoints have none
            self.initial_states.load_state(saved["initial_states"])
