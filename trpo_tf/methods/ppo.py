"""PPO with the clipped surrogate (Schulman, Wolski, Dhariwal, Radford, Klimov 2017, eq. 7):

  L^CLIP(theta) = mean_n min(r_n A_n, clip(r_n, 1 - eps, 1 + eps) A_n),
  r_n = pi_theta(a_n | s_n) / pi_old(a_n | s_n),

maximised by Adam over --ppo_epochs passes of shuffled minibatches of one single-path batch:
the same envs, sampler, advantages (GAE), value fit and evaluation as TRPO, so the two compare
on equal terms. Where TRPO bounds the step by the mean KL (eq. 13), PPO removes the incentive
to move r outside [1 - eps, 1 + eps]; the KL it reaches is logged beside TRPO's.

Its Adam moments and its shuffling RNG persist across iterations (as in the paper's
implementation), so they are the method's own state: `trackables` hands them to the
checkpoint and to the fault rollback. Like every module here it loads no TensorFlow when
imported: the functions that need it import it.
"""
from trpo_tf.methods.base import AdvantageMethod
from trpo_tf.settings import at_least, declare, in_unit_interval, positive

GROUP = "4 method ppo"
declare(GROUP, "ppo_clip", 0.2, "ppo: epsilon, the clip range of the probability ratio (eq. 7).",
        check=in_unit_interval(high_open=True), rule="in (0, 1)")
declare(GROUP, "ppo_epochs", 10, "ppo: passes of Adam over each batch.", check=at_least(1),
        rule=">= 1")
declare(GROUP, "ppo_minibatch", 64, "ppo: samples per Adam step.", check=at_least(1), rule=">= 1")
declare(GROUP, "ppo_lr", 3e-4, "ppo: Adam learning rate of the policy.", check=positive,
        rule="> 0")


def clipped_surrogate(dist, params, actions, old_log_prob, advantages, clip):
    """Eq. 7: mean_n min(r_n A_n, clip(r_n, 1 - clip, 1 + clip) A_n)."""
    import tensorflow as tf

    ratio = tf.exp(dist.log_prob(params, actions) - old_log_prob)
    clipped = tf.clip_by_value(ratio, 1.0 - clip, 1.0 + clip)
    return tf.reduce_mean(tf.minimum(ratio * advantages, clipped * advantages))


