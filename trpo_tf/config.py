"""One frozen Config per run, built once at the edge (launch.py); library code never reads
absl FLAGS. validate() checks every value before any environment starts."""
import dataclasses
import math

from trpo_tf.errors import ConfigError

ADVANTAGE_MODES = ("q", "baseline", "gae")
# Section 8.1's methods: TRPO and its ablations share the sampler and the CG machinery;
# CEM / CMA search the parameters directly; RWR refits by weighted maximum likelihood.
ALGOS = ("trpo", "natural_gradient", "empirical_fim", "max_kl", "cem", "cma", "rwr")
DERIVATIVE_FREE = ("cem", "cma")


@dataclasses.dataclass(frozen=True)
class Config:
    algo: str = "trpo"               # one of ALGOS
    env: str = "Cartpole"
    seed: int = 0
    iterations: int = 40
    steps: int = 0                   # env-step budget; > 0: train until it is spent (not --iterations)
    eval_every: int = 10             # evaluation stage every N iterations (and after the last); 0: off
    eval_episodes: int = 5           # deterministic-policy episodes per evaluation, on envs of its own
    batch_steps: int = 2048          # environment steps per iteration
    num_envs: int = 8                # envs stepped together
    env_backend: str = "auto"        # auto | envpool | gymnasium
    env_threads: int = 0             # EnvPool worker threads; 0 = min(num_envs, cores)
    max_path_length: int = 0         # 0: the env's own time limit
    gamma: float = 0.99
    gae_lambda: float = 0.95
    advantage: str = "gae"           # q | baseline | gae
    normalize_advantages: bool = True
    normalize_obs: bool = True
    normalize_rewards: bool = True   # rewards / running std of the discounted return
    max_kl: float = 0.01             # delta
    cg_iters: int = 15
    cg_damping: float = 0.1
    fvp_subsample: float = 1.0       # fraction of the batch used for Fisher-vector products
    ls_shrink: float = 0.8
    ls_max_backtracks: int = 10
    policy_hidden: tuple = None      # None: the env's default (Table 2 for the paper's tasks)
    value_hidden: tuple = (64, 64)
    init_log_std: float = 0.0
    vf_lr: float = 1e-3
    vf_epochs: int = 10
    vf_minibatch: int = 128          # work per sample: a 2K batch gets 16 steps per epoch
    logdir: str = "runs/default"
    export_dir: str = ""             # "" : <logdir>/policy
    export_every: int = 0            # 0: only at the end
    checkpoint_every: int = 1
    resume: str = "auto"             # auto | never
    sampler: str = "single_path"     # single_path | vine (section 5)
    vine_trunk_paths: int = 16       # Table 2: 16 trunk rollouts x 1000 steps
    vine_trunk_length: int = 1000
    vine_states: int = 125           # rollout set size N; Table 2's 500 Q-values = N x K
    vine_actions_per_state: int = 4  # K (Table 2: 4 rollouts per state)
    vine_rollout_length: int = 50    # Table 2: 50 (Swimmer), 100 (Hopper, Walker)
    vine_proposal: str = "policy"    # policy | uniform | all (q of section 5.2)
    vine_crn: bool = True            # common random numbers across a state's K branches
    vine_kl_states: int = 0          # trunk states the KL and FVPs average over; 0: all
    npg_step: float = 0.1            # natural_gradient: theta += npg_step * A^-1 g (fixed)
    population: int = 20             # cem / cma: candidates (one episode each) per iteration
    cem_elite_frac: float = 0.2
    cem_init_std: float = 1.0
    cem_extra_noise: float = 0.1     # added variance, decaying by cem_noise_decay per iteration
    cem_noise_decay: float = 0.9
    cma_sigma: float = 0.5           # CMA-ES initial step size
    rwr_temperature: float = 0.5     # u = exp((Q - max Q) / (T std Q))
    rwr_epochs: int = 50             # full-batch Adam steps of the weighted M-step
    rwr_lr: float = 0.01
    # Atari (section 8.2): gymnasium's AtariPreprocessing + FrameStackObservation
    frame_skip: int = 0              # 0: the game's default (4; 3 for SpaceInvaders, Mnih 2013)
    screen_size: int = 42            # frames are downsampled to screen_size x screen_size
    frame_stack: int = 4             # the last frame_stack frames form one observation
    sticky_actions: float = 0.0      # ALE repeat_action_probability (v5's default is 0.25)
    noop_max: int = 0                # up to this many no-ops after each reset
    terminal_on_life_loss: bool = False
    max_faults: int = 3              # iterations in a row skipped for NaN/Inf before stopping
    quiet: bool = False
    preset_file: str = ""            # the tuned preset this run's flags started from (launch.py)

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
    def policy_export_dir(self):
        return self.export_dir or f"{self.logdir}/policy"


