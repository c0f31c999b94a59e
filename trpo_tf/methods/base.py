"""What the training loop asks of every method (`Method`), and the single-path iteration the
policy-gradient methods share (`SinglePathMethod`, `AdvantageMethod`).

A method states what it samples with (`make_sampler`, `signature`, `backend`, `share` and
`sample_on` for Ray workers), what it does with one batch (`update` -> metrics, or the
non-finite quantity that made it skip), what it keeps across a resume and a skipped iteration
(`state` / `load_state`, and the TensorFlow objects it owns: `trackables`), the memory a
batch needs (`batch_states`), and its parts of the header, the progress line and TensorBoard
(`sampling_line`, `progress`, `tags`). The loop in run/train.py asks it these and never which
method it is.

Modules here load no TensorFlow when imported (their settings are read before it starts);
what needs it is imported where the method is built.
"""
import dataclasses
import math
import time

NAN = float("nan")
POLICY_STEP_FAULT = "gradient, Fisher-vector products or CG solution"

# TensorBoard tags of the metrics methods report, by the part that reports them; a method's
# `tags` names every metric it reports and no other (the loop's own are summaries.TAGS)
POLICY_STEP_TAGS = {  # a step of the policy from pi_old on a batch (update.py, PPO, RWR, REPS)
    "surrogate_before": "Policy/SurrogateBefore", "surrogate_after": "Policy/SurrogateAfter",
    "kl": "Policy/MeanKL", "kl_max": "Policy/MaxKL", "entropy": "Policy/Entropy"}
TRUST_REGION_TAGS = {  # CG and the line search (update.py)
    "linesearch_steps": "Policy/LineSearchSteps", "step_accepted": "Policy/StepAccepted",
    "cg_residual": "Policy/CGResidual", "grad_norm": "Policy/GradNorm",
    "step_norm": "Policy/StepNorm"}
VALUE_FIT_TAGS = {
    "value_loss_before": "Value/LossBefore", "value_loss_after": "Value/LossAfter",
    "explained_variance": "Value/ExplainedVariance"}
REWARD_SCALE_TAGS = {"reward_scale": "Value/RewardScale"}  # with --normalize_rewards
STAGE_TAGS = {"time_advantage": "Time/Advantage", "time_update": "Time/Update",
              "time_value": "Time/ValueFit", "time_dual": "Time/Dual"}


def timed(*stages):
    """A method's timed stages after sampling, [(progress-line label, metric)], and their tags."""
    return stages, {key: STAGE_TAGS[key] for _, key in stages}


@dataclasses.dataclass
class RunParts:
    """What a run builds before its method: the env group and spec, the action distribution,
    the policy, the run's seed streams and the spec of a batch of observations. Anything else
    (a value baseline, optimisers) the method builds and owns (`trackables`)."""
    spec: object
    envs: object
    dist: object
    policy: object
    seeds: dict
    obs_spec: object


