"""One frozen Config per run, built once at the edge (launch.py); library code never reads
absl FLAGS. Every setting is declared once (settings.py): the run's stages here, each method's
in its module under methods/; Config's fields and the absl flags are both made from them.
validate() checks every value before any environment starts."""
import ast
import dataclasses
import math

from trpo_tf import methods
from trpo_tf.errors import ConfigError, EnvError
from trpo_tf.settings import (SETTINGS, at_least, between, declare, in_unit_interval, positive,
                              positive_sizes)

ADVANTAGE_MODES = ("q", "baseline", "gae")
ALGOS = methods.ALGOS

RUN = "5 run: budget, evaluation, outputs"
declare(RUN, "algo", "trpo",
        "Section 8.1: trpo; its ablations natural_gradient (fixed step), empirical_fim, max_kl "
        "(eq. 12); derivative-free cem, cma; rwr (reward-weighted regression); reps (relative "
        "entropy policy search); beyond the paper, ppo (the clipped surrogate of Schulman et al. "
        "2017, on the same batches, advantages and value fit).", choices=ALGOS)
declare(RUN, "env", "Cartpole",
        "Short name (Cartpole, Swimmer, Hopper, Walker, HalfCheetah, Ant, InvertedDoublePendulum, "
        "Reacher; BeamRider, Breakout, Enduro, Pong, Qbert, Seaquest, SpaceInvaders) or any "
        "gymnasium id (ALE/...-v5 included).")
declare(RUN, "seed", 0,
        "One numpy SeedSequence per run: network init, env resets, action noise, value-fit "
        "shuffling, vine and CEM / CMA draws each get their own spawned stream.",
        check=at_least(0), rule=">= 0: it seeds numpy's SeedSequence")
declare(RUN, "iterations", 40, "Policy iterations (one batch and one update each).",
        check=at_least(1), rule=">= 1")
declare(RUN, "steps", 0,
        "Environment-step budget: train until this many steps are spent; 0 = --iterations "
        "decides. Of --steps and --iterations, the one given last counts (flagfiles read in "
        "place).", check=at_least(0),
        rule=">= 0, 0 meaning --iterations decides")
declare(RUN, "eval_every", 10,
        "Evaluation stage every N iterations and after the last: --eval_episodes episodes of the "
        "deterministic policy on envs of its own (Eval/ReturnMean|Std|Min|Max); 0 = never.",
        check=at_least(0), rule=">= 0, 0 meaning never")
declare(RUN, "eval_episodes", 5,
        "Episodes per evaluation (reset with the same seeds every time, from the run's own stream).",
        check=at_least(1), rule=">= 1")
declare(RUN, "logdir", "runs/default",
        "TensorBoard events, checkpoints and (by default) the exported policy.",
        check=bool, rule="a directory, not empty")
declare(RUN, "export_dir", "", "Where the SavedModel goes; empty = <logdir>/policy.")
declare(RUN, "export_every", 0, "Also export every N iterations; 0 = only at the end.",
        check=at_least(0), rule=">= 0")
declare(RUN, "checkpoint_every", 1, "Checkpoint every N iterations; 0 = never.",
        check=at_least(0), rule=">= 0, 0 meaning never")
declare(RUN, "resume", "auto", "auto: continue from the last checkpoint in --logdir.",
        choices=("auto", "never"))
declare(RUN, "max_faults", 3, "Stop after this many iterations in a row skipped for NaN/Inf.",
        check=at_least(1), rule=">= 1")
declare(RUN, "quiet", False, "No per-iteration progress lines.")
declare(RUN, "preset_file", "",
        "Not a flag: the tuned preset this run's flags started from (set by launch.py).")

ENVS = "1 envs: the environment group"
declare(ENVS, "num_envs", 8, "Environments stepped together with one batched policy call per step.",
        check=at_least(1), rule=">= 1")
declare(ENVS, "env_backend", "auto",
        "auto: EnvPool where it has the env and is faster, else gymnasium's.",
        choices=("auto", "envpool", "gymnasium"))
declare(ENVS, "env_threads", 0,
        "EnvPool worker threads; 0 = min(num_envs, the cores this process may use). As many "
        "as those cores: pinned one per core (measured faster: bench/README.md).",
        check=at_least(0), rule=">= 0")
declare(ENVS, "action_masks", "auto",
        "auto: where the env gives action masks (gymnasium's info['action_mask'] or an "
        "action_masks() method; Discrete / MultiDiscrete actions, gymnasium backend), illegal "
        "actions get probability 0 in sampling, the update, evaluation and the export; off: "
        "the masks are ignored.", choices=("auto", "off"))