class PPOLearner:
    """`.step(obs, actions, advantages[, action masks][, behaviour])`: --ppo_epochs passes of
    minibatch Adam ascent on eq. 7, traced once per run. pi_old is the policy that sampled the
    batch: its parameters `behaviour` where the observation normaliser has since taken in the
    batch (input_specs end with their spec: behaviour_specs), else the policy's own before the
    first step. With action_masks, every distribution is masked by the batch's masks."""

    def __init__(self, policy, dist, input_specs, clip, epochs, minibatch, learning_rate, seed,
                 action_masks=False):
        import keras
        import tensorflow as tf

        self.policy, self.dist = policy, dist
        self.variables = policy.trainable_variables
        self.clip, self.epochs, self.minibatch = clip, epochs, minibatch
        self.action_masks = action_masks
        self.optimizer = keras.optimizers.Adam(learning_rate)
        self.optimizer.build(self.variables)
        self.rng = tf.random.Generator.from_seed(seed)
        self.trace_count = 0
        from trpo_tf.graph import traced

        self.step = traced(self._step, input_signature=list(input_specs))

    def ascend(self, obs, actions, old_log_prob, advantages, mask):
        """One Adam step up eq. 7 on a minibatch (its action masks: `mask`, or None)."""
        import tensorflow as tf

        from trpo_tf.distributions import masked_logits
        from trpo_tf.graph import adam_step

        with tf.GradientTape() as tape:
            loss = -clipped_surrogate(self.dist, masked_logits(self.policy(obs), mask), actions,
                                      old_log_prob, advantages, self.clip)
        adam_step(self.optimizer, tape.gradient(loss, self.variables), self.variables)

    def _step(self, obs, actions, advantages, *rest):
        import tensorflow as tf

        from trpo_tf.distributions import masked_logits
        from trpo_tf.flat import get_flat, revert_unless
        from trpo_tf.graph import repeat

        self.trace_count += 1  # Python side effect: runs only while tracing
        dist, policy = self.dist, self.policy
        mask, behaviour = (rest[0], rest[1:]) if self.action_masks else (None, rest)
        old_params = masked_logits(behaviour[0] if behaviour else tf.stop_gradient(policy(obs)),
                                   mask)
        old_log_prob = dist.log_prob(old_params, actions)
        theta_old = get_flat(self.variables)
        before = clipped_surrogate(dist, old_params, actions, old_log_prob, advantages, self.clip)
        n = tf.shape(obs)[0]

        def epoch(_):
            order = tf.argsort(self.rng.uniform([n]))

            def minibatch(j):
                idx = order[j * self.minibatch:(j + 1) * self.minibatch]
                self.ascend(tf.gather(obs, idx), tf.gather(actions, idx),
                            tf.gather(old_log_prob, idx), tf.gather(advantages, idx),
                            None if mask is None else tf.gather(mask, idx))

            repeat((n + self.minibatch - 1) // self.minibatch, minibatch)

        repeat(self.epochs, epoch)
        params = masked_logits(policy(obs), mask)
        finite = tf.reduce_all(tf.math.is_finite(params)) & tf.math.is_finite(before)
        # a diverged fit never reaches the policy (the loop rolls Adam back)
        revert_unless(finite, self.variables, theta_old)
        kl = dist.kl(old_params, params)
        ratio = tf.exp(dist.log_prob(params, actions) - old_log_prob)
        return {
            "surrogate_before": before,
            "surrogate_after": clipped_surrogate(dist, params, actions, old_log_prob, advantages,
                                                 self.clip),
            "kl": tf.reduce_mean(kl),
            "kl_max": tf.reduce_max(kl),
            "entropy": tf.reduce_mean(dist.entropy(old_params)),
            "clip_fraction": tf.reduce_mean(tf.cast(tf.abs(ratio - 1.0) > self.clip, tf.float32)),
            "fault": 1.0 - tf.cast(finite, tf.float32),
        }


class PPO(AdvantageMethod):
    algo = "ppo"
    setting_groups = (GROUP,)
    takes_action_masks = True
    tags = {**AdvantageMethod.tags, "clip_fraction": "PPO/ClipFraction"}
    search_space = {
        "ppo_clip": lambda t: t.suggest_float("ppo_clip", 0.1, 0.3),
        "ppo_lr": lambda t: t.suggest_float("ppo_lr", 1e-4, 1e-3, log=True),
        "ppo_epochs": lambda t: t.suggest_int("ppo_epochs", 3, 15),
        "ppo_minibatch": lambda t: t.suggest_categorical("ppo_minibatch", [32, 64, 128, 256]),
    }

    def make_learner(self):
        from trpo_tf import seeding
        from trpo_tf.methods.base import behaviour_specs, mask_specs

        cfg, sig, parts = self.cfg, self.signature, self.parts
        masks = mask_specs(sig)
        specs = [parts.obs_spec, sig["act"], sig["rew"], *masks, *behaviour_specs(parts)]
        return PPOLearner(parts.policy, parts.dist, specs, cfg.ppo_clip, cfg.ppo_epochs,
                          cfg.ppo_minibatch, cfg.ppo_lr, seeding.int_seed(parts.seeds["method"]),
                          action_masks=bool(masks))

    def trackables(self):
        return {**super().trackables(), "ppo_optimizer": self.learner.optimizer,
                "ppo_rng": self.learner.rng}

    def load_state(self, saved):
        super().load_state(saved)
        self.learner.optimizer.learning_rate = self.cfg.ppo_lr  # a flag, not checkpoint state

    def progress(self, m):
        return f"kl {m.get('kl', float('nan')):.4f} clip {m.get('clip_fraction', 0.0):.2f}"

