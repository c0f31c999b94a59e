"""Environments: the paper's short names, any gymnasium id, and a group of envs stepped
together with automatic reset (the gymnasium backend of vectorised sampling)."""
import dataclasses
import difflib
import functools
import importlib
import os
import warnings

import ale_py
import gymnasium as gym
import numpy as np

from trpo_tf.envs import simstate
from trpo_tf.errors import EnvError, EnvStepError, first_line

gym.register_envs(ale_py)  # the ALE/...-v5 ids; the wheel ships the ROMs
ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no banner per env


@dataclasses.dataclass(frozen=True)
class AtariSettings:
    """Preprocessing of an ALE game, after Mnih et al. (2013) as section 8.2 did: grayscale,
    downsampled, max over the last two of `frame_skip` repeated frames, `frame_stack` frames
    per observation. The defaults are the paper-faithful ones (README, "Atari")."""
    frame_skip: int = 0              # 0: the game's default (GAME_FRAME_SKIP, else 4)
    screen_size: int = 42
    frame_stack: int = 4
    sticky_actions: float = 0.0      # 2013's ALE had none; ALE v5's default is 0.25
    noop_max: int = 0                # no random no-op starts in 2013
    terminal_on_life_loss: bool = False  # 2013 ended episodes at game over only

    def for_game(self, gym_id):
        """These settings with frame_skip resolved for the game."""
        skip = self.frame_skip or GAME_FRAME_SKIP.get(gym_id, 4)
        return dataclasses.replace(self, frame_skip=skip)


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    name: str                  # what the user typed
    gym_id: str                # the registered gymnasium id, or module:EnvId (gym.make imports it)
    policy_hidden: tuple       # default hidden sizes of the policy; () = linear
    auto_backend: str = "envpool"  # what --env_backend=auto picks when EnvPool has the env
    atari: AtariSettings = None    # set for ALE games: the preprocessing wrappers to apply
    make_kwargs: tuple = ()        # ((name, value), ...): gymnasium.make's for the env (--env_kwargs)


# The paper's locomotion tasks (section 8.1, Table 2). Cart-pole is continuous-action with a
# linear Gaussian policy of 6 parameters (4 weights, 1 bias, 1 log-std): InvertedPendulum-v5
# has exactly that shape. Table 2 gives one hidden layer of 30 (Swimmer) / 50 (Hopper, Walker).
SHORT_NAMES = {
    # InvertedPendulum steps so cheaply that EnvPool's thread hand-off costs more than it
    # saves: bench/sampling.py measured 15.9k steps/s on gymnasium against 12.2k on EnvPool.
    "Cartpole": EnvSpec("Cartpole", "InvertedPendulum-v5", (), auto_backend="gymnasium"),
    "Swimmer": EnvSpec("Swimmer", "Swimmer-v5", (30,)),
    "Hopper": EnvSpec("Hopper", "Hopper-v5", (50,)),
    "Walker": EnvSpec("Walker", "Walker2d-v5", (50,)),
}
DEFAULT_HIDDEN = (64, 64)  # for any other gymnasium id
# Not one of the paper's tasks, but the fourth of the usual TRPO benchmarks (issue 14).
SHORT_NAMES["HalfCheetah"] = EnvSpec("HalfCheetah", "HalfCheetah-v5", DEFAULT_HIDDEN)
SHORT_NAMES["Ant"] = EnvSpec("Ant", "Ant-v5", DEFAULT_HIDDEN)  # issue 25's fifth task
SHORT_NAMES["InvertedDoublePendulum"] = EnvSpec("InvertedDoublePendulum",
                                                "InvertedDoublePendulum-v5", DEFAULT_HIDDEN)
SHORT_NAMES["Reacher"] = EnvSpec("Reacher", "Reacher-v5", DEFAULT_HIDDEN)

# Section 8.2's seven games (Table 1). Their policy is the CNN of policies.py with one
# fully connected layer of 20 units.
ATARI_GAMES = ("BeamRider", "Breakout", "Enduro", "Pong", "Qbert", "Seaquest", "SpaceInvaders")
ATARI_HIDDEN = (20,)
# Mnih et al. (2013) skipped 3 frames in Space Invaders (4 hides its blinking lasers).
GAME_FRAME_SKIP = {"ALE/SpaceInvaders-v5": 3}


GYMNASIUM_API = ("gymnasium's API is reset() -> (obs, info), step() -> (obs, reward, "
                 "terminated, truncated, info)")
