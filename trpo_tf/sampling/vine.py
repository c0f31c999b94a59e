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

Batch: obs [N, ...] (the rollout set), act [N, K, ...], q_hat [N, K]; episode_return /
episode_length of the trunks' finished episodes; sim_steps; q_spread (mean over states of
max - min Q-hat).
"""
import numpy as np

from trpo_tf.sampling import batch_obs_dtype, env_action_fn, episode_fields

PROPOSALS = ("policy", "uniform", "all")


class VineSampler:
    def __init__(self, envs, dist, trunk_paths, trunk_length, num_states, actions_per_state,
                 rollout_length, gamma, proposal, crn, seed):
        if proposal in ("uniform", "all") and not dist.discrete:
            raise ValueError(f"vine proposal {proposal!r} needs discrete actions")
        self.envs, self.dist = envs, dist
        self.trunk_paths, self.trunk_length = trunk_paths, trunk_length
        self.num_states, self.rollout_length, self.gamma = num_states, rollout_length, gamma
        self.proposal, self.crn = proposal, crn
        self.k = dist.num_actions if proposal == "all" else actions_per_state
        self.rng = np.random.default_rng(seed)
        self._env_action = env_action_fn(envs.action_space, dist)
        self.batches_produced = 0

    def trunks(self, params_fn):
        """Run the trunks; -> (rollout set observations [N, ...], their snapshots, finished
        episodes, sim steps). The N states are a uniform draw without replacement from all
        trunk steps, kept by reservoir sampling (Vitter's algorithm R), so only states that
        enter the reservoir are snapshotted (an Atari snapshot is ~90 kB)."""
        obs_kept, snaps, episodes, steps = [], [], [], 0
        envs = self.envs.envs
        for first in range(0, self.trunk_paths, len(envs)):
            group = envs[: min(len(envs), self.trunk_paths - first)]
            obs = np.stack([env.reset(seed=int(self.rng.integers(2**31)))[0] for env in group])
            alive = np.ones(len(group), bool)
            ret, length = np.zeros(len(group)), np.zeros(len(group), np.int64)
            for _ in range(self.trunk_length):
                idx = np.flatnonzero(alive)
                if idx.size == 0:
                    break
                actions = self.dist.sample_np(params_fn(obs[idx]), self.rng)
                for j, a in zip(idx, self._env_action(actions)):
                    if steps < self.num_states:  # the reservoir is still filling
                        obs_kept.append(obs[j].copy())
                        snaps.append(self.envs.snapshot_one(j))
                    else:  # step i replaces a kept state with probability N / (i + 1)
                        slot = int(self.rng.integers(steps + 1))
                        if slot < self.num_states:
                            obs_kept[slot], snaps[slot] = obs[j].copy(), self.envs.snapshot_one(j)
                    o, r, term, trunc, _ = group[j].step(a)
                    obs[j], ret[j], length[j] = o, ret[j] + r, length[j] + 1
                    steps += 1
                    if term or trunc:
                        alive[j] = False
                        episodes.append((ret[j], length[j]))
        return (np.stack(obs_kept).astype(batch_obs_dtype(self.envs.observation_space)), snaps,
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
                    o, r, term, trunc, _ = envs[e].step(self._env_action(act[e]))
                    q_hat[i, j] += self.gamma**t * r
                    cur[e] = o
                    steps += 1
                    if term or trunc:
                        alive[e] = False
        return q_hat, steps

    def state(self):
        """Trunks start from fresh resets each iteration: the RNG is all there is to save."""
        return {"rng": self.rng.bit_generator.state}

    def load_state(self, state):
        self.rng.bit_generator.state = state["rng"]

    def sample(self, params_fn):
        states, state_snaps, episodes, trunk_steps = self.trunks(params_fn)
        actions = self.proposals(params_fn(states))
        q_hat, branch_steps = self.branches(params_fn, state_snaps, states, actions)
        self.batches_produced += 1
        return {
            "obs": states, "act": actions.astype(np.int32 if self.dist.discrete else np.float32),
            "q_hat": q_hat.astype(np.float32),
            **episode_fields(episodes),
            "sim_steps": np.float32(trunk_steps + branch_steps),
            "q_spread": np.float32(np.mean(q_hat.max(1) - q_hat.min(1))),
        }
