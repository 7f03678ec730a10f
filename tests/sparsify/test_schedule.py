import math

import pytest

from sparseinfer.sparsify import schedule


def test_cubic_matches_zhu_gupta_formula():
    # s(t) = s_f + (s_i - s_f) (1 - (t - t0)/(t1 - t0))^3 at update points
    for t in (2.0, 3.0, 5.0, 7.0):
        expected = 0.9 + (0.05 - 0.9) * (1 - (t - 2.0) / 8.0) ** 3
        assert schedule.gmp_sparsity(t, 2.0, 10.0, 0.05, 0.9, 1.0) == pytest.approx(expected)


def test_before_start_none_after_end_final():
    assert schedule.gmp_sparsity(1.99, 2.0, 10.0, 0.05, 0.9, 1.0) is None
    assert schedule.gmp_sparsity(10.0, 2.0, 10.0, 0.05, 0.9, 1.0) == 0.9
    assert schedule.gmp_sparsity(50.0, 2.0, 10.0, 0.05, 0.9, 1.0) == 0.9
    assert schedule.gmp_sparsity(2.0, 2.0, 10.0, 0.05, 0.9, 1.0) == pytest.approx(0.05)


def test_updates_only_at_update_points():
    at = lambda e: schedule.gmp_sparsity(e, 0.0, 10.0, 0.0, 0.8, 2.0)  # noqa: E731
    assert at(2.0) == at(3.99) != at(4.0)
    assert at(0.0) == at(1.5) == 0.0


def test_monotone_and_cubic_front_loaded():
    values = [schedule.gmp_sparsity(e / 10, 0.0, 10.0, 0.0, 0.9, 0.1) for e in range(0, 101)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    # cubic removes most weights early: at half time 1 - 0.5^3 = 87.5% of the way
    assert values[50] == pytest.approx(0.9 * (1 - 0.5 ** 3))
    assert schedule.interpolate(0.5, 0.0, 0.9, "linear") == pytest.approx(0.45)


def test_bad_schedule_raises():
    with pytest.raises(ValueError, match="end epoch"):
        schedule.gmp_sparsity(1.0, 5.0, 5.0, 0.0, 0.9, 1.0)
    with pytest.raises(ValueError, match="interpolation"):
        schedule.interpolate(0.5, 0.0, 1.0, "quadratic")


def test_learning_rate_functions():
    assert schedule.learning_rate(5.0, "step", 0.1, step_size=2, gamma=0.5) == pytest.approx(0.1 * 0.5 ** 2)
    assert schedule.learning_rate(3.0, "exponential", 0.1, gamma=0.9) == pytest.approx(0.1 * 0.9 ** 3)
    assert schedule.learning_rate(0.0, "cosine", 0.1, 0.0, 10.0, 0.01) == pytest.approx(0.1)
    assert schedule.learning_rate(5.0, "cosine", 0.1, 0.0, 10.0, 0.01) == pytest.approx(0.055)
    assert schedule.learning_rate(10.0, "cosine", 0.1, 0.0, 10.0, 0.01) == pytest.approx(0.01)
    assert schedule.learning_rate(12.0, "linear", 0.1, 2.0, 12.0, 0.0) == pytest.approx(0.0)
    assert schedule.learning_rate(7.0, "linear", 0.1, 2.0, 12.0, 0.0) == pytest.approx(0.05)
    assert math.isclose(schedule.learning_rate(3.0, "constant", 0.2), 0.2)
    with pytest.raises(ValueError, match="end_epoch > start_epoch"):
        schedule.learning_rate(1.0, "cosine", 0.1, 0.0, -1.0)