def _check(ok, message):
    if not ok:
        raise ConfigError(message)


def validate(cfg):
    """Raise ConfigError naming the first bad flag; checks values only, not the env."""
    for field in dataclasses.fields(cfg):  # inf / nan pass every comparison below but one
        value = getattr(cfg, field.name)
        _check(not isinstance(value, float) or math.isfinite(value),
               f"--{field.name} must be a finite number (got {value})")
    _check(cfg.algo in ALGOS, f"--algo must be one of {'|'.join(ALGOS)} (got {cfg.algo!r})")
    _check(cfg.algo == "trpo" or cfg.sampler == "single_path",
           f"--algo={cfg.algo} runs on single-path batches; --sampler=vine is TRPO's (--algo=trpo)")
    _check(cfg.algo not in DERIVATIVE_FREE or cfg.env_backend != "envpool",
           f"--algo={cfg.algo} plays one episode per candidate on gymnasium envs: use "
           "--env_backend=gymnasium or auto")
    _check(cfg.npg_step > 0.0, f"--npg_step must be > 0 (got {cfg.npg_step})")
    _check(cfg.population >= 2, f"--population must be >= 2 (got {cfg.population})")
    _check(0.0 < cfg.cem_elite_frac <= 1.0,
           f"--cem_elite_frac must be in (0, 1] (got {cfg.cem_elite_frac})")
    _check(cfg.cem_init_std > 0.0, f"--cem_init_std must be > 0 (got {cfg.cem_init_std})")
    _check(cfg.cem_extra_noise >= 0.0, f"--cem_extra_noise must be >= 0 (got {cfg.cem_extra_noise})")
    _check(0.0 < cfg.cem_noise_decay <= 1.0,
           f"--cem_noise_decay must be in (0, 1] (got {cfg.cem_noise_decay})")
    _check(cfg.cma_sigma > 0.0, f"--cma_sigma must be > 0 (got {cfg.cma_sigma})")
    _check(cfg.rwr_temperature > 0.0, f"--rwr_temperature must be > 0 (got {cfg.rwr_temperature})")
    _check(cfg.rwr_epochs >= 1, f"--rwr_epochs must be >= 1 (got {cfg.rwr_epochs})")
    _check(cfg.rwr_lr > 0.0, f"--rwr_lr must be > 0 (got {cfg.rwr_lr})")
    _check(cfg.seed >= 0, f"--seed must be >= 0: it seeds numpy's SeedSequence (got {cfg.seed})")
    _check(cfg.iterations >= 1, f"--iterations must be >= 1 (got {cfg.iterations})")
    _check(cfg.steps >= 0, f"--steps must be >= 0, 0 meaning --iterations decides (got {cfg.steps})")
    _check(cfg.eval_every >= 0, f"--eval_every must be >= 0, 0 meaning never (got {cfg.eval_every})")
    _check(cfg.eval_episodes >= 1, f"--eval_episodes must be >= 1 (got {cfg.eval_episodes})")
    _check(cfg.num_envs >= 1, f"--num_envs must be >= 1 (got {cfg.num_envs})")
    _check(cfg.env_backend in ("auto", "envpool", "gymnasium"),
           f"--env_backend must be auto|envpool|gymnasium (got {cfg.env_backend!r})")
    _check(cfg.env_threads >= 0, f"--env_threads must be >= 0 (got {cfg.env_threads})")
    _check(cfg.batch_steps >= cfg.num_envs,
           f"--batch_steps must be >= --num_envs={cfg.num_envs} (got {cfg.batch_steps})")
    _check(cfg.max_path_length >= 0,
           f"--max_path_length must be >= 0, 0 meaning the env's limit (got {cfg.max_path_length})")
    _check(0.0 < cfg.gamma <= 1.0, f"--gamma must be in (0, 1] (got {cfg.gamma})")
    _check(0.0 <= cfg.gae_lambda <= 1.0, f"--gae_lambda must be in [0, 1] (got {cfg.gae_lambda})")
    _check(cfg.advantage in ADVANTAGE_MODES,
           f"--advantage must be one of {'|'.join(ADVANTAGE_MODES)} (got {cfg.advantage!r})")
    _check(cfg.max_kl > 0.0, f"--max_kl must be > 0 (got {cfg.max_kl})")
    _check(cfg.cg_iters >= 1, f"--cg_iters must be >= 1 (got {cfg.cg_iters})")
    _check(cfg.cg_damping >= 0.0, f"--cg_damping must be >= 0 (got {cfg.cg_damping})")
    _check(0.0 < cfg.fvp_subsample <= 1.0,
           f"--fvp_subsample must be in (0, 1] (got {cfg.fvp_subsample})")
    _check(0.0 < cfg.ls_shrink < 1.0, f"--ls_shrink must be in (0, 1) (got {cfg.ls_shrink})")
    _check(cfg.ls_max_backtracks >= 1,
           f"--ls_max_backtracks must be >= 1 (got {cfg.ls_max_backtracks})")
    for name in ("policy_hidden", "value_hidden"):
        sizes = getattr(cfg, name)
        _check(sizes is None or all(h >= 1 for h in sizes),
               f"--{name} must be a comma-separated list of positive ints (got {sizes})")
    _check(cfg.vf_lr > 0.0, f"--vf_lr must be > 0 (got {cfg.vf_lr})")
    _check(cfg.vf_epochs >= 0, f"--vf_epochs must be >= 0 (got {cfg.vf_epochs})")
    _check(cfg.vf_minibatch >= 1, f"--vf_minibatch must be >= 1 (got {cfg.vf_minibatch})")
    _check(cfg.export_every >= 0, f"--export_every must be >= 0 (got {cfg.export_every})")
    _check(cfg.checkpoint_every >= 0,
           f"--checkpoint_every must be >= 0, 0 meaning never (got {cfg.checkpoint_every})")
    _check(cfg.resume in ("auto", "never"),
           f"--resume must be auto|never (got {cfg.resume!r})")
    _check(cfg.max_faults >= 1, f"--max_faults must be >= 1 (got {cfg.max_faults})")
    _check(not cfg.max_path_length or cfg.batch_steps >= cfg.max_path_length,
           f"--batch_steps={cfg.batch_steps} is smaller than one path "
           f"(--max_path_length={cfg.max_path_length}); raise it or shorten paths")
    _check(cfg.sampler in ("single_path", "vine"),
           f"--sampler must be single_path|vine (got {cfg.sampler!r})")
    _check(cfg.sampler != "vine" or cfg.env_backend != "envpool",
           "--sampler=vine restores simulator states, which EnvPool cannot: use "
           "--env_backend=gymnasium or auto")
    _check(cfg.vine_kl_states >= 0,
           f"--vine_kl_states must be >= 0, 0 meaning every trunk state (got {cfg.vine_kl_states})")
    for name in ("vine_trunk_paths", "vine_trunk_length", "vine_states", "vine_actions_per_state",
                 "vine_rollout_length"):
        _check(getattr(cfg, name) >= 1, f"--{name} must be >= 1 (got {getattr(cfg, name)})")
    _check(cfg.vine_proposal in ("policy", "uniform", "all"),
           f"--vine_proposal must be policy|uniform|all (got {cfg.vine_proposal!r})")
    _check(cfg.frame_skip >= 0, f"--frame_skip must be >= 0, 0 meaning the game's default (got {cfg.frame_skip})")
    _check(cfg.screen_size >= 16, f"--screen_size must be >= 16 pixels (got {cfg.screen_size})")
    _check(cfg.frame_stack >= 1, f"--frame_stack must be >= 1 (got {cfg.frame_stack})")
    _check(0.0 <= cfg.sticky_actions < 1.0,
           f"--sticky_actions must be a probability in [0, 1) (got {cfg.sticky_actions})")
    _check(cfg.noop_max >= 0, f"--noop_max must be >= 0 (got {cfg.noop_max})")
    _check(bool(cfg.logdir), "--logdir must not be empty")
    return cfg
