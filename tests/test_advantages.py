import numpy as np
import pytest
import tensorflow as tf

from trpo_tf.pipeline import advantages as A


def f32(x):
    return tf.constant(x, tf.float32)


def test_reverse_linear_recurrence_matches_a_loop():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 64, 1000):
        x = rng.standard_normal(n)
        c = rng.uniform(0, 1, n) * (rng.uniform(size=n) > 0.1)
        y, acc = np.zeros(n), 0.0
        for t in reversed(range(n)):
            acc = x[t] + c[t] * acc
            y[t] = acc
        np.testing.assert_allclose(A.reverse_linear_recurrence(f32(x), f32(c)).numpy(), y,
                                   rtol=1e-4, atol=1e-5)


# Two segments: steps 0-2 end in termination; steps 3-4 are cut (truncated) and bootstrap
# from V(s_end) = 10. gamma = 0.5.
REW = [1.0, 2.0, 4.0, 1.0, 1.0]
TERMINAL = [0.0, 0.0, 1.0, 0.0, 0.0]
PATH_END = [0.0, 0.0, 1.0, 0.0, 1.0]
VALUES = [1.0, 1.0, 1.0, 2.0, 2.0]
END_VALUES = [7.0, 10.0]  # V after each segment end (the first is ignored: terminal)


def test_next_state_values_bootstraps_at_path_ends():
    nv = A.next_state_values(f32(VALUES), f32(END_VALUES), f32(PATH_END))
    np.testing.assert_allclose(nv.numpy(), [1.0, 1.0, 7.0, 2.0, 10.0])


def test_discounted_returns_by_hand_termination_vs_truncation():
    nv = A.next_state_values(f32(VALUES), f32(END_VALUES), f32(PATH_END))
    ret = A.discounted_returns(f32(REW), nv, f32(TERMINAL), f32(PATH_END), 0.5)
    # path 1 (terminated): 4 ; 2 + 0.5*4 = 4 ; 1 + 0.5*4 = 3   (V=7 after the end ignored)
    # path 2 (truncated):  1 + 0.5*10 = 6 ; 1 + 0.5*6 = 4
    np.testing.assert_allclose(ret.numpy(), [3.0, 4.0, 4.0, 4.0, 6.0], rtol=1e-6)
    # the same cut treated as terminal would lose the bootstrap: last step 1, not 6
    ret_term = A.discounted_returns(f32(REW), nv, f32([0, 0, 1, 0, 1]), f32(PATH_END), 0.5)
    np.testing.assert_allclose(ret_term.numpy()[3:], [1.5, 1.0])


def test_gae_by_hand():
    nv = A.next_state_values(f32(VALUES), f32(END_VALUES), f32(PATH_END))
    adv = A.gae(f32(REW), f32(VALUES), nv, f32(TERMINAL), f32(PATH_END), 0.5, 0.5)
    # deltas: 1+0.5*1-1=0.5, 2+0.5*1-1=1.5, 4+0-1=3 | 1+0.5*2-2=0, 1+0.5*10-2=4 ; gamma*lam=0.25
    # A: 3 ; 1.5+0.25*3=2.25 ; 0.5+0.25*2.25=1.0625 | 4 ; 0+0.25*4=1
    np.testing.assert_allclose(adv.numpy(), [1.0625, 2.25, 3.0, 1.0, 4.0], rtol=1e-6)


def test_gae_lambda_one_is_return_minus_value_and_modes():
    nv = A.next_state_values(f32(VALUES), f32(END_VALUES), f32(PATH_END))
    args = (f32(REW), f32(VALUES), nv, f32(TERMINAL), f32(PATH_END), 0.5)
    ret = A.discounted_returns(f32(REW), nv, f32(TERMINAL), f32(PATH_END), 0.5)
    np.testing.assert_allclose(A.gae(*args, 1.0).numpy(), (ret - f32(VALUES)).numpy(), rtol=1e-6)
    adv_q, tgt_q = A.advantages_and_targets("q", *args, 0.9)
    adv_b, tgt_b = A.advantages_and_targets("baseline", *args, 0.9)
    adv_g, tgt_g = A.advantages_and_targets("gae", *args, 0.5)
    np.testing.assert_allclose(adv_q.numpy(), ret.numpy())
    np.testing.assert_allclose(adv_b.numpy(), ret.numpy() - VALUES)
    np.testing.assert_allclose(tgt_b.numpy(), ret.numpy())
    np.testing.assert_allclose(tgt_g.numpy(), adv_g.numpy() + VALUES)


def test_normalize_and_explained_variance():
    x = A.normalize(f32([1.0, 2.0, 3.0, 6.0])).numpy()
    assert abs(x.mean()) < 1e-6 and abs(x.std() - 1.0) < 1e-5
    t = f32([1.0, 2.0, 3.0])
    assert float(A.explained_variance(t, t)) == pytest.approx(1.0)
    assert float(A.explained_variance(f32([2.0, 2.0, 2.0]), t)) == pytest.approx(0.0, abs=1e-6)