NUMBERS = (float, int, np.floating, np.integer, np.bool_)
NOT_RETURNED = object()  # GymnasiumEnvs.step: the env's step raised before returning


def env_raised(err, where):
    """The EnvStepError for an env (`where`: its id and which env) that raised `err`; a
    wrapper's failed unpacking of a 4-value step (the old gym API) says so."""
    hint = (f" (a step() of the old gym API, 4 values? {GYMNASIUM_API})"
            if isinstance(err, ValueError) and "values to unpack (expected 5, got 4)" in str(err)
            else "")
    return EnvStepError(f"{where} raised {type(err).__name__}: {err}{hint}")


def output_problem(out, space, values=(2, 5)):
    """Why `out`, what an env's reset() (2 values) or step() (5) returned, is not gymnasium's
    tuple of one of the lengths `values` with a numeric observation (one numbers can be read
    from: an object array of floats is) and a number as the reward, or None."""
    if (type(out) is tuple and len(out) == 5 and 5 in values and isinstance(out[1], NUMBERS)
            and type(out[0]) is np.ndarray and out[0].dtype.kind in "biuf"):
        return None  # a well-formed step, at once (vine and evaluation check every step)
    if not isinstance(out, (tuple, list)) or len(out) not in values:
        what = f"{len(out)} values" if isinstance(out, (tuple, list)) else type(out).__name__
        return f"returned {what}: {GYMNASIUM_API}"
    dtype = np.asarray(out[0]).dtype
    if dtype.kind not in "biuf" and not readable_as_numbers(out[0]):
        return f"returned an observation of dtype {dtype}; its observation_space is {space}"
    if len(out) == 5 and (np.ndim(out[1]) != 0 or np.asarray(out[1]).dtype.kind not in "biuf"):
        return (f"returned a reward of shape {np.shape(out[1])} and dtype "
                f"{np.asarray(out[1]).dtype}: it must be a number")
    return None


def check_shape(obs, space, where):
    """EnvStepError naming `where` unless `obs` has the shape of the observation `space`."""
    if getattr(obs, "shape", None) != space.shape and np.shape(obs) != space.shape:
        raise EnvStepError(f"{where} returned an observation of shape {np.shape(obs)}; its "
                           f"observation_space is {space}")


def readable_as_numbers(obs):
    """Whether NumPy reads `obs` as float numbers (what the sampler's buffers do with it)."""
    try:
        np.asarray(obs, np.float64)
        return True
    except (TypeError, ValueError):
        return False


def checked(call, env, where, values=2):
    """call() -> env.reset's tuple (values=2) or env.step's (5), or EnvStepError naming
    `where` if it raises, returns something else than gymnasium's tuple (output_problem), or
    an observation of another shape than the env's space."""
    try:
        out = call()
    except Exception as err:  # whatever a simulator or a user's env raises
        raise env_raised(err, where) from err
    problem = output_problem(out, env.observation_space, (values,))
    if problem:
        raise EnvStepError(f"{where} {problem}")
    check_shape(out[0], env.observation_space, where)
    return out


def entry_point(gym_id):
    """The registered entry point of `gym_id` as text ("" if unregistered or a callable)."""
    entry = gym.registry[gym_id].entry_point if gym_id in gym.registry else ""
    return entry if isinstance(entry, str) else ""


def is_atari(gym_id):
    """Is this a registered ALE game (ale_py's entry point)?"""
    return entry_point(gym_id).startswith("ale_py")


def is_mujoco(gym_id):
    """Is this one of gymnasium's MuJoCo envs (rendered through MUJOCO_GL)?"""
    return entry_point(gym_id).startswith("gymnasium.envs.mujoco")


def import_env_module(name):
    """gymnasium's `module:EnvId` form: import the module (which registers EnvId) as
    gymnasium.make would -> EnvId; the spec keeps the whole name, so every process that makes
    the env (play's video child included) imports the module too."""
    module, _, env_id = name.partition(":")
    try:
        importlib.import_module(module)
    except Exception as err:  # the user's module: anything it raises is theirs to fix
        raise EnvError(f"--env={name!r}: importing {module!r} failed ({first_line(err, 300)})") from None
    return env_id


