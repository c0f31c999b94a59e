"""Vine sampling (section 5.2, Figure 1 right).

1. Trunks: `trunk_paths` paths of up to `trunk_length` steps with the current policy.
2. Rollout set: N states drawn uniformly from all trunk steps (so spread along the trunks),
   by reservoir sampling while the trunks run; each kept state's full simulator state is
   snapshotted when it enters the reservoir.
3. Branches: from each s_n, K actions a_{n,k} ~ q(.|s_n) (the policy, uniform, or every
   action of a small discrete space); for each, restore s_n, take a_{n,k}, then follow the
   policy for rollout_length - 1 steps; Q-hat is the discounted return. With common random
   numbers the K branches of a state share one noise sequence (and, restored from one
   snapshot, the env's own RNG), so their Q-hats differ through the first action alone.
   Branches step together, one batched policy call per step.
4. KL states: eq. 13's constraint averages over states from the old policy's visitation,
   which the trunk states sample (as the rollout set does, but ~100 times as densely): the
   mean KL and the Fisher-vector products are computed over all trunk states, or over a
   uniform draw of `kl_states` of them.

Batch: obs [N, ...] (the rollout set), act [N, K, ...], q_hat [N, K], kl_obs [M, ...] (the
KL states); episode_return / episode_length of the trunks' finished episodes; sim_steps;
q_spread (mean over states of max - min Q-hat).
"""
import numpy as np

from trpo_tf.errors import ConfigError
from trpo_tf.envs import checked
from trpo_tf.sampling import batch_obs_dtype, env_action_fn, episode_fields

PROPOSALS = ("policy", "uniform", "all")


class Reservoir:
    """Vitter's algorithm R: a uniform draw of `size` items (every item if size is None)
    without replacement from a stream; offer(make) builds the item only if it is kept, and
    draws a random number only once the reservoir is full."""

    def __init__(self, size, rng):
        self.size, self.rng = size, rng
        self.items, self.seen = [], 0

    def offer(self, make):
        if self.size is None or self.seen < self.size:
            self.items.append(make())
        else:  # item i replaces a kept one with probability size / (i + 1)
            slot = int(self.rng.integers(self.seen + 1))
            if slot < self.size:
                self.items[slot] = make()
        self.seen += 1


