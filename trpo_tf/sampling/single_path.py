"""Single path sampling (section 5.1): run the current policy in n envs at once.

A batch is `steps_per_env` steps of each env, laid out env-major: each env's steps are
contiguous, split into path segments. (A backend that resets on the step after an end, as
EnvPool does, spends that step on the reset: its row is dropped, so such an env contributes
one row fewer per episode.) A segment ends when the env terminates, when its
TimeLimit truncates it, or at the batch cut; the cut path goes on in the next batch, and its
segment here is bootstrapped from V(next state) like a truncation, never treated as terminal.

Batch fields (N = num_envs * steps_per_env, P = number of segment ends):
  obs [N, *obs_shape]  act [N, act_dim] or [N]  rew [N]
  terminal [N]  1.0 where the env terminated after this step (no bootstrap)
  path_end [N]  1.0 on the last step of each segment (terminal, truncated or cut)
  path_start [N]  1.0 on the first step of each episode (its observation came from a reset)
  action_mask [N, K]  bool, the legal actions at each step, K = the logits' size (only where
                 the envs give masks: envs.mask_source); the policy acted with them
  end_obs [P, *obs_shape]  the state after each segment end, in order, to bootstrap from
  episode_return [M], episode_length [M]  episodes completed during this batch
  rnn_state [E, S], env_rows [E]  (recurrent policies, state_size S > 0) the policy's state
                 each env's rows of this batch began with (before the first row's reset) and
                 how many rows each env has: the batch's sequences (policies.Sequences), along
                 which the update recomputes the states; path_start resets them
  value_state [E, Sv]  (a recurrent value baseline, value_state_size Sv > 0) its state each
                 env's rows began with, carried and reset like the policy's
  discounted_return [N]  sum_k gamma^k r_{t-k} back to the episode's start, carried across
                 batches and reset at every episode end (the statistic reward scaling divides
                 by, as in Engstrom et al. 2020 / SB3's VecNormalize)
  sim_steps  the transitions in the batch (N)
  time_policy, time_env  seconds of this batch spent acting and inside the simulators
"""
import time

import numpy as np

from trpo_tf.distributions import masked_logits
from trpo_tf.envs import simstate
from trpo_tf.policies import numpy_cell_fn, reset_at_starts
from trpo_tf.sampling import batch_obs_dtype, env_action_fn, episode_fields


