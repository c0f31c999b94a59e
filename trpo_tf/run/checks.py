"""The checks of a run that need no TensorFlow, in one place: run once, before TensorFlow
loads, by the commands (launch, tune), or by the Trainer for a caller of the API; each names
the flag or env at fault in one line (ConfigError / EnvError)."""
from trpo_tf.config import check_recurrent_policy
from trpo_tf.errors import ConfigError

WORKER_MEMORY = 0.7 * 2**30  # what one Ray sampling worker took here (a Python with TensorFlow)


def check_run(cfg):
    """The env exists, its spaces are ones trpo_tf takes and fit --algo / --sampler (and its
    action masks, --action_masks), its backend is available, a batch fits in memory, and Ray's
    workers fit or their cluster answers -> the env's EnvSpec. The outputs are checked apart
    (outputs.prepare), once per seed's logdir."""
    from trpo_tf import envs, methods  # gymnasium, MuJoCo, ALE: no TensorFlow

    spec = envs.resolve_env(cfg.env, cfg.atari, cfg.make_kwargs)
    envs.pick_backend(spec, cfg.env_backend)
    observation_space, mask_source = envs.check_spaces(spec)
    method = methods.method_for(cfg)
    method.check_env(spec)
    method.check_action_masks(cfg, spec, mask_source)
    check_recurrent_policy(cfg, spec)
    check_batch_fits_in_memory(observation_space, *method.batch_states(cfg))
    if cfg.workers and cfg.ray_address:
        from trpo_tf.run.distributed import check_reachable, find_auto_address

        check_reachable(find_auto_address() if cfg.ray_address == "auto" else cfg.ray_address)
    if cfg.workers and not cfg.ray_address:
        check_workers_fit(cfg.workers)
    return spec


def check_batch_fits_in_memory(obs_space, flag, states):
    """A ConfigError before anything is allocated if a batch's `states` observations (the
    method says how many, and which flag sizes them) would take more than 80% of the memory
    available."""
    from trpo_tf.sampling import available_memory, batch_obs_dtype, observation_memory

    need, have = observation_memory(obs_space, states), available_memory()
    if have is not None and need > 0.8 * have:
        raise ConfigError(
            f"{flag} = {states:,} states of {obs_space.shape} {batch_obs_dtype(obs_space)} "
            f"need about {need / 2**30:.1f} GiB while a batch is built, and "
            f"{have / 2**30:.1f} GiB are available: lower {flag.split(' ')[0]}")


def check_workers_fit(workers):
    """A ConfigError if `workers` local Ray workers need more than 80% of the memory available."""
    from trpo_tf.sampling import available_memory

    have = available_memory()
    if have is not None and workers * WORKER_MEMORY > 0.8 * have:
        raise ConfigError(f"--workers={workers}: each local Ray worker takes about "
                          f"{WORKER_MEMORY / 2**30:.1f} GiB and {have / 2**30:.1f} GiB are "
                          f"available: use at most {max(1, int(0.8 * have / WORKER_MEMORY))}, "
                          "or a cluster (--ray_address)")