declare(ENVS, "env_kwargs", "",
        "Keyword arguments of gymnasium.make for --env, name=value[,name=value ...]; values "
        "are numbers, true / false, none or strings (a comma separates arguments, so no value "
        "holds one), e.g. include_cfrc_ext_in_observation=false. Replaces a preset's whole. "
        "Kept in the run record and the export; sampled on gymnasium (EnvPool names its "
        "options otherwise).")
declare(ENVS, "max_path_length", 0,
        "Truncate paths at this length (bootstrapped, not terminal); 0 = the env's own limit.",
        check=at_least(0), rule=">= 0, 0 meaning the env's limit")

# what other flags set in every gymnasium.make: --env_kwargs may not set them (an ALE game's
# own, envs.ATARI_MAKE_KWARGS, are refused for games only)
MAKE_KWARGS_OF_FLAGS = {"max_episode_steps": "--max_path_length", "render_mode": "play",
                        "disable_env_checker": "trpo_tf"}
WORDS = {"true": True, "false": False, "none": None}  # any case
FLOAT_WORDS = ("nan", "inf", "infinity")  # any case and sign: floats, as float() reads them
NOT_WORDS = ("yes", "no", "on", "off", "null")        # read as strings, Python would take them as true


def parse_env_kwargs(text):
    """--env_kwargs -> ((name, value), ...) in name order: numbers (nan and inf among them),
    true / false / none (any case), else the string as written (quotes optional). ValueError naming the item that is not
    name=value, names an argument twice, has no value, a value of another kind or a word that
    would pass for a boolean."""
    pairs = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, eq, raw = (x.strip() for x in item.partition("="))
        if name in pairs:
            raise ValueError(f"{item!r}: {name} is given twice (each name once)")
        if not eq or not name.isidentifier() or not raw:
            raise ValueError(f"{item!r} is not name=value (a comma separates arguments, so no "
                             "value holds one; each name once)")
        if raw.lower() in NOT_WORDS:
            raise ValueError(f"{item!r}: write true, false or none")
        try:
            value = WORDS[raw.lower()] if raw.lower() in WORDS else ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            unsigned = raw.lower()[1:] if raw[:1] in "+-" else raw.lower()
            value = float(raw) if unsigned in FLOAT_WORDS else raw
        if not isinstance(value, (bool, int, float, str, type(None))):
            raise ValueError(f"{item!r}: values are numbers, true / false, none or strings")
        pairs[name] = value
    return tuple(sorted(pairs.items()))


def env_kwargs_problem(text):
    """Why --env_kwargs cannot be used, or None."""
    try:
        pairs = parse_env_kwargs(text)
    except ValueError as err:
        return str(err)
    taken = [name for name, _ in pairs if name in MAKE_KWARGS_OF_FLAGS]
    if taken:
        return f"{taken[0]} is set by {MAKE_KWARGS_OF_FLAGS[taken[0]]}, not --env_kwargs"
    return None


ATARI = ("1 envs: Atari preprocessing (section 8.2; gymnasium's AtariPreprocessing + "
         "FrameStackObservation, or the same in EnvPool's C++ for single path)")
declare(ATARI, "frame_skip", 0,
        "Atari: emulator frames per action, max-pooled over the last two; 0 = the game's default "
        "(4; 3 for SpaceInvaders).", check=at_least(0), rule=">= 0, 0 meaning the game's default")
declare(ATARI, "screen_size", 42,
        "Atari: frames are downsampled to this many pixels square (grayscale).",
        check=at_least(16), rule=">= 16 pixels")
declare(ATARI, "frame_stack", 4, "Atari: the last N frames form one observation.",
        check=at_least(1), rule=">= 1")
declare(ATARI, "sticky_actions", 0.0,
        "Atari: probability that ALE repeats the previous action (0 as in 2013; ALE v5 defaults "
        "to 0.25).", check=in_unit_interval(low_open=False, high_open=True),
        rule="a probability in [0, 1)")
declare(ATARI, "noop_max", 0,
        "Atari: up to this many random no-ops after each reset (0 as in Mnih et al. 2013; "
        "EnvPool plays at least one no-op frame).",
        check=at_least(0), rule=">= 0")
declare(ATARI, "terminal_on_life_loss", False,
        "Atari: end episodes when a life is lost (off as in Mnih et al. 2013; samples on "
        "gymnasium's wrappers).")

SAMPLING = "2 sampling"
declare(SAMPLING, "sampler", "single_path",
        "Section 5: single path, or vine (rollout set + K branches from restored states).",
        choices=methods.SAMPLERS)
