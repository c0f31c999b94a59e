"""TRPO with the vine estimator (section 5.2): trunks, a rollout set of N states, K actions
each from restored simulator states with common random numbers (sampling/vine.py); the step
maximises eq. 16 / 17 on the rollout set under the mean KL over the trunk states."""
import dataclasses
import time

from trpo_tf.methods.base import (POLICY_STEP_FAULT, POLICY_STEP_TAGS, TRUST_REGION_TAGS, Method,
                                  policy_step, timed, update_normalizer)
from trpo_tf.methods.trpo import GROUP as TRPO_GROUP
from trpo_tf.methods.trpo import anneal_trust_region, trpo_learner
from trpo_tf.settings import at_least, declare

GROUP = "4 method trpo, --sampler=vine"
declare(GROUP, "vine_trunk_paths", 16, "Vine: trunk trajectories per iteration.",
        check=at_least(1), rule=">= 1")
declare(GROUP, "vine_trunk_length", 1000, "Vine: steps per trunk trajectory (at most).",
        check=at_least(1), rule=">= 1")
declare(GROUP, "vine_states", 125,
        "Vine: states in the rollout set (N), drawn along the trunks (Table 2: 500 Q-values = N x K).",
        check=at_least(1), rule=">= 1")
declare(GROUP, "vine_actions_per_state", 4, "Vine: actions (branches) per state (K).",
        check=at_least(1), rule=">= 1")
declare(GROUP, "vine_rollout_length", 50,
        "Vine: steps per branch rollout (Table 2: 50 Swimmer, 100 Hopper and Walker).",
        check=at_least(1), rule=">= 1")
declare(GROUP, "vine_proposal", "policy",
        "Vine: q, the branch actions' distribution; all = every action (small discrete spaces, "
        "eq. 16).", choices=("policy", "uniform", "all"))
declare(GROUP, "vine_crn", True, "Vine: common random numbers across a state's branches.")
declare(GROUP, "vine_kl_states", 0,
        "Vine: the mean KL of eq. 13 and the Fisher-vector products average over the trunk "
        "states (the old policy's visitation), this many drawn uniformly; 0 = all of them.",
        check=at_least(0), rule=">= 0, 0 meaning every trunk state")


