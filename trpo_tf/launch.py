"""python -m trpo_tf.launch --env=Walker [--flagfile=launch/paper/walker.cfg] [--flag=value ...]

absl flags -> one frozen Config -> train(). Flagfiles under launch/ hold the paper's settings.
"""
import contextlib
import dataclasses
import os
import sys

from absl import app, flags

from trpo_tf import methods
from trpo_tf.cli import StopOnSignal, main_guard, parse_flags, quiet_logging
from trpo_tf.config import NOT_FLAGS, Config, ConfigError, validate
from trpo_tf.settings import SETTINGS


def define_flags(settings):
    """One absl flag per setting (its type, default, choices and help), listed by --helpfull
    under the setting's group and by --help as this command's own."""
    for s in settings:
        define = {bool: flags.DEFINE_boolean, int: flags.DEFINE_integer, float: flags.DEFINE_float,
                  str: flags.DEFINE_enum if s.choices else flags.DEFINE_string,
                  tuple: flags.DEFINE_list}[s.kind]
        default = list(map(str, s.default)) if s.kind is tuple and s.default else s.default
        extra = {"enum_values": list(s.choices)} if s.choices else {}
        define(s.name, default, help=s.help, module_name=f"trpo_tf stage {s.group}", **extra)
        flags.declare_key_flag(s.name)


define_flags(s for s in SETTINGS.values() if s.name not in NOT_FLAGS)
flags.DEFINE_enum("preset", "auto", ["auto", "none"], "auto: if --env names a task with a tuned preset (launch/tuned/<env>.cfg: Cartpole, Swimmer, Hopper, Walker, HalfCheetah, Ant, InvertedDoublePendulum, Reacher), no --flagfile is given and --algo=trpo trains single path, train with it; flags on the command line override it. none: the generic defaults.")
flags.DEFINE_integer("seeds", 1, "Run this many seeds (--seed, --seed+1, ...), each in <logdir>/seed_<s>.")
FLAGS = flags.FLAGS


def _int_tuple(values, flag):
    """An int list flag's values (absl's split of the text; [] for an empty one) as a tuple;
    an empty item (64,,64 or 64,) is refused with the rest of what is not an int."""
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        raise ConfigError(f"--{flag} must be a comma-separated list of positive ints (got {','.join(values)})")


APPLIED_PRESET = {"path": "", "given": set()}  # set by parse_flags_with_preset


def parse_flags_with_preset(argv):
    """parse_flags, then, when --preset=auto, the user named an --env that has a tuned preset,
    gave no --flagfile and trains a method the presets were tuned for (Method.tuned_presets:
    TRPO single path), again with the preset's flagfile first: the command line's flags come
    after it, so they override it. Of --steps and --iterations, the one given last sets the
    budget (--iterations after a flagfile's --steps counts iterations).
    APPLIED_PRESET records the preset and the flags the user gave (on the command line or in
    their flagfiles)."""
    from trpo_tf.run import presets

    with flagfiles_found_from_anywhere():
        return parse_with_preset(argv, presets)


def parse_flags_as_given(argv, algo=None):
    """parse_flags_with_preset without the preset (the sweep's parser: it trains `algo`): the
    project's flagfiles found from any directory, the flags the user gave recorded in
    APPLIED_PRESET (the Atari refusal reads them), the budget's rule and the notes."""
    with flagfiles_found_from_anywhere():
        rest = parse_given(argv)
        settle_budget_and_note_overrides(argv, algo)
    return rest


def parse_given(argv):
    """parse_flags, recording the flags the user gave in APPLIED_PRESET (no preset yet)."""
    APPLIED_PRESET.update(path="", given=set())
    rest = parse_flags(argv)
    APPLIED_PRESET["given"] = {name for name in FLAGS if FLAGS[name].present}
    return rest


def parse_with_preset(argv, presets):
    """parse_flags_with_preset's work, the project's flagfiles found from any directory."""
    rest = parse_given(argv)
    given = APPLIED_PRESET["given"]
    if "preset" in given and FLAGS.preset == "auto" and presets.names_flagfile(argv):
        print("error: --preset=auto applies a tuned preset only without a --flagfile, which "
              "gives the settings itself: drop one of them", file=sys.stderr)
        sys.exit(2)
    method = methods.REGISTRY.get((FLAGS.algo, FLAGS.sampler))  # None: validate says why
    path = (presets.preset_for(FLAGS.env) if FLAGS.preset == "auto" and "env" in given
            and method is not None and method.tuned_presets
            and not presets.names_flagfile(argv) else None)
    if path:
        FLAGS.unparse_flags()
        argv = [argv[0], f"--flagfile={path}", *argv[1:]]
        rest = parse_flags(argv)
        APPLIED_PRESET["path"] = presets.display_path(path)
    settle_budget_and_note_overrides(argv)
    return rest