class SinglePathSampler:
    state_needs_same_envs = True  # its state is the envs' (a resume with other envs drops it)

    def __init__(self, envs, dist, steps_per_env, seed, gamma=0.99, state_size=0,
                 value_state_size=0):
        self.envs = envs
        self.dist = dist
        self.steps_per_env = steps_per_env
        self.gamma = gamma
        self.rng = np.random.default_rng(seed)
        self._env_action = env_action_fn(envs.action_space, dist)
        self._obs = None
        self._ep_return = np.zeros(envs.num_envs)
        self._ep_length = np.zeros(envs.num_envs, np.int64)
        self._disc_return = np.zeros(envs.num_envs)
        self._resetting = np.zeros(envs.num_envs, bool)  # next step only resets (EnvPool)
        self._starting = np.ones(envs.num_envs, bool)  # the next valid row is an episode's first
        # a recurrent policy's state per env (None: a feed-forward policy)
        self._rnn_state = np.zeros((envs.num_envs, state_size), np.float32) if state_size else None
        # a recurrent value baseline's state per env (None: a feed-forward one)
        self._value_state = (np.zeros((envs.num_envs, value_state_size), np.float32)
                             if value_state_size else None)
        self.batches_produced = 0
        self.progress = 0  # steps of the batch in the making (a terminal's heartbeat shows it)

    def sample(self, params_fn, value_step=None):
        """One batch with the policy `params_fn`: NumPy obs [E, ...] -> params [E, P]; for a
        recurrent policy (obs, state [E, S]) -> (params, new state), one call for all envs.
        A recurrent value baseline's state moves on by `value_step` (obs, state [E, Sv]) ->
        new state, one call for all envs.

        Step t's actions go to the envs (send) before step t - 1's results are written into
        the batch, so that bookkeeping runs while a threaded backend (EnvPool) simulates;
        only what the next action needs (which rows start an episode) is settled at once."""
        if self._obs is None:
            self._obs = self.envs.reset()
        T, E = self.steps_per_env, self.envs.num_envs
        obs_space = self.envs.observation_space
        b = BatchBuffers(T, E, obs_space, self.dist.param_dim if self.envs.mask_source else 0)
        time_policy = time_env = 0.0
        start_state = None if self._rnn_state is None else self._rnn_state.copy()
        value_start = None if self._value_state is None else self._value_state.copy()
        received = None  # step t - 1's results, recorded while the simulators take step t
        for t in range(T):
            tic = time.perf_counter()
            try:
                env_actions = self.act(b, t, params_fn, value_step)
                toc = time.perf_counter()
                self.envs.send(env_actions)
                tac = time.perf_counter()
            finally:  # also where the policy or an env raised: step t - 1 stays recorded
                if received is not None:
                    self.record_step(b, t - 1, *received)
            tec = time.perf_counter()
            self._obs, rew, term, trunc, final_obs = self.envs.recv()
            time_env += tac - toc + time.perf_counter() - tec
            time_policy += toc - tic
            self.mark_starts(b, t, term | trunc, final_obs)
            received = rew, term, final_obs
        self.record_step(b, T - 1, *received)
        for i in range(E):  # the batch cut: bootstrap from the state the env is in now
            last = T - 1 if b.valid[T - 1, i] else T - 2  # a reset row follows an end
            if not b.end[last, i]:
                b.end[last, i] = 1.0
                b.end_obs[i * T + last] = self._obs[i]
        self.batches_produced += 1
        valid = None if b.valid.all() else _env_major(b.valid)
        return {
            "obs": _env_major(b.obs, valid),
            "act": _env_major(b.act, valid),
            "rew": _env_major(b.rew, valid),
            "discounted_return": _env_major(b.disc, valid),
            "terminal": _env_major(b.term, valid),
            "path_end": _env_major(b.end, valid),
            "path_start": _env_major(b.start, valid),
            **({} if b.mask is None else {"action_mask": _env_major(b.mask, valid)}),
            **({} if start_state is None else {"rnn_state": start_state,
                                               "env_rows": b.valid.sum(0).astype(np.int32)}),
            **({} if value_start is None else {"value_state": value_start}),
            "end_obs": np.stack([b.end_obs[k] for k in sorted(b.end_obs)]).astype(b.obs.dtype),
            **episode_fields(b.episodes),
            "sim_steps": np.float32(b.valid.sum()),
            "time_policy": np.float32(time_policy),
            "time_env": np.float32(time_env),
        }

    def act(self, b, t, params_fn, value_step):
        """Step t's actions from the observations the envs are in (into `b`) -> what the
        envs are given."""
        b.obs[t] = self._obs
        params = (params_fn(b.obs[t]) if self._rnn_state is None
                  else self.recurrent_step(params_fn, b.obs[t]))
        if self._value_state is not None:
            self.value_cell_step(value_step, b.obs[t])
        if b.mask is not None:
            b.mask[t] = self.envs.action_masks
            params = masked_logits(params, b.mask[t])
        actions = self.dist.sample_np(params, self.rng)
        if b.act is None:
            b.act = np.empty((b.T,) + actions.shape, actions.dtype)
        b.act[t] = actions
        return self._env_action(actions)

    def mark_starts(self, b, t, ended, final_obs):
        """Which of step t's rows are real (not EnvPool's reset step) and start an episode,
        and which envs start one next: what the next action (a recurrent policy's reset)
        needs before the rest of step t is recorded."""
        b.valid[t] = ~self._resetting
        b.start[t] = self._starting & b.valid[t]
        self._starting &= ~b.valid[t]
        if self.envs.autoreset_next_step:
            self._resetting = ended
        for i in final_obs:
            self._starting[i] = True

    def record_step(self, b, t, rew, term, final_obs):
        """Step t's rewards, ends and episode statistics into the batch `b`."""
        b.rew[t] = rew
        b.term[t] = term
        self._ep_return += rew
        self._disc_return = self.gamma * self._disc_return + rew
        b.disc[t] = self._disc_return
        # a non-finite reward skips this batch's iteration (the fault check sees it here);
        # the carry starts afresh, or it would poison every batch to the episode's end
        self._disc_return[~np.isfinite(self._disc_return)] = 0.0
        self._ep_length += b.valid[t]
        self.progress = (t + 1) * len(rew)
        for i, o in final_obs.items():
            b.end[t, i] = 1.0
            b.end_obs[i * b.T + t] = o
            if np.isfinite(self._ep_return[i]):  # a NaN / Inf reward's episode has no return
                b.episodes.append((self._ep_return[i], self._ep_length[i]))
            self._ep_return[i], self._ep_length[i], self._disc_return[i] = 0.0, 0, 0.0

    def recurrent_step(self, step_fn, obs):
        """The recurrent policy's parameters for every env, its state moved on by one step
        (first reset where an episode starts: the update's unroll does the same)."""
        params, self._rnn_state = step_fn(obs, reset_at_starts(self._rnn_state, self._starting))
        return params

    def value_cell_step(self, step_fn, obs):
        """The recurrent value baseline's state of every env moved on by one step (reset first
        where an episode starts), as recurrent_step moves the policy's."""
        self._value_state = step_fn(obs, reset_at_starts(self._value_state, self._starting))

    def state(self):
        """Everything needed to go on sampling exactly where this sampler is, or None where
        the envs cannot be snapshotted (EnvPool, non-MuJoCo envs)."""
        try:
            envs = self.envs.snapshot()
        except simstate.NotRestorable:
            return None
        masks = self.envs.action_masks
        return {"envs": envs, "obs": self._obs,
                "action_masks": None if masks is None else masks.copy(),
                "ep_return": self._ep_return.copy(),
                "ep_length": self._ep_length.copy(), "resetting": self._resetting.copy(),
                "disc_return": self._disc_return.copy(), "starting": self._starting.copy(),
                "rng": self.rng.bit_generator.state,
                **({} if self._rnn_state is None else {"rnn_state": self._rnn_state.copy()}),
                **({} if self._value_state is None
                   else {"value_state": self._value_state.copy()})}

    def load_state(self, state):
        self.envs.restore(state["envs"])
        self._obs, self._ep_return, self._ep_length = state["obs"], state["ep_return"], state["ep_length"]
        self.envs.action_masks = state.get("action_masks")  # older checkpoints: none
        self._resetting = state["resetting"]
        self._disc_return = state.get("disc_return", np.zeros(self.envs.num_envs))  # older checkpoints
        self.rng.bit_generator.state = state["rng"]
        self._starting = state.get("starting", np.zeros(self.envs.num_envs, bool))  # older ones
        if self._rnn_state is not None:
            self._rnn_state = state["rnn_state"]
        if self._value_state is not None:
            self._value_state = state["value_state"]