class Method:
    algo = ""                  # its --algo value
    sampler_name = "single_path"  # the --sampler it runs on
    backend = None             # "gymnasium": it needs per-env episodes or restores; None: --env_backend
    tags = {}                  # {metric: TensorBoard tag} of every metric `update` reports
    stages = ()                # [(label, metric)]: its timed stages, on the progress line
    takes_action_masks = False  # it trains the policy under the env's action masks
    tuned_presets = False       # launch/tuned/<env>.cfg were tuned for it: --env applies them
    setting_groups = ()         # the method groups of settings (settings.py) it reads
    unread_settings = ()        # settings of those groups it ignores
    takes_recurrent_policy = False  # it trains a --policy_rnn policy on the batch's sequences
    # {Config field: optuna trial -> value}: the settings of its own that trpo_tf.tune searches
    # beside the batch, discount and value fit; empty: tune has no space for it
    search_space = {}

    @classmethod
    def validate(cls, cfg):
        """Checks of settings against each other: the message of the first problem, or None."""
        del cfg
        return None

    @classmethod
    def check_env(cls, spec):
        """An EnvError if the method cannot run on `spec` (checked before TensorFlow loads)."""
        del spec

    @classmethod
    def check_action_masks(cls, cfg, spec, source):
        """An EnvError if the env gives action masks (`source`: envs.mask_source's) that
        --action_masks=auto asks to use and the method cannot (checks.check_run, before
        TensorFlow loads)."""
        from trpo_tf.errors import EnvError
        from trpo_tf.methods import algos_that

        if source and cfg.action_masks == "auto" and not cls.takes_action_masks:
            takers = algos_that("takes_action_masks")
            where = "info['action_mask']" if source == "info" else "an action_masks() method"
            raise EnvError(f"--algo={cfg.algo} --sampler={cfg.sampler} cannot use action masks, "
                           f"and {spec.gym_id} gives them ({where}): use --algo={takers} "
                           "(single path), or --action_masks=off to train without them")

    @classmethod
    def recorded_settings(cls, cfg):
        """{setting: value} that shape what the method checkpoints, beyond the run's policy
        and envs: kept in the run record, so a resume with other values is refused."""
        del cfg
        return {}

    @classmethod
    def value_state_size(cls, cfg):
        """The size of a recurrent value baseline's state the sampler carries per env (0: it
        carries none)."""
        del cfg
        return 0

    @classmethod
    def batch_states(cls, cfg):
        """(the flag that sizes it, observations a batch holds): for the memory check."""
        return "--batch_steps", cfg.steps_per_env * cfg.num_envs

    @classmethod
    def make_envs(cls, cfg, spec, seeds):
        """(backend, env group) it samples with: its own backend if it needs one, else
        --env_backend's pick; --num_envs envs first reset from seeds["env_resets"] (the run's
        streams, or a Ray worker's)."""
        from trpo_tf import envs, seeding

        backend = cls.backend or envs.pick_backend(spec, cfg.env_backend)
        return backend, envs.make_env_group(spec, backend, cfg.num_envs,
                                            seeding.int_seed(seeds["env_resets"], bits=30),
                                            cfg.max_path_length or None, cfg.env_threads,
                                            action_masks=cfg.action_masks == "auto")

    @classmethod
    def make_sampler(cls, cfg, envs, dist, seeds, policy):
        """Its sampler on `envs`: .sample(params_fn, **share) -> a NumPy batch, .state(),
        .load_state(), .batches_produced, .progress. Built in the run's process and, with
        --workers, in each Ray worker for its share (then `cfg` is share(cfg, ...), `seeds` the
        worker's and `policy` the worker's copy)."""
        raise NotImplementedError

    @classmethod
    def share(cls, cfg, worker, workers):
        """The settings of worker `worker`'s share of one iteration when `workers` sample it:
        here its part of --batch_steps, rounded up (an iteration never has fewer steps)."""
        del worker
        return dataclasses.replace(cfg, batch_steps=math.ceil(cfg.batch_steps / workers))

    def __init__(self, cfg, parts):
        self.cfg, self.parts = cfg, parts
        self.sampler = None    # .sample(params_fn) -> NumPy batch; .state() / .load_state()
        self.signature = None  # the batch's TensorSpecs

    def update(self, batch):
        """One iteration's update -> (metrics, None), or (None, what was non-finite): then the
        loop restores the variables and `state()` as they were."""
        raise NotImplementedError

    def anneal(self, spent):
        """Set the scheduled settings (--max_kl_end, --vf_lr_end) for the next update, `spent`
        the fraction of the budget (--steps or --iterations) the run has used before it."""
        del spent

    def carried_value_net(self):
        """The recurrent value baseline whose state the sampler carries (stepped with its
        NumPy cell, sampling.value_step_kwargs), or None."""
        return None

    def sample_on(self, workers):
        """The sampler the loop draws batches from when Ray `workers` (a RaySampler) sample:
        here the workers themselves, each on its share."""
        return workers

    def sampling_line(self, cfg):
        """What one sampler draws per iteration under `cfg` (the run's, or a worker's share)."""
        return f"{cfg.steps_per_env} steps per iteration"

    def progress(self, m):
        """The update's part of the progress line: the step's mean KL, and, for a method with
        a line search, the steps it tried and whether it rejected them all (or that a zero
        gradient left it nothing to search)."""
        line = f"kl {m.get('kl', NAN):.4f}"
        if "linesearch_steps" not in self.tags:
            return line
        why = self.no_signal(m)
        if why:
            return line + f" ls - ({why})"
        line += f" ls {int(m.get('linesearch_steps', 0))}"
        return line + (" rejected" if m.get("step_accepted", 1.0) == 0.0 else "")

    def no_signal(self, m):
        """Why the batch gave the step no direction to search, or "": a zero gradient (every
        advantage 0)."""
        return "zero gradient" if m.get("grad_norm") == 0.0 else ""

    def state(self):
        """JSON-able state beside the variables: checkpointed, and restored after a skip."""
        return {}

    def trackables(self):
        """{name: model, optimizer or tf.random.Generator} the method owns beside the run's
        policy (the value baseline and its fit's Adam and RNG; PPO's Adam and minibatch RNG):
        checkpointed under these names and rolled back with the policy when an iteration is
        skipped."""
        return {}

    def load_state(self, saved):
        del saved


def linear_schedule(start, end, spent):
    """`start` moved linearly to `end` over the budget, at `spent` of it; end 0: no schedule."""
    return start + (end - start) * spent if end else start