def resolve_env(name, atari=AtariSettings(), make_kwargs=()):
    """A short name, a registered gymnasium id or `module:EnvId` -> EnvSpec (ALE games carry
    `atari`, their preprocessing; any env `make_kwargs`, gymnasium.make's keyword arguments);
    anything else is an EnvError."""
    spec = registered_spec(name, atari)
    taken = [k for k, _ in make_kwargs if k in ATARI_MAKE_KWARGS] if spec.atari else []
    if taken:
        raise EnvError(f"--env_kwargs: {spec.gym_id}'s {taken[0]} is set by "
                       f"{ATARI_MAKE_KWARGS[taken[0]]}")
    return dataclasses.replace(spec, make_kwargs=tuple(make_kwargs)) if make_kwargs else spec


def env_settings(spec):
    """What an export (and play's video child) keeps of an env beside its id, to remake it as
    it trained, JSON-able: the Atari preprocessing's fields and any gymnasium.make arguments
    ("make_kwargs"), or None (settings_spec is the inverse)."""
    settings = {} if spec.atari is None else dataclasses.asdict(spec.atari)
    if spec.make_kwargs:
        settings["make_kwargs"] = [list(pair) for pair in spec.make_kwargs]
    return settings or None


def settings_spec(name, settings, make_kwargs=True):
    """resolve_env of `name` with env_settings' `settings` (None: none); make_kwargs False
    leaves out the gymnasium.make arguments (they are for the env they were recorded with)."""
    settings = dict(settings or {})
    pairs = [tuple(pair) for pair in settings.pop("make_kwargs", [])]
    return resolve_env(name, AtariSettings(**settings), pairs if make_kwargs else ())


# what make_atari_env passes gymnasium.make itself, and the flag that sets it
ATARI_MAKE_KWARGS = {"frameskip": "--frame_skip (the preprocessing skips; ALE steps one frame)",
                     "repeat_action_probability": "--sticky_actions",
                     "obs_type": "the preprocessing (grayscale)"}


def registered_spec(name, atari):
    """resolve_env's EnvSpec of `name`, without keyword arguments."""
    if name in SHORT_NAMES:
        return SHORT_NAMES[name]
    for spec in SHORT_NAMES.values():  # one task, one default: Walker2d-v5 is Walker
        if name == spec.gym_id:
            return dataclasses.replace(spec, name=name)
    if ":" in name:
        env_id = import_env_module(name)
        if env_id not in gym.registry:
            raise EnvError(f"--env={name!r}: importing {name.partition(':')[0]!r} did not "
                           f"register {env_id!r}")
        return EnvSpec(name, name, DEFAULT_HIDDEN, auto_backend="gymnasium")
    gym_id = f"ALE/{name}-v5" if name in ATARI_GAMES else name
    if gym_id in gym.registry:
        if is_atari(gym_id):
            return EnvSpec(name, gym_id, ATARI_HIDDEN, atari=atari.for_game(gym_id))
        return EnvSpec(name, gym_id, DEFAULT_HIDDEN)
    said = gymnasium_error(name)
    if isinstance(said, gym.error.DeprecatedEnv):  # it names the version to use
        raise EnvError(f"--env={name!r}: gymnasium no longer has this version "
                       f"({first_line(said, 200).removeprefix('DeprecatedEnv: ')})")
    raise EnvError(
        f"--env={name!r} is neither a short name ({', '.join((*SHORT_NAMES, *ATARI_GAMES))}) "
        "nor a registered gymnasium id (e.g. HalfCheetah-v5, CartPole-v1, ALE/Pong-v5, or "
        "my_package.envs:MyEnv-v0 to import the module that registers it)"
        + unknown_env_hint(name, said))


def gymnasium_error(name):
    """The error gymnasium gives for an id it has not registered (a retired version, a name
    spelt like one it knows), or None."""
    try:
        gym.spec(name)
    except gym.error.Error as err:
        return err
    return None


def unknown_env_hint(name, said):
    """What may have been meant by an --env that names nothing: a short name spelt alike
    (any case), else gymnasium's own word `said` on the id (a name it knows that is close),
    as "; ..." or ""."""
    short = {n.lower(): n for n in (*SHORT_NAMES, *ATARI_GAMES)}
    close = difflib.get_close_matches(name.lower(), short, n=1, cutoff=0.75)
    if close:
        return f"; did you mean --env={short[close[0]]}?"
    if said is not None and "Did you mean" in first_line(said, 200):
        return f"; gymnasium: {first_line(said, 200)}"
    return ""


FLATTENED = (gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)