class VineSampler:
    state_needs_same_envs = True  # its state is the envs' (a resume with other envs drops it)

    def __init__(self, envs, dist, trunk_paths, trunk_length, num_states, actions_per_state,
                 rollout_length, gamma, proposal, crn, seed, kl_states=0):
        if proposal in ("uniform", "all") and not hasattr(dist, "num_actions"):
            raise ConfigError(f"--vine_proposal={proposal} needs one Discrete action (got "
                              f"{envs.action_space}): use --vine_proposal=policy")
        self.envs, self.dist = envs, dist
        self.trunk_paths, self.trunk_length = trunk_paths, trunk_length
        self.num_states, self.rollout_length, self.gamma = num_states, rollout_length, gamma
        self.kl_states = kl_states
        self.proposal, self.crn = proposal, crn
        self.k = dist.num_actions if proposal == "all" else actions_per_state
        self.rng = np.random.default_rng(seed)
        self._env_action = env_action_fn(envs.action_space, dist)
        self.batches_produced = 0
        self.progress = 0  # simulator steps of the batch in the making (trunks, then branches)

    def trunks(self, params_fn):
        """Run the trunks; -> (rollout set observations [N, ...], their snapshots, the KL
        states [M, ...], finished episodes, sim steps). The N states are a uniform draw without
        replacement from all trunk steps, so only states that enter the rollout set are
        snapshotted (an Atari snapshot is ~90 kB); the KL states are every trunk state, or a
        uniform draw of `kl_states` of them."""
        rollout_set = Reservoir(self.num_states, self.rng)
        kl_set = Reservoir(self.kl_states or None, self.rng)
        episodes, steps = [], 0
        envs = self.envs.envs
        for first in range(0, self.trunk_paths, len(envs)):
            group = envs[: min(len(envs), self.trunk_paths - first)]
            obs = np.stack([checked(lambda: env.reset(seed=int(self.rng.integers(2**31))), env,
                                    self.envs.where[j])[0] for j, env in enumerate(group)])
            alive = np.ones(len(group), bool)
            ret, length = np.zeros(len(group)), np.zeros(len(group), np.int64)
            for _ in range(self.trunk_length):
                idx = np.flatnonzero(alive)
                if idx.size == 0:
                    break
                actions = self.dist.sample_np(params_fn(obs[idx]), self.rng)
                for j, a in zip(idx, self._env_action(actions)):
                    rollout_set.offer(lambda: (obs[j].copy(), self.envs.snapshot_one(j)))
                    kl_set.offer(lambda: obs[j].copy())
                    o, r, term, trunc, _ = checked(lambda: group[j].step(a), group[j],
                                                   self.envs.where[j], 5)
                    obs[j], ret[j], length[j] = o, ret[j] + r, length[j] + 1
                    steps += 1
                    self.progress = steps
                    if term or trunc:
                        alive[j] = False
                        episodes.append((ret[j], length[j]))
        dtype = batch_obs_dtype(self.envs.observation_space)
        states, snaps = zip(*rollout_set.items)
        return (np.stack(states).astype(dtype), list(snaps), np.stack(kl_set.items).astype(dtype),
                episodes, steps)

    def proposals(self, params):
        """K actions per state from q: [N, K, ...]."""
        n = len(params)
        if self.proposal == "all":
            return np.tile(np.arange(self.k, dtype=np.int32), (n, 1))
        if self.proposal == "uniform":
            return self.rng.integers(0, self.dist.num_actions, (n, self.k)).astype(np.int32)
        draws = self.dist.sample_np(np.repeat(params, self.k, axis=0), self.rng)
        return draws.reshape((n, self.k) + draws.shape[1:])

    def branch_noise(self, n):
        """Noise for steps 1..L-1 of every branch: [N, K, L-1, ...]; CRN shares it across K."""
        per = 1 if self.crn else self.k
        noise = self.dist.draw_noise(self.rng, n * per * max(self.rollout_length - 1, 1))
        noise = noise.reshape((n, per, max(self.rollout_length - 1, 1)) + noise.shape[1:])
        return np.broadcast_to(noise, (n, self.k) + noise.shape[2:])

    def branches(self, params_fn, snaps, obs, actions):
        """Q-hat [N, K] of the branch rollouts, num_envs of them stepping together."""
        n, k = actions.shape[:2]
        noise = self.branch_noise(n)
        items = [(i, j) for i in range(n) for j in range(k)]
        q_hat = np.zeros((n, k))
        steps = 0
        envs = self.envs.envs
        for first in range(0, len(items), len(envs)):
            chunk = items[first:first + len(envs)]
            for e, (i, _) in enumerate(chunk):
                self.envs.restore_one(e, snaps[i])
            cur = np.stack([obs[i] for i, _ in chunk])
            alive = np.ones(len(chunk), bool)
            for t in range(self.rollout_length):
                idx = np.flatnonzero(alive)
                if idx.size == 0:
                    break
                if t == 0:
                    act = np.stack([actions[i, j] for i, j in chunk])
                else:
                    params = params_fn(cur[idx])
                    act = np.zeros((len(chunk),) + actions.shape[2:], actions.dtype)
                    act[idx] = self.dist.sample_from_noise(
                        params, np.stack([noise[chunk[e][0], chunk[e][1], t - 1] for e in idx]))
                for e in idx:
                    i, j = chunk[e]
                    o, r, term, trunc, _ = checked(lambda: envs[e].step(self._env_action(act[e])),
                                                   envs[e], self.envs.where[e], 5)
                    q_hat[i, j] += self.gamma**t * r
                    cur[e] = o
                    steps += 1
                    self.progress += 1
                    if term or trunc:
                        alive[e] = False
        return q_hat, steps

    def state(self):
        """Trunks start from fresh resets each iteration: the RNG is all there is to save."""
        return {"rng": self.rng.bit_generator.state}

    def load_state(self, state):
        self.rng.bit_generator.state = state["rng"]

    def sample(self, params_fn):
        states, state_snaps, kl_states, episodes, trunk_steps = self.trunks(params_fn)
        actions = self.proposals(params_fn(states))
        q_hat, branch_steps = self.branches(params_fn, state_snaps, states, actions)
        self.batches_produced += 1
        return {
            "obs": states, "act": actions.astype(self.dist.act_dtype),
            "q_hat": q_hat.astype(np.float32), "kl_obs": kl_states,
            **episode_fields(episodes),
            "sim_steps": np.float32(trunk_steps + branch_steps),
            "q_spread": np.float32(np.mean(q_hat.max(1) - q_hat.min(1))),
        }
