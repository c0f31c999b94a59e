"""One declaration per setting: its name, default, help, group and check. The frozen Config
(config.py) and the absl flags (launch.py) are both made from these; a method's own settings
are declared in its module under trpo_tf/methods/, the stages' in config.py.

Importing this (and the modules that declare settings) loads no TensorFlow: flags are parsed
and checked before it starts.
"""
import dataclasses
import math

SETTINGS = {}  # name -> Setting, in the order they were declared


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    default: object
    help: str
    group: str                    # --helpfull's heading: the stage or method it configures
    choices: tuple = ()           # the values allowed (enum flags)
    check: object = None          # value -> bool; None: any value of the type
    rule: str = ""                # what `check` requires, for the error message ("> 0")
    kind: type = None             # int | float | bool | str | tuple (comma-separated ints)

    @property
    def flag(self):
        return f"--{self.name}"

    def problem(self, value):
        """None if `value` is allowed, else the one-line message naming the flag."""
        if isinstance(value, float) and not math.isfinite(value):  # inf / nan pass comparisons
            return f"{self.flag} must be a finite number (got {value})"
        if self.choices and value not in self.choices:
            return f"{self.flag} must be one of {'|'.join(self.choices)} (got {value!r})"
        if self.check is not None and not self.check(value):
            return f"{self.flag} must be {self.rule} (got {value})"
        return None


def declare(group, name, default, help, *, choices=(), check=None, rule="", kind=None):
    """Declare a setting once; a second declaration of the same name is a programming error."""
    if name in SETTINGS:
        raise ValueError(f"setting {name!r} is declared twice")
    kind = kind or type(default)
    SETTINGS[name] = Setting(name, default, help, group, tuple(choices), check, rule, kind)
    return SETTINGS[name]


def positive(value):
    return value > 0


def at_least(low):
    return lambda value: value >= low


def between(low, high):
    """A check for [low, high]."""
    return lambda value: low <= value <= high


def in_unit_interval(low_open=True, high_open=False):
    """A check for (0, 1], [0, 1], (0, 1) or [0, 1)."""
    def check(value):
        above = value > 0.0 if low_open else value >= 0.0
        below = value < 1.0 if high_open else value <= 1.0
        return above and below

    return check


def positive_sizes(sizes):
    return sizes is None or all(h >= 1 for h in sizes)