class Vine(Method):
    algo = "trpo"
    setting_groups = (TRPO_GROUP, GROUP)
    sampler_name = "vine"
    backend = "gymnasium"  # branches restore simulator states
    stages, _stage_tags = timed(("update", "time_update"))
    tags = {**POLICY_STEP_TAGS, **TRUST_REGION_TAGS, **_stage_tags,
            "vine_states": "Vine/StatesInRolloutSet", "vine_branches": "Vine/Branches",
            "vine_q_spread": "Vine/MeanQSpreadPerState",
            "vine_sim_steps": "Vine/SimulatorStepsPerIteration", "vine_kl_states": "Vine/KLStates"}

    @classmethod
    def validate(cls, cfg):
        if cfg.env_backend == "envpool":
            return ("--sampler=vine restores simulator states, which EnvPool cannot: use "
                    "--env_backend=gymnasium or auto")
        if cfg.workers > min(cfg.vine_trunk_paths, cfg.vine_states):
            return (f"--workers={cfg.workers} share --vine_trunk_paths={cfg.vine_trunk_paths} "
                    f"and --vine_states={cfg.vine_states}: each needs at least one of both")
        if cfg.vine_actions_per_state == 1 and cfg.vine_proposal != "all":  # eq. 17: w q / w = q
            return (f"--vine_actions_per_state=1 with --vine_proposal={cfg.vine_proposal} gives "
                    "every policy the same surrogate (no gradient): use 2 or more")
        if 0 < cfg.vine_kl_states < cfg.workers:  # a worker's 0 would mean all its states
            return (f"--workers={cfg.workers} share --vine_kl_states={cfg.vine_kl_states}: "
                    "each needs at least one (or 0: every trunk state)")
        return None

    @classmethod
    def check_env(cls, spec):
        from trpo_tf import envs

        envs.check_restorable(spec)

    @classmethod
    def batch_states(cls, cfg):
        """The trunk states it keeps (or the KL states drawn from them)."""
        states = cfg.vine_trunk_paths * cfg.vine_trunk_length
        if 0 < cfg.vine_kl_states < states:
            return "--vine_kl_states", cfg.vine_kl_states
        return "--vine_trunk_paths x --vine_trunk_length", states

    def __init__(self, cfg, parts):
        super().__init__(cfg, parts)
        from trpo_tf.methods.update import vine_gain
        from trpo_tf.pipeline import vine_signature
        from trpo_tf.sampling import batch_obs_dtype

        space = parts.envs.observation_space
        self.signature = sig = vine_signature(space.shape, batch_obs_dtype(space), parts.dist)
        self.sampler = self.make_sampler(cfg, parts.envs, parts.dist, parts.seeds, parts.policy)
        # the gain on the rollout set, the KL on the trunk states
        self.learner = trpo_learner(
            cfg, parts, vine_gain(parts.dist, cfg.vine_proposal),
            [parts.obs_spec, sig["act"], sig["q_hat"], sig["kl_obs"]], kl_states=True)

    @classmethod
    def make_sampler(cls, cfg, envs, dist, seeds, policy):
        from trpo_tf.sampling.vine import VineSampler

        return VineSampler(envs, dist, cfg.vine_trunk_paths, cfg.vine_trunk_length,
                           cfg.vine_states, cfg.vine_actions_per_state, cfg.vine_rollout_length,
                           cfg.gamma, cfg.vine_proposal, cfg.vine_crn, seeds["vine"],
                           cfg.vine_kl_states)

    @classmethod
    def share(cls, cfg, worker, workers):
        """Its trunks, rollout-set states and KL states, split as evenly as they go (each
        worker restores its own snapshots: no simulator state crosses the network)."""
        def part(n):
            return n // workers + (worker < n % workers)

        return dataclasses.replace(
            cfg, vine_trunk_paths=part(cfg.vine_trunk_paths), vine_states=part(cfg.vine_states),
            vine_kl_states=part(cfg.vine_kl_states) if cfg.vine_kl_states else 0)

    def sampling_line(self, cfg):
        return (f"vine: {cfg.vine_trunk_paths} trunks x {cfg.vine_trunk_length} steps, "
                f"{cfg.vine_states} states x {self.sampler.k} branches x "
                f"{cfg.vine_rollout_length} steps")

    def no_signal(self, m):
        """Also a rollout set whose branches all returned alike: its gradient is rounding
        alone."""
        return "every branch's Q alike" if m.get("vine_q_spread") == 0.0 else super().no_signal(m)

    def anneal(self, spent):
        anneal_trust_region(self.learner, self.cfg, spent)

    def update(self, batch):
        """Normaliser update (trunk states), then the TRPO step on the rollout set (eq. 16 /
        17) under the mean KL over the trunk states from the sampling policy. Vine needs no
        value function."""
        from trpo_tf.methods.update import all_finite

        if not all_finite(batch["obs"], batch["q_hat"], batch["kl_obs"]):
            return None, "observations or Q-values"
        t0 = time.perf_counter()
        # the normaliser takes in the trunk states first: the step is bounded from the
        # sampling policy, so its change is inside the trust region
        behaviour = update_normalizer(self.parts.policy, batch["kl_obs"], batch["obs"])
        metrics = policy_step(self.learner, batch["obs"], batch["act"], batch["q_hat"],
                              batch["kl_obs"], *behaviour[::-1])
        if metrics is None:
            return None, POLICY_STEP_FAULT
        q_shape = batch["q_hat"].shape
        metrics.update(time_update=time.perf_counter() - t0, vine_states=float(q_shape[0]), vine_branches=float(q_shape[0] * q_shape[1]),
                       vine_kl_states=float(batch["kl_obs"].shape[0]),
                       vine_q_spread=float(batch["q_spread"]),
                       vine_sim_steps=float(batch["sim_steps"]))
        return metrics, None
