"""Action distributions as plain TF functions over one parameter tensor per state.

Every distribution is described by a single tensor `params` of shape [batch, param_dim]:
  * diagonal Gaussian: concat(mean, log_std)         param_dim = 2 * act_dim
  * categorical:       logits                         param_dim = num_actions
  * multi-categorical: concat of each head's logits   param_dim = sum(nvec)  (MultiDiscrete)
  * Bernoulli:         one logit per bit              param_dim = n          (MultiBinary)
so a batch, the KL and the Fisher-vector products never care which family they hold. Each
gives its Fisher information in those parameters, M(params) u per state (`fisher_product`):
the Hessian of KL(p_old || p) in p's parameters at p = p_old, so that the mean KL's Hessian in
the policy's weights is mean_n J_n^T M_n J_n (section 6's analytic FIM; methods/update.py). Each
also says what one action is (`act_shape`, `act_dtype`: what the batch and the pipeline
carry) and what its policy head outputs (`head_dim`: the Gaussian's log-std is a free
vector beside the network, appendix D).

Action masks (categorical families, `maskable`): a bool mask of the params' shape, False on
illegal actions, is applied to the logits by `masked_logits` before anything reads them, so
the log-probability, KL, entropy, Fisher product and sampling of the masked distribution are
those of the unmasked functions on the masked logits.
"""
import math

import numpy as np
import tensorflow as tf

# An illegal action's logit: exp(MASKED_LOGIT - any realistic logit) is exactly 0 in float32,
# and it is finite, so log-probabilities, KL, entropy and their gradients meet no inf - inf
# or 0 * inf (the illegal terms are 0 * finite = 0); a legal logit would need to be below
# -1e9 to be confused with it.
MASKED_LOGIT = -1e9


def masked_logits(logits, mask):
    """The logits with the illegal actions' (mask False) set to MASKED_LOGIT: softmax gives
    them probability 0 and renormalises over the legal ones, so the KL of two masked
    distributions is over the legal actions; its gradient is 0 on the illegal logits. mask
    None: the logits as they are. NumPy (the sampler) or TensorFlow (the update, the export)
    alike; MultiDiscrete masks are the heads' masks concatenated, like its logits."""
    if mask is None:
        return logits
    where = np.where if isinstance(logits, np.ndarray) else tf.where
    return where(mask, logits, np.float32(MASKED_LOGIT))


class DiagGaussian:
    """N(mean, diag(exp(log_std)^2)); appendix D: log_std is a state-independent vector r."""

    discrete = False
    maskable = False
    act_dtype = np.float32

    def __init__(self, act_dim):
        self.act_dim = act_dim
        self.param_dim = 2 * act_dim
        self.head_dim = act_dim
        self.act_shape = (act_dim,)

    def split(self, params):
        return params[..., : self.act_dim], params[..., self.act_dim :]

    def log_prob(self, params, actions):  # [B, 2A], [B, A] -> [B]
        mean, log_std = self.split(params)
        z = (actions - mean) * tf.exp(-log_std)
        return (-0.5 * tf.reduce_sum(tf.square(z), -1) - tf.reduce_sum(log_std, -1)
                - 0.5 * self.act_dim * math.log(2.0 * math.pi))

    def kl(self, params0, params1):  # KL(p0 || p1) per state, [B]
        mean0, log_std0 = self.split(params0)
        mean1, log_std1 = self.split(params1)
        var0, var1 = tf.exp(2.0 * log_std0), tf.exp(2.0 * log_std1)
        return tf.reduce_sum(
            log_std1 - log_std0 + (var0 + tf.square(mean0 - mean1)) / (2.0 * var1) - 0.5, -1)

    def fisher_product(self, params, u):  # M u per state, [B, 2A], [B, 2A] -> [B, 2A]
        """M = diag(1 / sigma^2 on the mean, 2 on the log-std): the second derivatives of
        kl(params, .) at params (log_std1 + sigma0^2 exp(-2 log_std1) / 2 has 2 sigma0^2 /
        sigma1^2 = 2 there; the mean-log-std cross terms carry (mean0 - mean1) = 0)."""
        _, log_std = self.split(params)
        u_mean, u_log_std = self.split(u)
        return tf.concat([u_mean * tf.exp(-2.0 * log_std), 2.0 * u_log_std], -1)

    def entropy(self, params):  # [B]
        _, log_std = self.split(params)
        return tf.reduce_sum(log_std + 0.5 * math.log(2.0 * math.pi * math.e), -1)

    def mode(self, params):
        return self.split(params)[0]

    def sample(self, params):
        mean, log_std = self.split(params)
        return mean + tf.exp(log_std) * tf.random.normal(tf.shape(mean))

    def draw_noise(self, rng, n):
        """The randomness of n draws, apart from the parameters (shared for common random
        numbers in vine branches)."""
        return rng.standard_normal((n, self.act_dim)).astype(np.float32)

    def sample_from_noise(self, params, noise):
        """NumPy: the draws that `noise` makes from the distributions `params`."""
        mean, log_std = params[:, : self.act_dim], params[:, self.act_dim :]
        return mean + np.exp(log_std) * noise

    def sample_np(self, params, rng):
        """The same sampler as `sample`, on NumPy arrays (the fast acting path)."""
        return self.sample_from_noise(params, self.draw_noise(rng, len(params)))

    def mode_np(self, params):
        return params[:, : self.act_dim]


