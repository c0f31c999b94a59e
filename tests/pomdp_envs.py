"""A partially observed task for the recurrent policy's tests and bench/pomdp.py:
CartPoleNoVelocity-v1 is gymnasium's CartPole-v1 (500 steps at most) observing only the cart's
position and the pole's angle, its two velocities removed, so a policy must remember earlier
observations to know where the pole is going. `--env=pomdp_envs:CartPoleNoVelocity-v1` (with
tests/ on the path: gymnasium imports the module, which registers the id)."""
import gymnasium as gym
import numpy as np

POSITIONS = [0, 2]  # of CartPole's (x, x_dot, theta, theta_dot)


class PositionsOnly(gym.ObservationWrapper):
    """CartPole's observation without its velocities."""

    def __init__(self, env):
        super().__init__(env)
        space = env.observation_space
        self.observation_space = gym.spaces.Box(space.low[POSITIONS], space.high[POSITIONS],
                                                dtype=np.float32)

    def observation(self, observation):
        return observation[POSITIONS]


def cartpole_no_velocity(**kwargs):
    return PositionsOnly(gym.make("CartPole-v1", **kwargs))


gym.register("CartPoleNoVelocity-v1", entry_point=cartpole_no_velocity)
