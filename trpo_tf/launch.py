"""python -m trpo_tf.launch --env=Walker [--flagfile=launch/paper/walker.cfg] [--flag=value ...]

absl flags -> one frozen Config -> train(). Flagfiles under launch/ hold the paper's settings.
"""
import dataclasses
import sys

from absl import app, flags

from trpo_tf.cli import StopOnSignal, main_guard, parse_flags, quiet_logging

from trpo_tf.config import ALGOS, Config, ConfigError, validate

D = Config()
flags.DEFINE_enum("algo", D.algo, list(ALGOS), "Section 8.1: trpo; its ablations natural_gradient (fixed step), empirical_fim, max_kl (eq. 12); derivative-free cem, cma; rwr (reward-weighted regression).")
flags.DEFINE_enum("preset", "auto", ["auto", "none"], "auto: if --env names a task with a tuned preset (launch/tuned/<env>.cfg: Cartpole, Swimmer, Hopper, Walker, HalfCheetah), no --flagfile is given and --algo=trpo trains single path, train with it; flags on the command line override it. none: the generic defaults.")
flags.DEFINE_integer("seeds", 1, "Run this many seeds (--seed, --seed+1, ...), each in <logdir>/seed_<s>.")
flags.DEFINE_string("env", D.env, "Short name (Cartpole, Swimmer, Hopper, Walker, HalfCheetah; BeamRider, Breakout, Enduro, Pong, Qbert, Seaquest, SpaceInvaders) or any gymnasium id (ALE/...-v5 included).")
flags.DEFINE_integer("seed", D.seed, "One numpy SeedSequence per run: network init, env resets, action noise, value-fit shuffling, vine and CEM / CMA draws each get their own spawned stream.")
flags.DEFINE_integer("iterations", D.iterations, "Policy iterations (one batch and one update each).")
flags.DEFINE_integer("steps", D.steps, "Environment-step budget: train until this many steps are spent (then --iterations is ignored); 0 = --iterations decides.")
flags.DEFINE_integer("eval_every", D.eval_every, "Evaluation stage every N iterations and after the last: --eval_episodes episodes of the deterministic policy on envs of its own (Eval/ReturnMean|Std|Min|Max); 0 = never.")
flags.DEFINE_integer("eval_episodes", D.eval_episodes, "Episodes per evaluation (reset with the same seeds every time, from the run's own stream).")
flags.DEFINE_integer("batch_steps", D.batch_steps, "Environment steps per iteration (rounded up to a multiple of --num_envs).")
flags.DEFINE_integer("num_envs", D.num_envs, "Environments stepped together with one batched policy call per step.")
flags.DEFINE_enum("env_backend", D.env_backend, ["auto", "envpool", "gymnasium"], "auto: EnvPool where it has the env and is faster, else gymnasium's.")
flags.DEFINE_integer("env_threads", D.env_threads, "EnvPool worker threads; 0 = min(num_envs, CPU cores).")
flags.DEFINE_integer("max_path_length", D.max_path_length, "Truncate paths at this length (bootstrapped, not terminal); 0 = the env's own limit.")
flags.DEFINE_float("gamma", D.gamma, "Discount factor gamma in (0, 1].")
flags.DEFINE_float("gae_lambda", D.gae_lambda, "GAE lambda in [0, 1] (with --advantage=gae).")
flags.DEFINE_enum("advantage", D.advantage, ["q", "baseline", "gae"], "q: the paper's Monte Carlo Q; baseline: Q - V(s); gae: GAE(lambda).")
flags.DEFINE_boolean("normalize_advantages", D.normalize_advantages, "Standardise advantages per batch.")
flags.DEFINE_boolean("normalize_obs", D.normalize_obs, "Running mean/std observation normalisation (inside the exported policy); Atari frames are scaled by 1/255 instead.")
flags.DEFINE_boolean("normalize_rewards", D.normalize_rewards, "Divide rewards by the running std of the discounted return (clipped to +-10) before advantages and value targets; episode returns are reported unscaled.")
flags.DEFINE_float("max_kl", D.max_kl, "delta: bound on the mean KL(pi_old || pi) per update (eq. 13).")
flags.DEFINE_integer("cg_iters", D.cg_iters, "Conjugate-gradient iterations (appendix C: 10).")
flags.DEFINE_float("cg_damping", D.cg_damping, "CG solves (A + damping I) x = g.")
flags.DEFINE_float("fvp_subsample", D.fvp_subsample, "Fraction of the batch used for Fisher-vector products (appendix C: 0.1).")
flags.DEFINE_float("ls_shrink", D.ls_shrink, "Line search: step shrinks by this factor per backtrack.")
flags.DEFINE_integer("ls_max_backtracks", D.ls_max_backtracks, "Line search: steps tried before the update is rejected.")
flags.DEFINE_list("policy_hidden", None, "Policy hidden sizes, e.g. 64,64; empty string = linear; unset = the env's default (Table 2).")
flags.DEFINE_list("value_hidden", list(map(str, D.value_hidden)), "Value network hidden sizes.")
flags.DEFINE_float("init_log_std", D.init_log_std, "Initial log standard deviation of Gaussian policies.")
flags.DEFINE_float("vf_lr", D.vf_lr, "Value function Adam learning rate.")
flags.DEFINE_integer("vf_epochs", D.vf_epochs, "Value function epochs per iteration.")
flags.DEFINE_integer("vf_minibatch", D.vf_minibatch, "Value function minibatch size.")
flags.DEFINE_string("logdir", D.logdir, "TensorBoard events, checkpoints and (by default) the exported policy.")
flags.DEFINE_string("export_dir", D.export_dir, "Where the SavedModel goes; empty = <logdir>/policy.")
flags.DEFINE_integer("export_every", D.export_every, "Also export every N iterations; 0 = only at the end.")
flags.DEFINE_integer("checkpoint_every", D.checkpoint_every, "Checkpoint every N iterations; 0 = never.")
flags.DEFINE_enum("resume", D.resume, ["auto", "never"], "auto: continue from the last checkpoint in --logdir.")
flags.DEFINE_enum("sampler", D.sampler, ["single_path", "vine"], "Section 5: single path, or vine (rollout set + K branches from restored states).")
flags.DEFINE_integer("vine_trunk_paths", D.vine_trunk_paths, "Vine: trunk trajectories per iteration.")
flags.DEFINE_integer("vine_trunk_length", D.vine_trunk_length, "Vine: steps per trunk trajectory (at most).")
flags.DEFINE_integer("vine_states", D.vine_states, "Vine: states in the rollout set (N), drawn along the trunks.")
flags.DEFINE_integer("vine_actions_per_state", D.vine_actions_per_state, "Vine: actions (branches) per state (K).")
flags.DEFINE_integer("vine_rollout_length", D.vine_rollout_length, "Vine: steps per branch rollout.")
flags.DEFINE_enum("vine_proposal", D.vine_proposal, ["policy", "uniform", "all"], "Vine: q, the branch actions' distribution; all = every action (small discrete spaces, eq. 16).")
flags.DEFINE_boolean("vine_crn", D.vine_crn, "Vine: common random numbers across a state's branches.")
flags.DEFINE_integer("vine_kl_states", D.vine_kl_states, "Vine: the mean KL of eq. 13 and the Fisher-vector products average over the trunk states (the old policy's visitation), this many drawn uniformly; 0 = all of them.")
flags.DEFINE_float("npg_step", D.npg_step, "natural_gradient: fixed step theta += npg_step * A^-1 g (the paper swept it by factors of 3: trpo_tf.sweep).")
flags.DEFINE_integer("population", D.population, "cem / cma: candidates per iteration, one episode each.")
flags.DEFINE_float("cem_elite_frac", D.cem_elite_frac, "cem: fraction of the population refitted to.")
flags.DEFINE_float("cem_init_std", D.cem_init_std, "cem: initial std of the parameter search.")
flags.DEFINE_float("cem_extra_noise", D.cem_extra_noise, "cem: variance added after each refit (Szita & Lorincz 2006) ...")
flags.DEFINE_float("cem_noise_decay", D.cem_noise_decay, "cem: ... multiplied by this per iteration.")
flags.DEFINE_float("cma_sigma", D.cma_sigma, "cma: initial step size sigma0.")
flags.DEFINE_float("rwr_temperature", D.rwr_temperature, "rwr: weights exp((Q - max Q) / (T std Q)).")
flags.DEFINE_integer("rwr_epochs", D.rwr_epochs, "rwr: full-batch Adam steps of the weighted maximum-likelihood refit.")
flags.DEFINE_float("rwr_lr", D.rwr_lr, "rwr: Adam learning rate of the refit.")
flags.DEFINE_integer("frame_skip", D.frame_skip, "Atari: emulator frames per action, max-pooled over the last two; 0 = the game's default (4; 3 for SpaceInvaders).")
flags.DEFINE_integer("screen_size", D.screen_size, "Atari: frames are downsampled to this many pixels square (grayscale).")
flags.DEFINE_integer("frame_stack", D.frame_stack, "Atari: the last N frames form one observation.")
flags.DEFINE_float("sticky_actions", D.sticky_actions, "Atari: probability that ALE repeats the previous action (0 as in 2013; ALE v5 defaults to 0.25).")
flags.DEFINE_integer("noop_max", D.noop_max, "Atari: up to this many random no-ops after each reset (0 as in Mnih et al. 2013).")
flags.DEFINE_boolean("terminal_on_life_loss", D.terminal_on_life_loss, "Atari: end episodes when a life is lost (off as in Mnih et al. 2013).")
flags.DEFINE_integer("max_faults", D.max_faults, "Stop after this many iterations in a row skipped for NaN/Inf.")
flags.DEFINE_boolean("quiet", D.quiet, "No per-iteration progress lines.")
FLAGS = flags.FLAGS