def observation_problem(space):
    """Why an MLP cannot take these observations, or None. 1-D Box as it is; Discrete (one-hot),
    MultiDiscrete, MultiBinary, non-image Box of 2+ dims and Dict / Tuple of those are
    flattened into one vector (gymnasium's FlattenObservation)."""
    if isinstance(space, gym.spaces.Box):
        if len(space.shape) == 3 and space.dtype == np.uint8:
            return (f"image observations {space} need a CNN; trpo_tf has the paper's for ALE "
                    "games (e.g. --env=Pong or ALE/Breakout-v5), not for other image envs")
        return None
    if isinstance(space, FLATTENED):
        return None
    if isinstance(space, (gym.spaces.Dict, gym.spaces.Tuple)):
        parts = space.spaces.values() if isinstance(space, gym.spaces.Dict) else space.spaces
        return next(filter(None, map(observation_problem, parts)), None)
    return f"observation space {space} is not supported (Box, Discrete, MultiDiscrete, " \
           "MultiBinary, and Dict / Tuple of them are)"


def action_problem(space):
    """Why trpo_tf has no policy head for this action space, or None."""
    one_dim = len(getattr(space, "shape", None) or ()) == 1
    if isinstance(space, gym.spaces.Discrete) or one_dim and isinstance(
            space, (gym.spaces.Box, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
        return None
    return (f"action space {space} is not supported: trpo_tf's policies act in a 1-D Box "
            "(Gaussian), Discrete (categorical), 1-D MultiDiscrete (one categorical per entry) "
            "or 1-D MultiBinary (one Bernoulli per bit)")


def flattened(env):
    """The env, its observations flattened into one float vector unless they are one already."""
    space = env.observation_space
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return env
    return gym.wrappers.FlattenObservation(env)


def make_env(spec, max_path_length=None, render_mode=None):
    """One gymnasium env whose TimeLimit truncates paths at max_path_length (None: the id's own);
    ALE games come wrapped in their preprocessing (make_atari_env); other observations that are
    not a vector are flattened into one (or refused: observation_problem)."""
    try:
        if spec.atari is not None:
            return make_atari_env(spec.gym_id, spec.atari, max_path_length, render_mode,
                                  spec.make_kwargs)
        kwargs = {"disable_env_checker": True, **dict(spec.make_kwargs)}
        if render_mode:  # only when asked: a user's env need not take the argument
            kwargs["render_mode"] = render_mode
        if max_path_length:
            kwargs["max_episode_steps"] = max_path_length
        env = gym.make(spec.gym_id, **kwargs)
    except Exception as err:  # gymnasium's errors, or whatever a user's env constructor raises
        given = f" with --env_kwargs {dict(spec.make_kwargs)}" if spec.make_kwargs else ""
        raise EnvError(f"--env={spec.name!r}: gymnasium could not make {spec.gym_id}{given} "
                       f"({first_line(err, 300)})") from None
    problem = observation_problem(env.observation_space)
    if problem:
        env.close()
        raise EnvError(f"--env={spec.name!r}: {problem}")
    return flattened(env)


MASKABLE = (gym.spaces.Discrete, gym.spaces.MultiDiscrete)  # the action spaces masks are read for


def mask_source(env, info):
    """Where `env` tells its legal actions, by gymnasium's conventions, seen on a reset's
    `info`: "info" (info["action_mask"]), "method" (an action_masks() method, on the env or
    a wrapper), or None (it gives none, or its actions are not Discrete / MultiDiscrete)."""
    if not isinstance(env.action_space, MASKABLE):
        return None
    if "action_mask" in info:
        return "info"
    try:
        env.get_wrapper_attr("action_masks")
    except AttributeError:
        return None
    return "method"


def mask_size(space):
    """Entries of a mask: one per action (Discrete), the heads' concatenated (MultiDiscrete)."""
    return int(np.sum(space.nvec)) if isinstance(space, gym.spaces.MultiDiscrete) else int(space.n)


def action_mask(env, info, source, where, step):
    """The env's legal actions now (after a reset or step that gave `info`) as bool
    [mask_size]: a MultiDiscrete env's tuple of per-head masks is concatenated. An
    EnvStepError naming `where` and the episode's `step` if the mask is missing, has another
    size, or leaves no legal action (in any part of a MultiDiscrete action)."""
    raw = info.get("action_mask") if source == "info" else env.get_wrapper_attr("action_masks")()
    mask = (np.concatenate([np.ravel(m) for m in raw]) if isinstance(raw, tuple)
            else np.ravel(raw if raw is not None else [])).astype(bool)
    size = mask_size(env.action_space)
    if mask.shape != (size,):
        raise EnvStepError(f"{where} gave an action mask of shape {np.shape(raw)} at step {step} "
                           f"of its episode; {env.action_space} needs {size} entries")
    heads = (np.split(mask, np.cumsum(env.action_space.nvec)[:-1])
             if isinstance(env.action_space, gym.spaces.MultiDiscrete) else [mask])
    if not all(head.any() for head in heads):
        raise EnvStepError(f"{where} gave an action mask with no legal action"
                           + (" for one of its action's parts" if len(heads) > 1 else "")
                           + f" at step {step} of its episode")
    return mask


def check_spaces(spec):
    """An EnvError (one line, before TensorFlow loads) unless trpo_tf can take this env's
    observations (make_env checks them) and act in its action space -> (its observation space,
    where it tells its legal actions: mask_source, None if it does not)."""
    env = make_env(spec)
    source, observation_space = None, env.observation_space
    try:
        problem = action_problem(env.action_space)
        if problem is None:  # its first observation fits the space it declares
            _, info = checked(lambda: env.reset(seed=0), env, spec.gym_id)
            source = mask_source(env, info)
    except EnvStepError as err:
        problem = str(err)
    finally:
        env.close()
    if problem:
        raise EnvError(f"--env={spec.name!r}: {problem}")
    return observation_space, source


EPISODE_LIMIT = 10_000  # steps of an evaluation or play episode in an env with no time limit


def make_bounded_env(spec, max_path_length=None):
    """make_env whose episodes always end (evaluation, play): at max_path_length, else at the
    env's own time limit (ALE's frame limit for games), else after EPISODE_LIMIT steps."""
    env = make_env(spec, max_path_length)
    if max_path_length or spec.atari is not None or (env.spec and env.spec.max_episode_steps):
        return env
    return gym.wrappers.TimeLimit(env, EPISODE_LIMIT)


def make_atari_env(gym_id, settings, max_path_length=None, render_mode=None, make_kwargs=()):
    """ALE with frameskip 1 and grayscale screens (the RGB frame is never fetched), then
    gymnasium's AtariPreprocessing (frame skip with max-pooling of the last two frames,
    no-ops, life loss, resize) and FrameStackObservation: observations are uint8
    [frame_stack, screen_size, screen_size]. max_path_length counts agent steps; make_kwargs:
    ALE's other arguments (mode, difficulty, ...)."""
    env = gym.make(gym_id, frameskip=1, repeat_action_probability=settings.sticky_actions,
                   obs_type="grayscale", disable_env_checker=True, render_mode=render_mode,
                   **dict(make_kwargs))
    env = gym.wrappers.AtariPreprocessing(
        env, noop_max=settings.noop_max, frame_skip=settings.frame_skip,
        screen_size=settings.screen_size, terminal_on_life_loss=settings.terminal_on_life_loss)
    env = gym.wrappers.FrameStackObservation(env, settings.frame_stack)
    if max_path_length:
        env = gym.wrappers.TimeLimit(env, max_path_length)
    return env


class GymnasiumEnvs:
    """n gymnasium envs stepped in lock-step with NumPy arrays in and out; done envs reset
    themselves in the same step (any registered id; the backend vine needs).

    step() returns the observation to act on next (after any reset) and, for envs whose path
    ended this step, the true final observation (needed to bootstrap a truncated path).
    With `action_masks`, envs that give masks (mask_source: probed with one reset of env 0 at
    construction) leave the legal actions of the observation to act on next in
    `.action_masks` (bool [num_envs, mask_size]) after every reset and step; else
    `.mask_source` is None.
    """

    autoreset_next_step = False

    def __init__(self, spec, num_envs, seed, max_path_length=None, num_threads=0,
                 action_masks=False):
        del num_threads  # one Python thread steps them all
        self.envs = [make_env(spec, max_path_length) for _ in range(num_envs)]
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self.num_envs = num_envs
        self.reset_seeds = [seed + i for i in range(num_envs)]  # env i's first reset
        self.gym_id = spec.gym_id
        self.where = [f"{spec.gym_id} env {i} of {num_envs}" for i in range(num_envs)]  # in errors
        self._reset_once = [False] * num_envs
        self._actions = None  # send()'s, for recv()
        self.mask_source = self.action_masks = None
        if action_masks and isinstance(self.action_space, MASKABLE):
            env = self.envs[0]
            self.mask_source = mask_source(
                env, checked(lambda: env.reset(seed=self.reset_seeds[0]), env, self.where[0])[1])
        self._episode_steps = np.zeros(num_envs, np.int64)  # in mask errors

    def reset(self):
        self._reset_once = [True] * self.num_envs
        outs = [checked(lambda: env.reset(seed=s), env, self.where[i])
                for i, (s, env) in enumerate(zip(self.reset_seeds, self.envs))]
        if self.mask_source:
            self._episode_steps[:] = 0
            self.action_masks = np.stack([self.read_mask(i, info) for i, (_, info) in enumerate(outs)])
        return np.stack([o for o, _ in outs])

    def read_mask(self, i, info):
        """Env i's legal actions after the reset or step that gave `info`."""
        return action_mask(self.envs[i], info, self.mask_source, self.where[i],
                           self._episode_steps[i])

    def send(self, actions):
        """The next step's actions (kept, not copied: the sampler does not change them);
        recv() takes the step (one thread: nothing overlaps)."""
        self._actions = actions

    def recv(self):
        return self.step(self._actions)

    def step(self, actions):
        n = self.num_envs
        obs = np.empty((n,) + self.observation_space.shape, self.observation_space.dtype)
        rew, term, trunc = np.empty(n), np.empty(n, bool), np.empty(n, bool)
        final_obs = {}
        space, shape = self.observation_space, self.observation_space.shape
        self._episode_steps += 1
        for i, (env, action) in enumerate(zip(self.envs, actions)):  # the hot loop: inline
            out = NOT_RETURNED
            try:
                out = env.step(action)
                o, rew[i], term[i], trunc[i], info = out
                if term[i] or trunc[i]:
                    check_shape(o, space, self.where[i])
                    final_obs[i] = o
                    o, info = env.reset()
                    self._episode_steps[i] = 0
                if self.mask_source:
                    self.action_masks[i] = self.read_mask(i, info)
            except EnvStepError:
                raise
            except Exception as err:  # whatever a simulator or a user's env raises, or what
                problem = out is not NOT_RETURNED and output_problem(out, space, (5,))
                raise (EnvStepError(f"{self.where[i]} {problem}") if problem
                       else env_raised(err, self.where[i])) from err
            if type(o) is not np.ndarray or o.shape != shape:  # ~0.1 us for an array that fits
                check_shape(o, space, self.where[i])
            try:
                obs[i] = o
            except (TypeError, ValueError) as err:  # strings, objects: the env's reset's too
                raise EnvStepError(f"{self.where[i]} {output_problem((o, {}), space)}") from err
        return obs, rew, term, trunc, final_obs

    def snapshot(self):
        return [self.snapshot_one(i) for i in range(self.num_envs)]

    def restore(self, snapshots):
        for i, snap in enumerate(snapshots):
            self.restore_one(i, snap)

    def snapshot_one(self, i):
        return simstate.snapshot(self.envs[i])

    def restore_one(self, i, snap):
        if not self._reset_once[i]:  # wrappers (OrderEnforcing) must have seen a reset; the
            self.envs[i].reset()     # state overrides it (once: an ALE reset costs ~8 ms)
            self._reset_once[i] = True
        simstate.restore(self.envs[i], snap)

    def close(self):
        for env in self.envs:
            env.close()


ALE_FRAME_LIMIT = 108_000  # emulator frames per episode of ALE's v5 games (then truncated)


def envpool_id(spec):
    """The id EnvPool knows the env by (ALE/Pong-v5 is its Pong-v5)."""
    return spec.gym_id.partition("/")[2] if spec.atari is not None else spec.gym_id


def envpool_atari_options(settings, max_path_length=None):
    """EnvPool's Atari options that give make_atari_env's observations, rewards and ends
    (frames compared in tests/test_atari.py): grayscale screens max-pooled over the last two
    of frame_skip frames, resized by area, frame_stack of them, unclipped rewards, no fire on
    reset, truncation at ALE's frame limit or max_path_length agent steps. Two differences:
    EnvPool plays at least one no-op frame at every reset (noop_max 0 acts as 1: one frame,
    1/60 s of game time, at each start), and when a game ends inside a skip its final
    observation holds the last frame, not the max of two (a terminal observation is never
    bootstrapped). Life-loss episodes are not offered: EnvPool's go on with the game after the
    reset, gymnasium's restart it (envpool_refusal)."""
    limit = ALE_FRAME_LIMIT // settings.frame_skip
    return dict(img_height=settings.screen_size, img_width=settings.screen_size,
                stack_num=settings.frame_stack, frame_skip=settings.frame_skip, gray_scale=True,
                noop_max=max(1, settings.noop_max), use_fire_reset=False, episodic_life=False,
                reward_clip=False, repeat_action_probability=settings.sticky_actions,
                use_inter_area_resize=True, max_episode_steps=min(max_path_length or limit, limit))


def envpool_refusal(spec):
    """Why EnvPool cannot sample `spec` as gymnasium does (then auto picks gymnasium and
    --env_backend=envpool is refused), or None."""
    if spec.atari is not None and spec.atari.terminal_on_life_loss:
        return ("--env_backend=envpool cannot take --terminal_on_life_loss: EnvPool's episodes "
                "go on with the same game after a lost life, gymnasium's restart it; use "
                "--env_backend=gymnasium or auto")
    if spec.make_kwargs:
        return ("--env_backend=envpool cannot take --env_kwargs (gymnasium.make's arguments, "
                "given or from the env's preset; EnvPool names its options otherwise): use "
                "--env_backend=gymnasium or auto, or --env_kwargs= to drop them")
    differences = None if spec.atari is not None else envpool_space_differences(spec)
    if differences:
        return (f"--env_backend=envpool: EnvPool's {spec.gym_id} has other spaces than "
                f"gymnasium's, on which trpo_tf evaluates and plays ({differences}); use "
                "--env_backend=gymnasium or auto")
    return None


def space_signature(space):
    """What a policy built for `space` depends on: its kind, shape, sizes (Discrete's n and
    start, MultiDiscrete's nvec and start); the same for gymnasium's spaces and EnvPool's,
    whatever their dtypes and bounds."""
    return (type(space).__name__, tuple(space.shape or ()), getattr(space, "n", None),
            *(tuple(np.ravel(getattr(space, name, ())).tolist()) for name in ("start", "nvec")))


@functools.lru_cache(maxsize=None)
def envpool_space_differences(spec):
    """How EnvPool's env of `spec` (not an ALE game: envpool_atari_options) differs in its
    observation or action space from the gymnasium env trpo_tf makes of it (make_env: its
    observations flattened), as words, or None. FrozenLake's observations are an integer in
    EnvPool and one-hot in gymnasium once flattened; Blackjack's, 3 integers against 45
    one-hot entries. Asked once per process: it makes one gymnasium env."""
    import envpool

    with warnings.catch_warnings():  # EnvPool's float64 bounds -> gymnasium float32 Box
        warnings.simplefilter("ignore", UserWarning)
        pool_spec = envpool.make_spec(envpool_id(spec))
        theirs = pool_spec.observation_space, pool_spec.action_space
    env = make_env(spec)
    ours = env.observation_space, env.action_space
    env.close()
    return "; ".join(f"{what} {a} against {b}" for what, a, b in zip(
        ("observations", "actions"), theirs, ours)
        if space_signature(a) != space_signature(b)) or None


class EnvPoolEnvs:
    """The same interface over EnvPool (C++ threads). EnvPool resets a done env on its *next*
    step, ignoring that step's action and returning the first observation of the new episode
    with reward 0: `autoreset_next_step` tells the sampler to drop those rows (resetting at
    once instead would cost a second round trip to the threads on every step with an end).
    ALE games get make_atari_env's preprocessing in EnvPool's C++ (envpool_atari_options)."""

    autoreset_next_step = True
    mask_source = action_masks = None  # EnvPool's envs give no action masks

    def __init__(self, spec, num_envs, seed, max_path_length=None, num_threads=0,
                 action_masks=False):
        del action_masks
        import envpool

        threads = num_threads or min(num_envs, len(allowed_cores()) or os.cpu_count() or 1)
        kwargs = {"env_type": "gymnasium", "num_envs": num_envs, "batch_size": num_envs,
                  "seed": seed, "num_threads": threads,
                  "thread_affinity_offset": pinned_cores_offset(threads)}
        if spec.atari is not None:
            kwargs.update(envpool_atari_options(spec.atari, max_path_length))
        elif max_path_length:
            kwargs["max_episode_steps"] = max_path_length
        with warnings.catch_warnings():  # EnvPool's float64 bounds -> gymnasium float32 Box
            warnings.simplefilter("ignore", UserWarning)
            self.pool = envpool.make(envpool_id(spec), **kwargs)
            self.observation_space = self.pool.observation_space
            self.action_space = self.pool.action_space
        self.num_envs = num_envs
        self.reset_seeds = [seed + i for i in range(num_envs)]  # EnvPool seeds env i with seed + i

    def reset(self):
        obs, info = self.pool.reset()
        return _by_env_id(obs, info)

    def send(self, actions):
        """Start a step of every env (EnvPool's threads simulate while the caller goes on)."""
        self.pool.send(actions)

    def step(self, actions):
        self.send(actions)
        return self.recv()

    def recv(self):
        """Wait for the step `send` started: (obs, rew, term, trunc, {env: final obs})."""
        obs, rew, term, trunc, info = self.pool.recv()
        order = np.argsort(info["env_id"])
        obs, rew, term, trunc = obs[order], rew[order], term[order], trunc[order]
        final_obs = {i: obs[i] for i in np.flatnonzero(term | trunc)}
        return obs, rew, term, trunc, final_obs

    def snapshot(self):
        raise simstate.NotRestorable("EnvPool cannot save its envs' state")

    def close(self):
        self.pool.close()


def allowed_cores():
    """The cores this process may run on (taskset, a container's cpuset), sorted; [] where the
    OS does not say."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def pinned_cores_offset(threads):
    """EnvPool's thread_affinity_offset: its `threads` workers pinned one per core (worker i
    on core offset + i) when they are as many as the cores this process may run on and those
    are numbered contiguously, else -1 (the OS places them). Unpinned, a worker that waits for
    the next actions longer than a few tens of microseconds (the policy's turn) is woken late
    or on a busy core, and the simulators ran ~1.5x slower inside the sampler than stepped back
    to back (bench/README.md); pinned, each process's workers cover every core it may use,
    so processes side by side load the cores as they would unpinned."""
    allowed = allowed_cores()
    if allowed and allowed == list(range(allowed[0], allowed[0] + threads)) \
            and allowed[-1] < (os.cpu_count() or 0):  # EnvPool takes core numbers mod its count
        return allowed[0]
    return -1


def _by_env_id(obs, info):
    return obs[np.argsort(info["env_id"])]


@functools.lru_cache(maxsize=None)
def envpool_ids():
    """Env ids EnvPool can make here (empty if EnvPool is not installed); asked once per
    process (~0.3 s)."""
    try:
        import envpool
    except ImportError:
        return frozenset()
    return frozenset(envpool.list_all_envs())


BACKENDS = {"gymnasium": GymnasiumEnvs, "envpool": EnvPoolEnvs}


def pick_backend(spec, backend):
    """--env_backend: auto = the spec's auto_backend (EnvPool unless measured slower) where
    EnvPool has the env and can sample it as gymnasium does (envpool_refusal), gymnasium
    otherwise."""
    if backend != "auto" and backend not in BACKENDS:
        raise EnvError(f"--env_backend must be auto|{'|'.join(BACKENDS)} (got {backend!r})")
    if backend == "auto":
        return ("envpool" if spec.auto_backend == "envpool" and envpool_id(spec) in envpool_ids()
                and envpool_refusal(spec) is None else "gymnasium")
    if backend == "envpool" and envpool_id(spec) not in envpool_ids():
        raise EnvError(f"--env_backend=envpool: EnvPool is not installed or has no {spec.gym_id}; "
                       "use --env_backend=gymnasium or auto")
    refusal = envpool_refusal(spec) if backend == "envpool" else None
    if refusal:
        raise EnvError(refusal)
    return backend


def check_restorable(spec):
    """Vine needs to snapshot and restore the simulator: an EnvError if this env cannot."""
    env = make_env(spec)
    try:
        env.reset(seed=0)
        simstate.snapshot(env)
    except simstate.NotRestorable as err:
        raise EnvError(f"--sampler=vine needs a simulator whose state can be restored; {spec.gym_id} "
                       f"cannot ({err}); --sampler=single_path works with it") from None
    finally:
        env.close()


def make_env_group(spec, backend, num_envs, seed, max_path_length=None, num_threads=0,
                   action_masks=False):
    """num_envs envs of `spec` behind the backend's common interface; with `action_masks`,
    reading the legal actions of envs that give them (GymnasiumEnvs)."""
    return BACKENDS[pick_backend(spec, backend)](spec, num_envs, seed, max_path_length,
                                                 num_threads, action_masks)
