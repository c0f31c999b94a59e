"""The checks of a run that need no TensorFlow, in one place: run once, before TensorFlow
loads, by the commands (launch, tune), or by the Trainer for a caller of the API; each names
the flag or env at fault in one line (ConfigError / EnvError)."""
from trpo_tf.config import check_recurrent_policy
from trpo_tf.errors import ConfigError

WORKER_MEMORY = 0.7 * 2**30  # what one Ray sampling worker took here (a Python with TensorFlow)
MANY_ENVS = 256  # from this many envs per process on, their memory is measured (check_envs_fit)
PROBE_ENVS = 8   # envs made to measure what one takes


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
    check_envs_fit(spec, cfg.num_envs * (cfg.workers if cfg.workers and not cfg.ray_address
                                         else 1))
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


def check_envs_fit(spec, count):
    """A ConfigError before they are made if `count` envs of `spec` on this machine (--num_envs,
    times the local Ray workers) would take more than 80% of the memory available, measured
    on PROBE_ENVS gymnasium envs when there are MANY_ENVS or more (100,000 MuJoCo envs filled
    23 GiB and the kernel killed the run)."""
    from trpo_tf import envs
    from trpo_tf.sampling import available_memory, resident_memory

    have = available_memory()
    if count < MANY_ENVS or have is None:
        return
    before, probes = resident_memory(), []
    try:
        for _ in range(PROBE_ENVS):
            probes.append(envs.make_env(spec))
        each = max(resident_memory() - before, 0) / PROBE_ENVS
    finally:
        for env in probes:
            env.close()
    if count * each > 0.8 * have:
        raise ConfigError(f"--num_envs: {count:,} envs of {spec.gym_id} need about "
                          f"{count * each / 2**30:.1f} GiB ({each / 2**10:,.0f} KiB each, "
                          f"measured) and {have / 2**30:.1f} GiB are available: use at most "
                          f"{int(0.8 * have / each):,}")


def check_workers_fit(workers):
    """A ConfigError if `workers` local Ray workers need more than 80% of the memory available."""
    from trpo_tf.sampling import available_memory

    have = available_memory()
    if have is not None and workers * WORKER_MEMORY > 0.8 * have:
        raise ConfigError(f"--workers={workers}: each local Ray worker takes about "
                          f"{WORKER_MEMORY / 2**30:.1f} GiB and {have / 2**30:.1f} GiB are "
                          f"available: use at most {max(1, int(0.8 * have / WORKER_MEMORY))}, "
                          "or a cluster (--ray_address)")