declare(SAMPLING, "batch_steps", 2048,
        "Environment steps per iteration (rounded up to a multiple of --num_envs).")
declare(SAMPLING, "workers", 0,
        "Ray workers that sample each iteration, each with --num_envs envs of its own and its "
        "share of the batch; 0 = sample in this process.", check=at_least(0), rule=">= 0")
declare(SAMPLING, "ray_address", "",
        "With --workers: empty = start a local Ray instance on this machine's cores; auto or "
        "host:port = join the cluster started by `ray start --head`.")

PIPELINE = "3 pipeline: advantages, normalisation, models, value fit"
declare(PIPELINE, "gamma", 0.99, "Discount factor gamma in (0, 1].", check=in_unit_interval(),
        rule="in (0, 1]")
declare(PIPELINE, "gae_lambda", 0.95, "GAE lambda in [0, 1] (with --advantage=gae).",
        check=in_unit_interval(low_open=False), rule="in [0, 1]")
declare(PIPELINE, "advantage", "gae",
        "q: the paper's Monte Carlo Q; baseline: Q - V(s); gae: GAE(lambda).",
        choices=ADVANTAGE_MODES)
declare(PIPELINE, "normalize_advantages", True, "Standardise advantages per batch.")
declare(PIPELINE, "normalize_obs", True,
        "Running mean/std observation normalisation (inside the exported policy); Atari frames "
        "are scaled by 1/255 instead.")
declare(PIPELINE, "normalize_rewards", True,
        "Divide rewards by the running std of the discounted return (clipped to +-10) before "
        "advantages and value targets; episode returns are reported unscaled.")
declare(PIPELINE, "policy_hidden", None,
        "Policy hidden sizes, e.g. 64,64; empty string = linear; unset = the env's default "
        "(Table 2).", check=positive_sizes, rule="a comma-separated list of positive ints",
        kind=tuple)
declare(PIPELINE, "policy_rnn", "none",
        "A recurrent policy for partially observed tasks: gru or lstm cell (--policy_rnn_units "
        "wide) between the normalised observations and the --policy_hidden layers, its state "
        "reset at episode starts; none: the feed-forward policy. TRPO single path and its "
        "ablations; vector observations.", choices=("none", "gru", "lstm"))
declare(PIPELINE, "policy_rnn_units", 64, "Width of the --policy_rnn cell.", check=at_least(1),
        rule=">= 1")
declare(PIPELINE, "value_hidden", (64, 64), "Value network hidden sizes.", check=positive_sizes,
        rule="a comma-separated list of positive ints")
declare(PIPELINE, "value_rnn", "none",
        "With --policy_rnn: auto = the value baseline gets its own cell of the policy's kind and "
        "width between the normalised observations and the --value_hidden layers, fitted over "
        "whole sequences; none = an MLP on the observation (as fast, and as good on "
        "bench/pomdp.py). Without --policy_rnn: an MLP.", choices=("auto", "none"))
declare(PIPELINE, "activation", "tanh",
        "Nonlinearity of the hidden layers of the policy and value MLPs (and of the recurrent "
        "nets' layers after the cell); the Atari CNN keeps ReLU (section 8.2).",
        choices=("tanh", "relu", "elu"))
declare(PIPELINE, "orthogonal_init", False,
        "Orthogonal initial kernels for the policy and value MLPs: gain sqrt(2) for the hidden "
        "layers, 0.01 for the policy's output, 1 for the value's (as OpenAI baselines and "
        "SB3 / rl-zoo3 initialise); off: Glorot-uniform hidden kernels and outputs drawn with "
        "std 0.01 / 1.")
declare(PIPELINE, "init_log_std", 0.0, "Initial log standard deviation of Gaussian policies.",
        check=between(-10.0, 10.0), rule="between -10 and 10 (a std of 4.5e-5 to 22,026)")
declare(PIPELINE, "vf_lr", 1e-3, "Value function Adam learning rate.", check=positive, rule="> 0")
declare(PIPELINE, "vf_lr_end", 0.0,
        "The value fit's learning rate at the end of the budget (--steps or --iterations), "
        "reached linearly from --vf_lr; 0 = --vf_lr throughout.", check=at_least(0.0),
        rule=">= 0, 0 meaning no schedule")
declare(PIPELINE, "vf_epochs", 10, "Value function epochs per iteration.", check=at_least(0),
        rule=">= 0")
declare(PIPELINE, "vf_minibatch", 128,
        "Value function minibatch size (work per sample: a 2K batch gets 16 steps per epoch).",
        check=at_least(1), rule=">= 1")
NOT_FLAGS = ("preset_file",)


