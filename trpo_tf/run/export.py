"""SavedModel export of the policy with a serving signature, written atomically. The model
also records the env it was trained on and, for Atari, the preprocessing its observations
went through, so that `play` can rebuild exactly that env.

Categorical policies have a second signature, MASKED_SIGNATURE, that takes the action mask
beside the observations (bool [batch, logits], False on illegal actions): a SavedModel
signature cannot have an optional input (a tf.function's default argument becomes a required
input, or is refused), so `serving_default` is the policy with every action legal.

A recurrent policy's signatures are one step of a batch of episodes: they take its `state`
[batch, S] beside the observations and return the new `state` with the actions; a third,
INITIAL_STATE_SIGNATURE, gives the state an episode starts from for a `batch_size`.

Every signature returns the distribution's parameters, its draws (`deterministic_action`, a
sampled `action`: unclipped Gaussian draws, 0-based indices) and what the env takes
(`deterministic_env_action`, `env_action`: clipped to the Box, the Discrete space's start
added), as training's sampler and `play` turn the one into the other."""
import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from trpo_tf.distributions import masked_logits
from trpo_tf.errors import ConfigError
from trpo_tf.graph import traced
from trpo_tf.run import outputs

MASKED_SIGNATURE = "masked"  # inputs obs and action_mask (and a recurrent policy's state)
INITIAL_STATE_SIGNATURE = "initial_state"  # recurrent policies: batch_size -> {"state"}


class ServablePolicy(tf.Module):
    """obs batch [, a recurrent policy's state] [and action masks] -> {distribution parameters,
    deterministic action, sampled action[, new state]}."""

    def __init__(self, policy, dist, obs_spec, env_id, env_settings=None, action_space=None):
        super().__init__()
        self.policy = policy
        self.to_env = env_action_op(action_space, dist)
        self.env_id = tf.Variable(env_id, trainable=False, dtype=tf.string)
        self.env_settings = tf.Variable(json.dumps(env_settings), trainable=False, dtype=tf.string)
        mask_spec = tf.TensorSpec((None, dist.param_dim), tf.bool)
        self.initial_state = None
        if policy.state_size:
            state_spec = tf.TensorSpec((None, policy.state_size), tf.float32)
            self.serve = traced(self._serve_step, input_signature=[obs_spec, state_spec])
            self.serve_masked = (traced(self._serve_step_masked,
                                        input_signature=[obs_spec, state_spec, mask_spec])
                                 if dist.maskable else None)
            self.initial_state = traced(
                self._initial_state, input_signature=[tf.TensorSpec((), tf.int32)])
        else:
            self.serve = traced(self._serve, input_signature=[obs_spec])
            self.serve_masked = (traced(self._serve_masked, input_signature=[obs_spec, mask_spec])
                                 if dist.maskable else None)

    def serving_signatures(self):
        """{signature name: function} of the SavedModel."""
        masked = {MASKED_SIGNATURE: self.serve_masked} if self.serve_masked else {}
        initial = {INITIAL_STATE_SIGNATURE: self.initial_state} if self.initial_state else {}
        return {"serving_default": self.serve, **masked, **initial}

    def _serve(self, obs):
        return self._outputs(self.policy(obs))

    def _serve_masked(self, obs, action_mask):
        with tf.control_dependencies(self._mask_checks(obs, action_mask)):
            return self._outputs(masked_logits(self.policy(obs), action_mask))

    def _serve_step(self, obs, state):
        return self._step_outputs(obs, state, None)

    def _serve_step_masked(self, obs, state, action_mask):
        return self._step_outputs(obs, state, action_mask)

    def _step_outputs(self, obs, state, mask):
        checks = [tf.debugging.assert_equal(
            tf.shape(state)[0], tf.shape(obs)[0],
            message="state: one row per observation (its batch differs from obs's)")]
        if mask is not None:
            checks += self._mask_checks(obs, mask)
        with tf.control_dependencies(checks):
            params, state = self.policy.step(obs, state)
            return {**self._outputs(masked_logits(params, mask)), "state": state}

    def _mask_checks(self, obs, mask):
        """A caller's action_mask has a row per observation and a legal action in every row
        (in each part of a MultiDiscrete action): with none, the masked softmax would draw
        among illegal actions."""
        dist = self.policy.dist
        heads = dist.split(mask) if hasattr(dist, "heads") else [mask]
        return [tf.debugging.assert_equal(
                    tf.shape(mask)[0], tf.shape(obs)[0],
                    message="action_mask: one row per observation (its batch differs from obs's)"),
                tf.debugging.assert_equal(
                    tf.reduce_all([tf.reduce_all(tf.reduce_any(h, -1)) for h in heads]), True,
                    message="action_mask: a row with no legal action")]

    def _initial_state(self, batch_size):
        return {"state": self.policy.initial_state(batch_size)}

    def _outputs(self, params):
        dist = self.policy.dist
        out = {"deterministic_action": dist.mode(params), "action": dist.sample(params)}
        out["deterministic_env_action"] = self.to_env(out["deterministic_action"])
        out["env_action"] = self.to_env(out["action"])
        if dist.discrete:
            out["logits"] = params
        else:
            out["mean"], out["log_std"] = dist.split(params)
        return out


