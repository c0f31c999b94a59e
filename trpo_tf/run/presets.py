"""Tuned presets: `launch/tuned/<env>.cfg`, applied when --env names a task that has one and
no --flagfile is given (flags on the command line still override it; --preset=none skips it).
The paper's Table 2 settings are in `launch/paper/`, selected with --flagfile."""
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PRESET_DIR = os.path.join(REPO, "launch", "tuned")


def preset_for(env):
    """The tuned preset's path for --env (a short name or the gymnasium id it stands for, as
    resolve_env spells them), or None."""
    from trpo_tf.envs import SHORT_NAMES  # gymnasium: only once flags are parsed

    names = {name: name for name in SHORT_NAMES}
    names.update({spec.gym_id: name for name, spec in SHORT_NAMES.items()})
    name = names.get(env)
    path = name and os.path.join(PRESET_DIR, f"{name.lower()}.cfg")
    return path if path and os.path.isfile(path) else None


def names_flagfile(argv):
    """Whether the command line gives a --flagfile (then no preset applies)."""
    return any(arg.lstrip("-").split("=")[0] == "flagfile" for arg in argv[1:]
               if arg.startswith("-"))


def display_path(path):
    """The preset's path as the header shows it: relative to the working directory if inside it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel
