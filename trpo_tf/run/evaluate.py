"""Scoring policies: returns of whole episodes of an exported policy in one env, and the
training run's evaluation stage (no flags here, so benchmarks and tools can import it)."""
import numpy as np
import tensorflow as tf

from trpo_tf import envs
from trpo_tf.cli import check_policy_dir
from trpo_tf.distributions import for_action_space, masked_logits
from trpo_tf.errors import first_line
from trpo_tf.run.export import (MASKED_SIGNATURE, load_signatures, observation_shape,
                                observation_spec, state_size, takes_masks)
from trpo_tf.envs import action_mask, checked, mask_source
from trpo_tf.sampling import env_action_fn, play_episodes


def open_policy(policy_dir, env_name=None, max_path_length=None):
    """(serving function, EnvSpec, env) for an exported policy: the env it was trained on
    (or `env_name`) with the preprocessing and gymnasium.make arguments recorded in the
    export, so it plays exactly as it trained; the signature that takes action masks where the
    env gives them. EnvError for a directory that holds no policy or an env of another shape."""
    check_policy_dir(policy_dir)
    try:
        signatures, env_id, settings = load_signatures(policy_dir)
    except Exception as err:  # TensorFlow's loader on a damaged or foreign SavedModel
        raise envs.EnvError(f"--policy={policy_dir}: the SavedModel cannot be loaded "
                            f"({first_line(err)})") from None
    spec = envs.settings_spec(env_name or env_id, settings)  # --env may name the export's env
    if spec.gym_id != env_id:  # another env: the gymnasium.make arguments are the export env's
        spec = envs.settings_spec(env_name, settings, make_kwargs=False)
    env = envs.make_bounded_env(spec, max_path_length)
    serve = signatures["serving_default"]
    if MASKED_SIGNATURE in signatures and isinstance(env.action_space, envs.MASKABLE):
        _, info = checked(lambda: env.reset(seed=0), env, f"{spec.gym_id} env")
        serve = signatures[MASKED_SIGNATURE] if mask_source(env, info) else serve
    problem = (f"takes observations of shape {observation_shape(serve)}, but --env={spec.name} "
               f"gives {env.observation_space.shape}"
               if observation_shape(serve) != env.observation_space.shape
               else action_mismatch(serve, env.action_space, spec.name))
    if problem:
        env.close()
        raise envs.EnvError(f"--policy={policy_dir} {problem}")
    return serve, spec, env


def action_mismatch(serve, action_space, env_name):
    """Why the policy's actions do not fit `action_space`, or None: the distribution that
    space asks for must have the policy's head (logits or mean) and action shape."""
    out = serve.structured_outputs
    discrete = "logits" in out
    head = out["logits" if discrete else "mean"].shape[-1]
    shape = tuple(out["deterministic_action"].shape[1:])
    wanted = for_action_space(action_space)
    if wanted.discrete == discrete and wanted.head_dim == head and wanted.act_shape == shape:
        return None
    acts = (f"chooses discrete actions of shape {shape} from {head} logits" if discrete
            else f"acts with continuous actions of shape {shape}")
    return f"{acts}, but --env={env_name} takes {action_space}"


def run_episodes(serve, env, episodes, seed, deterministic, actions_taken=None):
    """Returns of `episodes` episodes acting with the exported policy (the env's actions are
    appended to `actions_taken` if given); under the env's action masks if `serve` takes
    them (MASKED_SIGNATURE); a recurrent policy's state carried from step to step, zero (the
    export's initial_state) at each reset."""
    key = "deterministic_action" if deterministic else "action"
    to_env = env_action_fn(env.action_space, for_action_space(env.action_space))
    obs_dtype = observation_spec(serve).dtype  # float32 vectors, uint8 frames
    memory = state_size(serve)
    where = f"{env.spec.id if env.spec else 'the env'} env"  # in an EnvStepError
    returns = []
    for ep in range(episodes):
        obs, info = checked(lambda: env.reset(seed=seed + ep), env, where)
        source = takes_masks(serve) and mask_source(env, info)
        total, done, steps = 0.0, False, 0
        state = {"state": tf.zeros([1, memory])} if memory else {}
        while not done:
            inputs = {"obs": tf.constant(obs[None], obs_dtype), **state}
            if source:
                inputs["action_mask"] = action_mask(env, info, source, where, steps)[None]
            out = serve(**inputs)
            state = {"state": out["state"]} if memory else {}
            action = to_env(out[key].numpy()[0])
            obs, rew, term, trunc, info = checked(lambda: env.step(action), env, where, 5)
            total += rew
            steps += 1
            done = term or trunc
            if actions_taken is not None:
                actions_taken.append(action)
        returns.append(total)
    return np.asarray(returns)


class Evaluator:
    """The evaluation stage of a run: `episodes` episodes of the deterministic policy on envs
    of its own (bounded: make_bounded_env), stepped together with one batched policy call per step. Every evaluation
    resets them with the same seeds (from the run's evaluation stream), so two evaluations
    differ only by the policy. With `mask_source` (the training envs'), it acts under the
    envs' action masks, as the policy trained. A recurrent policy (`state_size` > 0) keeps a
    state per env, zero at the reset."""

    def __init__(self, spec, dist, episodes, seed_sequence, max_path_length=None,
                 mask_source=None, state_size=0):
        self.envs = [envs.make_bounded_env(spec, max_path_length) for _ in range(episodes)]
        self.gym_id = spec.gym_id  # as errors name it (module:Id-v0 with its module)
        self.seeds = [int(s) >> 1 for s in seed_sequence.generate_state(episodes)]  # 31 bits
        self.dist = dist
        self.to_env = env_action_fn(self.envs[0].action_space, dist)
        self.mask_source = mask_source
        self.state_size = state_size

    def __call__(self, params_fn):
        """params_fn: NumPy obs [B, ...] -> params [B, P] (a recurrent policy: (obs, state) ->
        (params, new state)) -> the Eval/ metrics."""
        returns, _ = play_episodes(self.envs, self.seeds, self.deterministic_policy(params_fn),
                                   self.to_env, "evaluation env", self.mask_source,
                                   self.gym_id)
        return {"eval_return_mean": float(returns.mean()), "eval_return_std": float(returns.std()),
                "eval_return_min": float(returns.min()), "eval_return_max": float(returns.max())}

    def deterministic_policy(self, params_fn):
        """act(obs, idx, masks) for play_episodes: the mode of the (masked) policy at envs idx."""
        if not self.state_size:
            return lambda obs, idx, masks: self.dist.mode_np(masked_logits(params_fn(obs), masks))
        state = np.zeros((len(self.envs), self.state_size), np.float32)

        def act(obs, idx, masks):
            params, state[idx] = params_fn(obs, state[idx])
            return self.dist.mode_np(masked_logits(params, masks))

        return act

    def close(self):
        """Close the envs and let them go: something may hold the evaluator until the process
        ends (the tf.data generator that samples holds the run), and an ALE game's interface
        still alive then is reported as a leak by ale_py's bindings (pages on stderr)."""
        for env in self.envs:
            env.close()
        self.envs = []