def settle_budget_and_note_overrides(argv, algo=None):
    """What every parse ends with: of --steps and --iterations the one `argv` gives last sets
    the budget; a flag that a later flagfile sets again, and one typed for another method
    than the one trained (--algo, or `algo` where the command fixes it), are named in notes."""
    if last_budget_flag(argv[1:]) == "iterations":
        FLAGS.steps = 0  # --iterations after a flagfile's (or the preset's) --steps counts
    typed = {flag_name(arg) for arg in argv[1:] if arg.startswith("-")} & APPLIED_PRESET["given"]
    for note in overridden_by_flagfiles(argv[1:]) + unread_method_settings(typed, algo):
        print(f"note: {note}", file=sys.stderr)


def reads(method, name):
    """Whether `method` reads the setting `name` (its groups' settings but those it ignores)."""
    return SETTINGS[name].group in method.setting_groups and name not in method.unread_settings


def method_words(method):
    """How the command line selects `method`: --algo=X, and --sampler=Y where X has several."""
    several = len(methods.samplers_of(method.algo)) > 1
    return f"--algo={method.algo}" + (f" --sampler={method.sampler_name}" if several else "")


def unread_method_settings(typed, algo=None):
    """A note for each flag typed on the command line (`typed`; a flagfile's may be shared by
    several methods, as launch/paper/figure4/*.cfg share their task's) that configures
    another method than the one trained (--algo, or `algo` where the command fixes it, and
    --sampler), e.g. the trust region's size for a method without one: it changes nothing."""
    method = methods.REGISTRY.get((algo or FLAGS.algo, FLAGS.sampler))  # None: validate says why
    notes = []
    for name in sorted(n for n in typed if n in SETTINGS):
        readers = [m for m in methods.METHODS if reads(m, name)]
        if method is None or not readers or reads(method, name):
            continue  # no method's (a stage's) setting, or this method's
        single = [m.algo for m in readers if m.sampler_name == "single_path"]
        words = ([f"--algo={'|'.join(dict.fromkeys(single))}"] if single else []) + [
            method_words(m) for m in readers
            if m.sampler_name != "single_path" and m.algo not in single]
        notes.append(f"--{name} is a setting of {' or '.join(words)}, not of "
                     f"{method_words(method)}: it changes nothing in this run")
    return notes


@contextlib.contextmanager
def flagfiles_found_from_anywhere():
    """While flags are parsed, a flagfile that is not where its (relative) name points from the
    working directory but is one of the project's is read from the repository: the shipped
    flagfiles name each other as launch/..., so they work from any directory (absl's reader,
    wrapped for the parse only)."""
    from trpo_tf.run.presets import REPO

    read = getattr(flags.FlagValues, "_get_flag_file_lines", None)
    if read is None:  # another absl: flagfiles are read from the working directory
        yield
        return

    def found(self, filename, parsed_file_stack=None):
        shipped = os.path.join(REPO, filename or "")
        if filename and not os.path.isabs(filename) and not os.path.exists(filename) \
                and os.path.isfile(shipped):
            filename = shipped
        return read(self, filename, parsed_file_stack)

    flags.FlagValues._get_flag_file_lines = found
    try:
        yield
    finally:
        flags.FlagValues._get_flag_file_lines = read


def flag_name(arg):
    """The flag an argument sets: --name=value, --name, --noname (a boolean's false)."""
    name = arg.lstrip("-").split("=")[0]
    return name[2:] if name.startswith("no") and name not in FLAGS and name[2:] in FLAGS else name


def overridden_by_flagfiles(args):
    """A line for each flag the command line gives before a --flagfile that sets it again, and
    not again after it: absl takes the file's value without a word."""
    args = list(args)
    notes = {}  # flag name -> its note, while the file's value is the one that counts
    given = {}
    for i, arg in enumerate(args):
        if not arg.startswith("-"):
            continue
        if arg.lstrip("-") == "flagfile" and i + 1 < len(args):  # --flagfile PATH
            arg = f"--flagfile={args[i + 1]}"
        if flag_name(arg) != "flagfile":
            given[flag_name(arg)] = arg
            notes.pop(flag_name(arg), None)  # the command line has the last word again
            continue
        try:
            inner = FLAGS.read_flags_from_files([arg], force_gnu=False)
        except flags.Error:  # absl's parse already accepted or refused the file
            continue
        sets = {flag_name(a): a for a in inner if a.startswith("-")}  # the file's last value
        for name in [name for name in given if name in sets]:
            notes[name] = (f"{given.pop(name)} comes before {arg}, which sets {sets[name]}: "
                           "the file's value counts (put flags after the file to override it)")
    return list(notes.values())