class Categorical:
    """Softmax over `num_actions` logits (the Atari policy of section 8.2)."""

    discrete = True
    maskable = True
    act_dtype = np.int32
    act_shape = ()

    def __init__(self, num_actions):
        self.num_actions = self.param_dim = self.head_dim = int(num_actions)

    def log_prob(self, logits, actions):  # [B, K], [B] int -> [B]
        log_p = tf.nn.log_softmax(logits)
        return tf.gather(log_p, tf.cast(actions, tf.int32), axis=-1, batch_dims=1)

    def kl(self, logits0, logits1):
        log_p0, log_p1 = tf.nn.log_softmax(logits0), tf.nn.log_softmax(logits1)
        return tf.reduce_sum(tf.exp(log_p0) * (log_p0 - log_p1), -1)

    def fisher_product(self, logits, u):
        """M = diag(p) - p p^T, the Hessian of -sum p0 log softmax(logits) in the logits."""
        p = tf.nn.softmax(logits)
        return p * (u - tf.reduce_sum(p * u, -1, keepdims=True))

    def entropy(self, logits):
        log_p = tf.nn.log_softmax(logits)
        return -tf.reduce_sum(tf.exp(log_p) * log_p, -1)

    def mode(self, logits):
        return tf.argmax(logits, -1, output_type=tf.int32)

    def sample(self, logits):
        return tf.random.categorical(logits, 1, dtype=tf.int32)[:, 0]

    def draw_noise(self, rng, n):
        """Gumbel noise, one per action, for n draws."""
        return -np.log(-np.log(rng.uniform(1e-12, 1.0, (n, self.num_actions))))

    def sample_from_noise(self, logits, noise):
        """Gumbel-max: argmax(logits + Gumbel noise) is a draw from softmax(logits)."""
        return np.argmax(logits + noise, axis=-1).astype(np.int32)

    def sample_np(self, logits, rng):
        return self.sample_from_noise(logits, self.draw_noise(rng, len(logits)))

    def mode_np(self, logits):
        return np.argmax(logits, axis=-1).astype(np.int32)