def env_action_op(action_space, dist):
    """sampling.env_action_fn in TensorFlow, for the export's env_action outputs: the
    distribution's draws -> what the env takes (Gaussian draws clipped to the Box, a NaN as 0
    clipped, an infinite one at its bound; Discrete / MultiDiscrete indices plus the space's
    start). action_space None: the draws as they are."""
    if action_space is None:
        return lambda actions: actions
    if dist.discrete:
        start = np.asarray(getattr(action_space, "start", 0), np.int32)
        return (lambda actions: actions + start) if np.any(start) else (lambda actions: actions)
    low = tf.constant(np.asarray(action_space.low, np.float32))
    high = tf.constant(np.asarray(action_space.high, np.float32))
    return lambda actions: tf.clip_by_value(
        tf.where(tf.math.is_nan(actions), tf.zeros_like(actions), actions), low, high)


def export_policy(policy, dist, obs_spec, env_id, export_dir, env_settings=None,
                  action_space=None):
    """Save to a temporary sibling, then swap it in: `play` never sees a half-written model.
    Only an earlier export (it carries outputs.EXPORT_MARKER) is ever replaced.
    env_settings: a JSON-able dict (envs.env_settings(spec)), or None; action_space: the env's
    (the env_action outputs fit it), or None (they are the draws)."""
    export_dir = os.path.abspath(export_dir)
    parent = os.path.dirname(export_dir)
    if os.path.lexists(export_dir) and not outputs.is_trpo_tf_export(export_dir):
        raise ConfigError(f"--export_dir={export_dir} is not a policy trpo_tf exported: not "
                          "replaced; choose another --export_dir, or move it away")
    os.makedirs(parent, exist_ok=True)
    name = os.path.basename(export_dir)
    remove_stale_exports(parent, name)
    module = ServablePolicy(policy, dist, obs_spec, env_id, env_settings, action_space)
    tmp = tempfile.mkdtemp(prefix=f".{name}-tmp-", dir=parent)
    os.chmod(tmp, 0o777 & ~current_umask())  # as the logdir's other directories (mkdtemp: 0700)
    tf.saved_model.save(module, tmp, signatures=module.serving_signatures())
    with open(os.path.join(tmp, outputs.EXPORT_MARKER), "w") as f:
        json.dump({"exported_by": "trpo_tf", "env_id": env_id}, f)
    old = None
    if os.path.exists(export_dir):
        old = tempfile.mkdtemp(prefix=f".{name}-old-", dir=parent)
        os.rename(export_dir, os.path.join(old, "policy"))
    os.rename(tmp, export_dir)
    if old:
        shutil.rmtree(old)
    return export_dir


def remove_stale_exports(parent, name):
    """Remove what an export to `parent`/`name` killed midway left beside it: a half-written
    .<name>-tmp-* and an earlier export set aside in .<name>-old-* (the run holding the logdir
    is the only one exporting there)."""
    for entry in os.listdir(parent):
        if entry.startswith((f".{name}-tmp-", f".{name}-old-")):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)


def current_umask():
    """The process's umask (read by setting it, then putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def observation_spec(serve):
    """The TensorSpec of the observation batch an exported policy accepts."""
    return serve.structured_input_signature[1]["obs"]


def takes_masks(serve):
    """Whether this signature of an export takes action masks (MASKED_SIGNATURE)."""
    return "action_mask" in serve.structured_input_signature[1]


def state_size(serve):
    """The size of the state a recurrent export's signature takes, or 0 (feed-forward)."""
    spec = serve.structured_input_signature[1].get("state")
    return 0 if spec is None else int(spec.shape[1])


def observation_shape(serve):
    """The observation shape (without the batch dim) an exported policy accepts."""
    return tuple(observation_spec(serve).shape[1:])


def load_policy(export_dir):
    """(serving function, env id, env settings dict or None) of an exported policy."""
    signatures, env_id, settings = load_signatures(export_dir)
    return signatures["serving_default"], env_id, settings


def load_signatures(export_dir):
    """({signature name: function}, env id, env settings dict or None) of an exported policy."""
    model = tf.saved_model.load(export_dir)
    return (dict(model.signatures), model.env_id.numpy().decode(),
            json.loads(model.env_settings.numpy().decode()))