def value_step_kwargs(value_net):
    """SinglePathSampler.sample's keyword for a recurrent value baseline `value_net` (its
    NumPy cell step, today's weights); {} for None."""
    return {} if value_net is None else {"value_step": numpy_cell_fn(value_net)}


class BatchBuffers:
    """A batch in the making, time-major [T, E, ...]; `mask_size` > 0 keeps action masks."""

    def __init__(self, T, E, obs_space, mask_size):
        self.T = T
        self.obs = np.empty((T, E) + obs_space.shape, batch_obs_dtype(obs_space))
        self.act = None  # its dtype and shape come with the first actions
        self.rew = np.empty((T, E), np.float32)
        self.disc = np.empty((T, E), np.float32)
        self.term = np.zeros((T, E), np.float32)
        self.end = np.zeros((T, E), np.float32)
        self.start = np.zeros((T, E), np.float32)
        self.valid = np.ones((T, E), bool)
        self.mask = np.empty((T, E, mask_size), bool) if mask_size else None
        self.end_obs = {}  # flat index (env-major) -> observation after the segment end
        self.episodes = []


def _env_major(x, valid=None):
    """[T, E, ...] -> [E * T, ...] so that each env's steps are contiguous; then keep the
    rows where `valid` (env-major too) is set, if given."""
    flat = np.ascontiguousarray(np.swapaxes(x, 0, 1)).reshape((-1,) + x.shape[2:])
    return flat if valid is None else flat[valid]