def _int_tuple(values, flag):
    try:
        return tuple(int(v) for v in values if v != "")
    except ValueError:
        raise ConfigError(f"--{flag} must be a comma-separated list of positive ints (got {','.join(values)})")


APPLIED_PRESET = {"path": "", "given": set()}  # set by parse_flags_with_preset


def parse_flags_with_preset(argv):
    """parse_flags, then, when --preset=auto, the user named an --env that has a tuned preset,
    gave no --flagfile and trains TRPO single path (what the presets are tuned for), again with
    the preset's flagfile first: the command line's flags come after it, so they override it
    (and --iterations without --steps counts iterations, not the preset's budget).
    APPLIED_PRESET records the preset and the flags the user gave (on the command line or in
    their flagfiles)."""
    from trpo_tf import presets

    APPLIED_PRESET.update(path="", given=set())
    rest = parse_flags(argv)
    given = APPLIED_PRESET["given"] = {name for name in FLAGS if FLAGS[name].present}
    path = (presets.preset_for(FLAGS.env) if FLAGS.preset == "auto" and "env" in given
            and FLAGS.algo == "trpo" and FLAGS.sampler == "single_path"
            and not presets.names_flagfile(argv) else None)
    if not path:
        return rest
    FLAGS.unparse_flags()
    rest = parse_flags([argv[0], f"--flagfile={path}", *argv[1:]])
    if "iterations" in given and "steps" not in given:
        FLAGS.steps = 0
    APPLIED_PRESET["path"] = presets.display_path(path)
    return rest