def policy_step(learner, *inputs):
    """learner.step(*inputs) -> its metrics as floats, or None if it met non-finite numbers
    (then the parameters are left as they were)."""
    metrics = {k: float(v) for k, v in learner.step(*inputs).items()}
    return None if metrics.pop("fault") else metrics


def normalizer_moves(policy):
    """Whether the policy's observation normaliser takes in every batch (vector observations
    with --normalize_obs): then the step's pi_old is computed before it does."""
    return policy.normalizer is not None and policy.normalizer.enabled


def behaviour_specs(parts, states=1):
    """The TensorSpecs of the sampling policy's parameters on `states` sets of states, which a
    learner takes as its last inputs where the normaliser moves (update_normalizer gives
    them); [] where it never does."""
    import tensorflow as tf

    if not normalizer_moves(parts.policy):
        return []
    return [tf.TensorSpec((None, parts.dist.param_dim), tf.float32)] * states


def mask_specs(signature):
    """[the spec of the batch's action masks], which a learner takes after its data, or []
    where the batch has none (batch_signature)."""
    return [signature["action_mask"]] if "action_mask" in signature else []


def mask_inputs(batch):
    """(the batch's action masks,) or () where it has none: the learner's inputs of mask_specs."""
    return (batch["action_mask"],) if "action_mask" in batch else ()


def policy_inputs(policy, batch):
    """What the policy reads the batch as: its observations, or (a recurrent policy) its
    sequences, one per env, with the states they began with (policies.Sequences)."""
    from trpo_tf.policies import Sequences

    if not policy.state_size:
        return batch["obs"]
    return Sequences(batch["obs"], batch["path_start"], batch["rnn_state"], batch["env_rows"])


def update_normalizer(policy, *states):
    """The sampling policy's parameters on each of `states` (policy inputs: pi(theta_k, N_k)),
    then the batch's observations (the first of `states`) folded into the running statistics
    (N_k+1) -> those parameters, () where the normaliser never moves. The step that follows is
    bounded from them: the normaliser's change is inside the trust region."""
    from trpo_tf.policies import observations_of

    if not normalizer_moves(policy):
        return ()
    behaviour = tuple(policy(s) for s in states)
    policy.normalizer.update(observations_of(states[0]).numpy())
    return behaviour


class SinglePathMethod(Method):
    """Single-path batches (section 5.1): rewards scaled (--normalize_rewards), then the
    method's `improve` step, in which the observation normaliser takes in the batch before
    the policy moves (update_normalizer)."""
    scales_rewards = True  # then its tags include REWARD_SCALE_TAGS

    def __init__(self, cfg, parts):
        super().__init__(cfg, parts)
        from trpo_tf.pipeline import batch_signature
        from trpo_tf.moments import RewardScale
        from trpo_tf.sampling import batch_obs_dtype

        space = parts.envs.observation_space
        self.signature = batch_signature(space.shape, batch_obs_dtype(space), parts.dist,
                                         action_masks=bool(parts.envs.mask_source),
                                         state_size=parts.policy.state_size,
                                         value_state_size=self.value_state_size(cfg))
        self.sampler = self.make_sampler(cfg, parts.envs, parts.dist, parts.seeds, parts.policy)
        self.reward_scale = (RewardScale() if cfg.normalize_rewards and self.scales_rewards
                             else None)

    @classmethod
    def make_sampler(cls, cfg, envs, dist, seeds, policy):
        from trpo_tf.sampling.single_path import SinglePathSampler

        return SinglePathSampler(envs, dist, cfg.steps_per_env, seeds["actions"], cfg.gamma,
                                 policy.state_size, cls.value_state_size(cfg))

    def improve(self, batch, rew):
        """The method's update on a batch with rewards `rew` -> (metrics, None) or (None, what)."""
        raise NotImplementedError

    def update(self, batch):
        from trpo_tf.moments import RewardScale
        from trpo_tf.methods.update import all_finite

        if not all_finite(batch["obs"], batch["end_obs"], batch["rew"]):
            return None, "observations or rewards"
        rew, scale_state = batch["rew"], None
        if self.reward_scale:
            rew, scale_state = self.reward_scale.scaled(rew.numpy(),
                                                        batch["discounted_return"].numpy())
        metrics, fault = self.improve(batch, rew)
        if fault:
            return None, fault
        if scale_state:
            self.reward_scale.commit(scale_state)
            metrics["reward_scale"] = RewardScale.factor(scale_state)
        return metrics, None

    def state(self):
        return {"reward_scale": self.reward_scale and self.reward_scale.state}

    def load_state(self, saved):
        if self.reward_scale and saved.get("reward_scale"):
            self.reward_scale.commit(tuple(saved["reward_scale"]))