class _ConfigMethods:
    @property
    def steps_per_env(self):
        return math.ceil(self.batch_steps / self.num_envs)

    @property
    def atari(self):
        """The Atari preprocessing these flags ask for (used only by ALE envs)."""
        from trpo_tf.envs import AtariSettings

        return AtariSettings(self.frame_skip, self.screen_size, self.frame_stack,
                             self.sticky_actions, self.noop_max, self.terminal_on_life_loss)

    @property
    def budget_steps(self):
        """The environment steps the run is planned to take: --steps, else --iterations
        batches of --batch_steps."""
        return self.steps or self.iterations * self.steps_per_env * self.num_envs

    @property
    def make_kwargs(self):
        """--env_kwargs as ((name, value), ...), what gymnasium.make gets beside --env."""
        return parse_env_kwargs(self.env_kwargs)

    def policy_sizes(self, spec):
        """--policy_hidden, or the env's default (Table 2) when it is unset."""
        return self.policy_hidden if self.policy_hidden is not None else spec.policy_hidden

    def policy_settings(self, spec):
        """build_policy's keywords for this run's policy on `spec` (the learner's and each Ray
        worker's copy alike)."""
        return {"policy_hidden": self.policy_sizes(spec), "normalize_obs": self.normalize_obs,
                "init_log_std": self.init_log_std, "rnn": self.policy_rnn,
                "rnn_units": self.policy_rnn_units, "activation": self.activation,
                "orthogonal_init": self.orthogonal_init}

    def value_settings(self):
        """build_value_net's keywords for this run's value baseline."""
        return {"value_hidden": self.value_hidden, "rnn": self.value_cell,
                "rnn_units": self.policy_rnn_units, "activation": self.activation,
                "orthogonal_init": self.orthogonal_init}

    @property
    def value_cell(self):
        """The value baseline's cell: --policy_rnn's under --value_rnn=auto, else none."""
        return self.policy_rnn if self.value_rnn == "auto" else "none"

    @property
    def policy_export_dir(self):
        return self.export_dir or f"{self.logdir}/policy"


Config = dataclasses.make_dataclass(
    "Config", [(s.name, s.kind, dataclasses.field(default=s.default)) for s in SETTINGS.values()],
    bases=(_ConfigMethods,), frozen=True)
Config.__module__ = __name__
Config.__doc__ = "Every setting of a run (settings.py declares them; launch.py fills them from flags)."


def _check(ok, message):
    if not ok:
        raise ConfigError(message)


def validate(cfg):
    """Raise ConfigError naming the first bad flag; checks values only, not the env."""
    for setting in SETTINGS.values():
        problem = setting.problem(getattr(cfg, setting.name))
        _check(problem is None, problem)
    runs_on = methods.samplers_of(cfg.algo)
    _check(cfg.sampler in runs_on,
           f"--algo={cfg.algo} runs on {' or '.join(s.replace('_', '-') for s in runs_on)} batches, "
           f"not --sampler={cfg.sampler}"
           + (f"; --sampler={cfg.sampler} is for --algo={'|'.join(algos)}"
              if (algos := [a for a, s in methods.REGISTRY if s == cfg.sampler]) else ""))
    method = methods.method_for(cfg)
    takers = methods.algos_that("takes_recurrent_policy")
    _check(cfg.policy_rnn == "none" or method.takes_recurrent_policy,
           f"--policy_rnn={cfg.policy_rnn}: --algo={cfg.algo} --sampler={cfg.sampler} trains no "
           f"recurrent policy; use --algo={takers} (single path), or --policy_rnn=none")
    problem = method.validate(cfg)
    _check(problem is None, problem)
    problem = env_kwargs_problem(cfg.env_kwargs)
    _check(problem is None, f"--env_kwargs={cfg.env_kwargs}: {problem}")
    _check(cfg.batch_steps >= cfg.num_envs,
           f"--batch_steps must be >= --num_envs={cfg.num_envs} (got {cfg.batch_steps})")
    _check(not cfg.max_path_length or cfg.batch_steps >= cfg.max_path_length,
           f"--batch_steps={cfg.batch_steps} is smaller than one path "
           f"(--max_path_length={cfg.max_path_length}); raise it or shorten paths")
    return cfg


def check_recurrent_policy(cfg, spec):
    """An EnvError (before TensorFlow loads) if --policy_rnn asks for a recurrent policy on an
    env whose observations it does not take: the stacked frames of Atari games."""
    if cfg.policy_rnn != "none" and spec.atari is not None:
        raise EnvError(f"--policy_rnn={cfg.policy_rnn} takes vector observations, and "
                       f"{spec.gym_id} gives stacked frames: use --policy_rnn=none (the CNN)")