def last_budget_flag(args):
    """Which of --steps and --iterations `args` gives last, flagfiles read in place ("steps",
    "iterations" or None): the later one sets the budget, as a later flag overrides an
    earlier one."""
    last = None
    for arg in FLAGS.read_flags_from_files(args, force_gnu=False):
        if arg.startswith("-") and flag_name(arg) in ("steps", "iterations"):
            last = flag_name(arg)
    return last


ATARI_FLAGS = ("frame_skip", "screen_size", "frame_stack", "sticky_actions", "noop_max",
               "terminal_on_life_loss")


def config_from_flags(f=FLAGS):
    fields = {field.name for field in dataclasses.fields(Config)} - set(NOT_FLAGS)
    values = {name: f[name].value for name in fields}
    values["preset_file"] = APPLIED_PRESET["path"] if f is FLAGS else ""
    values["policy_hidden"] = (None if f.policy_hidden is None
                               else _int_tuple(f.policy_hidden, "policy_hidden"))
    values["value_hidden"] = _int_tuple(f.value_hidden, "value_hidden")
    cfg = validate(Config(**values))
    if f is FLAGS:
        refuse_atari_settings_without_a_game(cfg, APPLIED_PRESET["given"])
    return cfg


def refuse_atari_settings_without_a_game(cfg, given):
    """ConfigError if Atari preprocessing flags are given (a flagfile of Atari settings) while
    --env names no Atari game: they would be ignored, and the run train the default env."""
    from trpo_tf import envs

    atari = [name for name in ATARI_FLAGS if name in given]
    if atari and not envs.is_atari(envs.resolve_env(cfg.env).gym_id):
        raise ConfigError(f"--{atari[0]} (Atari preprocessing) is given, but --env={cfg.env!r} "
                          "is no Atari game: name one, e.g. --env=Pong (or "
                          f"--flagfile=launch/paper/atari/<game>.cfg)")


def tool_logdir(tool, env):
    """A tool's runs without --logdir: runs/<tool>_<env> (runs/default is the default training
    run's; a sweep's or a study's runs nested in it)."""
    return f"runs/{tool}_{env.replace('/', '_').replace(':', '_').lower()}"


def seed_configs(cfg, seeds):
    """--seeds=N: N configs with seeds cfg.seed, cfg.seed + 1, ... in <logdir>/seed_<s> (and,
    with --export_dir, exporting to <export_dir>/seed_<s>: one seed's policy never replaces
    another's)."""
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1 (got {seeds})")
    if seeds == 1:
        return [cfg]
    return [dataclasses.replace(
        cfg, seed=cfg.seed + k, logdir=f"{cfg.logdir}/seed_{cfg.seed + k}",
        export_dir=cfg.export_dir and f"{cfg.export_dir}/seed_{cfg.seed + k}")
        for k in range(seeds)]


def refuse_extra_arguments(argv):
    """Flags are --name=value: anything else on the command line is one line, exit code 2."""
    if len(argv) > 1:
        print(f"error: unexpected arguments: {' '.join(argv[1:])} (flags are --name=value)",
              file=sys.stderr)
        sys.exit(2)


def main(argv):
    refuse_extra_arguments(argv)
    quiet_logging()

    def run():
        from trpo_tf.run import outputs
        from trpo_tf.run.checks import check_run

        cfg = config_from_flags()
        runs = seed_configs(cfg, FLAGS.seeds)
        spec = check_run(cfg)  # the seeds differ in nothing it checks
        for run_cfg in runs:
            outputs.prepare(run_cfg.logdir, run_cfg.policy_export_dir)
        # the command holds its logdir and every seed's until it ends, however it ends (an
        # interrupt while TensorFlow loads left the lock file behind)
        with contextlib.ExitStack() as held:
            for directory in dict.fromkeys([cfg.logdir] + [r.logdir for r in runs]):
                held.enter_context(outputs.lock_dir(directory))
            from trpo_tf.run.train import train

            # one Ctrl-C stops the whole command, not just this seed
            with StopOnSignal(not cfg.quiet) as stop:
                for run_cfg in runs:
                    if stop.signum is not None:
                        break
                    if len(runs) > 1:
                        print(f"== seed {run_cfg.seed} -> {run_cfg.logdir}", flush=True)
                    train(run_cfg, stop, spec=spec)

    main_guard(run)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags_with_preset)