class MultiCategorical:
    """Independent softmax heads, one per entry of a MultiDiscrete action (nvec); the log-
    probability, KL and entropy of the joint are the sums over heads."""

    discrete = True
    maskable = True
    act_dtype = np.int32

    def __init__(self, nvec):
        self.nvec = [int(n) for n in nvec]
        self.param_dim = self.head_dim = sum(self.nvec)
        self.act_shape = (len(self.nvec),)
        self.heads = [Categorical(n) for n in self.nvec]

    def split(self, params):
        return tf.split(params, self.nvec, axis=-1)

    def log_prob(self, params, actions):  # [B, sum n], [B, H] -> [B]
        return tf.add_n([h.log_prob(p, actions[:, i])
                         for i, (h, p) in enumerate(zip(self.heads, self.split(params)))])

    def kl(self, params0, params1):
        return tf.add_n([h.kl(p0, p1) for h, p0, p1 in
                         zip(self.heads, self.split(params0), self.split(params1))])

    def fisher_product(self, params, u):
        """Block diagonal: each head's diag(p) - p p^T on its own logits."""
        return tf.concat([h.fisher_product(p, v) for h, p, v in
                          zip(self.heads, self.split(params), self.split(u))], -1)

    def entropy(self, params):
        return tf.add_n([h.entropy(p) for h, p in zip(self.heads, self.split(params))])

    def mode(self, params):
        return tf.stack([h.mode(p) for h, p in zip(self.heads, self.split(params))], -1)

    def sample(self, params):
        return tf.stack([h.sample(p) for h, p in zip(self.heads, self.split(params))], -1)

    def _split_np(self, x):
        return np.split(x, np.cumsum(self.nvec)[:-1], axis=-1)

    def draw_noise(self, rng, n):
        return -np.log(-np.log(rng.uniform(1e-12, 1.0, (n, self.param_dim))))

    def sample_from_noise(self, params, noise):
        return np.stack([np.argmax(p + z, -1) for p, z in
                         zip(self._split_np(params), self._split_np(noise))], -1).astype(np.int32)

    def sample_np(self, params, rng):
        return self.sample_from_noise(params, self.draw_noise(rng, len(params)))

    def mode_np(self, params):
        return np.stack([np.argmax(p, -1) for p in self._split_np(params)], -1).astype(np.int32)


class Bernoulli:
    """Independent bits of a MultiBinary action, bit i on with probability sigmoid(logit_i)."""

    discrete = True
    maskable = False
    act_dtype = np.int32

    def __init__(self, n):
        self.param_dim = self.head_dim = int(n)
        self.act_shape = (int(n),)

    def log_prob(self, logits, actions):  # [B, n], [B, n] in {0, 1} -> [B]
        a = tf.cast(actions, logits.dtype)
        # log sigmoid(l) = -softplus(-l), log(1 - sigmoid(l)) = -softplus(l)
        return -tf.reduce_sum(a * tf.nn.softplus(-logits) + (1.0 - a) * tf.nn.softplus(logits), -1)

    def kl(self, logits0, logits1):
        p0 = tf.sigmoid(logits0)
        log_p0, log_q0 = -tf.nn.softplus(-logits0), -tf.nn.softplus(logits0)
        log_p1, log_q1 = -tf.nn.softplus(-logits1), -tf.nn.softplus(logits1)
        return tf.reduce_sum(p0 * (log_p0 - log_p1) + (1.0 - p0) * (log_q0 - log_q1), -1)

    def fisher_product(self, logits, u):
        """M = diag(p (1 - p)), p = sigmoid(logit): each bit's KL Hessian in its logit."""
        p = tf.sigmoid(logits)
        return p * (1.0 - p) * u

    def entropy(self, logits):
        p = tf.sigmoid(logits)
        return tf.reduce_sum(p * tf.nn.softplus(-logits) + (1.0 - p) * tf.nn.softplus(logits), -1)

    def mode(self, logits):
        return tf.cast(logits > 0.0, tf.int32)

    def sample(self, logits):
        return tf.cast(tf.random.uniform(tf.shape(logits)) < tf.sigmoid(logits), tf.int32)

    def draw_noise(self, rng, n):
        return rng.uniform(0.0, 1.0, (n, self.param_dim))

    def sample_from_noise(self, logits, noise):
        return (noise < 1.0 / (1.0 + np.exp(-logits))).astype(np.int32)

    def sample_np(self, logits, rng):
        return self.sample_from_noise(logits, self.draw_noise(rng, len(logits)))

    def mode_np(self, logits):
        return (logits > 0.0).astype(np.int32)


def for_action_space(space):
    """Dispatch on the gymnasium action space: 1-D Box -> DiagGaussian, Discrete ->
    Categorical, 1-D MultiDiscrete -> MultiCategorical, 1-D MultiBinary -> Bernoulli (the
    spaces envs.check_spaces admits)."""
    import gymnasium as gym

    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return DiagGaussian(int(space.shape[0]))
    if isinstance(space, gym.spaces.Discrete):
        return Categorical(int(space.n))
    if isinstance(space, gym.spaces.MultiDiscrete) and len(space.shape) == 1:
        return MultiCategorical(space.nvec)
    if isinstance(space, gym.spaces.MultiBinary) and len(space.shape) == 1:
        return Bernoulli(space.n)
    raise ValueError(f"unsupported action space {space}")