class AdvantageMethod(SinglePathMethod):
    """Advantages and value targets (eq. 14-15's A, GAE or Monte Carlo Q; the value net read
    with the statistics it was fitted with) -> the normaliser takes in the batch -> the
    learner's step on (obs, actions, advantages, the sampling policy's parameters) -> the value
    fit, with the statistics it will be read with at the next iteration. The value net and
    its fit are the method's own."""
    advantage_settings = {}  # settings this method overrides for its advantages (RWR: Q-hat)
    stages, _stage_tags = timed(("adv", "time_advantage"), ("update", "time_update"),
                                ("vf", "time_value"))
    tags = {**POLICY_STEP_TAGS, **VALUE_FIT_TAGS, **REWARD_SCALE_TAGS, **_stage_tags}

    @classmethod
    def recorded_settings(cls, cfg):
        return {"value_hidden": list(cfg.value_hidden), "value_rnn": cfg.value_cell}

    @classmethod
    def value_state_size(cls, cfg):
        if cfg.value_cell == "none":
            return 0
        from trpo_tf.policies import cell_state_size

        return cell_state_size(cfg.value_cell, cfg.policy_rnn_units)

    def __init__(self, cfg, parts):
        super().__init__(cfg, parts)
        from trpo_tf import seeding
        from trpo_tf.pipeline.advantages import make_advantage_fn
        from trpo_tf.pipeline import policy_input_spec
        from trpo_tf.pipeline.value import SequenceValueFitter, ValueFitter, compile_pays
        from trpo_tf.policies import build_value_net

        self.value_net = build_value_net(parts.policy, parts.envs.observation_space.shape,
                                         **cfg.value_settings())
        self.recurrent_value = cfg.value_cell != "none"
        inputs_spec = policy_input_spec(parts.obs_spec, self.value_state_size(cfg))
        seed = seeding.int_seed(parts.seeds["value_shuffle"])
        self.value_fitter = (
            SequenceValueFitter(self.value_net, inputs_spec, cfg.vf_lr, cfg.vf_epochs,
                                cfg.vf_minibatch, seed) if self.recurrent_value
            else ValueFitter(self.value_net, parts.obs_spec, cfg.vf_lr, cfg.vf_epochs,
                             cfg.vf_minibatch, seed, compile_pays(cfg.budget_steps, cfg.vf_epochs)))
        self.advantage_fn = make_advantage_fn(
            self.value_net, dataclasses.replace(cfg, **self.advantage_settings), parts.obs_spec,
            inputs_spec)
        self.learner = self.make_learner()

    def carried_value_net(self):
        return self.value_net if self.recurrent_value else None

    def value_inputs(self, batch):
        """What the value net reads the batch as: its observations, or (a recurrent
        baseline) its sequences with the value states they began with."""
        from trpo_tf.policies import Sequences

        if not self.recurrent_value:
            return batch["obs"]
        return Sequences(batch["obs"], batch["path_start"], batch["value_state"],
                         batch["env_rows"])

    def trackables(self):
        return {"value": self.value_net, "value_optimizer": self.value_fitter.optimizer,
                "value_rng": self.value_fitter.rng}

    def load_state(self, saved):
        super().load_state(saved)
        self.value_fitter.optimizer.learning_rate = self.cfg.vf_lr  # a flag, not checkpoint state

    def anneal(self, spent):
        self.value_fitter.optimizer.learning_rate = linear_schedule(
            self.cfg.vf_lr, self.cfg.vf_lr_end, spent)

    def make_learner(self):
        """An object whose traced .step(policy inputs (observations, or Sequences: policy_inputs),
        actions, advantages[, action masks][, sampling policy's params: behaviour_specs])
        returns the update's metrics (with "fault")."""
        raise NotImplementedError

    def improve(self, batch, rew):
        from trpo_tf.methods.update import all_finite

        t0 = time.perf_counter()
        value_inputs = self.value_inputs(batch)
        adv, targets, ev = self.advantage_fn(
            value_inputs, batch["end_obs"], rew, batch["terminal"], batch["path_end"])
        if not all_finite(adv, targets):
            return None, "advantages or value targets"
        t1 = time.perf_counter()
        inputs = policy_inputs(self.parts.policy, batch)
        behaviour = update_normalizer(self.parts.policy, inputs)
        metrics = policy_step(self.learner, inputs, batch["act"], adv, *mask_inputs(batch),
                              *behaviour)
        if metrics is None:
            return None, POLICY_STEP_FAULT
        t2 = time.perf_counter()
        vf = self.value_fitter.fit(value_inputs, targets)
        metrics.update(
            explained_variance=float(ev), value_loss_before=float(vf["loss_before"]),
            value_loss_after=float(vf["loss_after"]), time_advantage=t1 - t0,
            time_update=t2 - t1, time_value=time.perf_counter() - t2)
        return metrics, None
