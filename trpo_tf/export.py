"""SavedModel export of the policy with a serving signature, written atomically."""
import os
import shutil
import tempfile

import tensorflow as tf


class ServablePolicy(tf.Module):
    """obs batch -> {distribution parameters, deterministic action, sampled action}."""

    def __init__(self, policy, dist, obs_spec, env_id):
        super().__init__()
        self.policy = policy
        self.env_id = tf.Variable(env_id, trainable=False, dtype=tf.string)
        self.serve = tf.function(self._serve, input_signature=[obs_spec])

    def _serve(self, obs):
        dist = self.policy.dist
        params = self.policy(obs)
        out = {"deterministic_action": dist.mode(params), "action": dist.sample(params)}
        if dist.discrete:
            out["logits"] = params
        else:
            out["mean"], out["log_std"] = dist.split(params)
        return out


def export_policy(policy, dist, obs_spec, env_id, export_dir):
    """Save to a temporary sibling, then swap it in: `play` never sees a half-written model."""
    export_dir = os.path.abspath(export_dir)
    parent = os.path.dirname(export_dir)
    os.makedirs(parent, exist_ok=True)
    module = ServablePolicy(policy, dist, obs_spec, env_id)
    tmp = tempfile.mkdtemp(prefix=".policy-tmp-", dir=parent)
    tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve})
    old = None
    if os.path.exists(export_dir):
        old = tempfile.mkdtemp(prefix=".policy-old-", dir=parent)
        os.rename(export_dir, os.path.join(old, "policy"))
    os.rename(tmp, export_dir)
    if old:
        shutil.rmtree(old)
    return export_dir


def observation_shape(serve):
    """The observation shape (without the batch dim) an exported policy accepts."""
    (spec,) = serve.structured_input_signature[1].values()
    return tuple(spec.shape[1:])


def load_policy(export_dir):
    """(serving function, env id) of an exported policy."""
    model = tf.saved_model.load(export_dir)
    return model.signatures["serving_default"], model.env_id.numpy().decode()
