"""Running first and second moments, merged batch by batch (Chan, Golub, LeVeque 1979):
the observation normaliser (policies.py) and reward scaling (RewardScale) share them."""
import numpy as np


def merge_moments(count, mean, var, batch):
    """(count, mean, var) of everything seen so far, with `batch` [m, ...] folded in; the
    population variance, exactly as if all samples had been seen at once."""
    m = batch.shape[0]
    b_mean, b_var = batch.mean(0), batch.var(0)
    total = count + m
    delta = b_mean - mean
    new_mean = mean + delta * m / total
    new_var = (var * count + b_var * m + delta**2 * count * m / total) / total
    return total, new_mean, new_var


REWARD_CLIP = 10.0  # scaled rewards are clipped to +-10, as SB3's VecNormalize does


class RewardScale:
    """Rewards divided by the running standard deviation of the discounted return
    sum_k gamma^k r_{t-k} (Engstrom et al. 2020, "Implementation matters"): the value targets
    stay near unit scale whatever the task's reward units. Rewards are only scaled, never
    shifted, so the task's optimum is unchanged; episode returns are reported unscaled.

    `scaled(rew, discounted_return)` folds the batch into the statistics it returns them with
    (a candidate state); `commit(state)` keeps it once the iteration succeeded."""

    def __init__(self):
        self.state = (0.0, 0.0, 1.0)  # count, mean, var

    @staticmethod
    def factor(state):
        """What rewards are multiplied by under `state`: 1 / std of the discounted return."""
        return 1.0 / float(np.sqrt(state[2] + 1e-8))

    def scaled(self, rew, discounted_return):
        count, mean, var = merge_moments(*self.state, np.asarray(discounted_return, np.float64))
        state = (float(count), float(mean), float(var))
        rew = np.clip(np.asarray(rew) * self.factor(state), -REWARD_CLIP, REWARD_CLIP)
        return rew.astype(np.float32), state

    def commit(self, state):
        self.state = state