def config_from_flags(f=FLAGS):
    fields = {field.name for field in dataclasses.fields(Config)} - {"preset_file"}
    values = {name: f[name].value for name in fields}
    values["preset_file"] = APPLIED_PRESET["path"] if f is FLAGS else ""
    values["policy_hidden"] = (None if f.policy_hidden is None
                               else _int_tuple(f.policy_hidden, "policy_hidden"))
    values["value_hidden"] = _int_tuple(f.value_hidden, "value_hidden")
    return validate(Config(**values))


def seed_configs(cfg, seeds):
    """--seeds=N: N configs with seeds cfg.seed, cfg.seed + 1, ... in <logdir>/seed_<s>."""
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1 (got {seeds})")
    if seeds == 1:
        return [cfg]
    return [dataclasses.replace(cfg, seed=cfg.seed + k, logdir=f"{cfg.logdir}/seed_{cfg.seed + k}")
            for k in range(seeds)]


def refuse_extra_arguments(argv):
    """Flags are --name=value: anything else on the command line is one line, exit code 2."""
    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])} (flags are --name=value)",
              file=sys.stderr)
        sys.exit(2)


def check_env(cfg):
    """The env exists and fits --algo / --sampler (before TensorFlow loads): an EnvError if not."""
    from trpo_tf import envs  # gymnasium, MuJoCo, ALE: inside main_guard

    spec = envs.resolve_env(cfg.env, cfg.atari)
    envs.pick_backend(spec, cfg.env_backend)
    envs.check_algo(spec, cfg.algo)
    envs.check_spaces(spec)
    if cfg.sampler == "vine":
        envs.check_restorable(spec)


def main(argv):
    refuse_extra_arguments(argv)
    quiet_logging()

    def run():
        from trpo_tf import outputs

        cfg = config_from_flags()
        runs = seed_configs(cfg, FLAGS.seeds)
        check_env(cfg)
        for run_cfg in runs:
            outputs.prepare(run_cfg.logdir, run_cfg.policy_export_dir)
        from trpo_tf.train import train

        with StopOnSignal(not cfg.quiet) as stop:  # one Ctrl-C stops the whole command, not just this seed
            for run_cfg in runs:
                if stop.signum is not None:
                    break
                if len(runs) > 1:
                    print(f"== seed {run_cfg.seed} -> {run_cfg.logdir}", flush=True)
                train(run_cfg, stop)

    main_guard(run)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags_with_preset)
