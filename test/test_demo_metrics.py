"""demo_metrics.py: tracking RMS, prediction nMSE, payload change, not-ready time and the
reference distance on generated data whose answer is known."""
from __future__ import annotations

import math

import numpy as np
import pytest

from invdyn_ros.sim.demo_metrics import (RECOVERY_SKIP_S, RECOVERY_WINDOW_S, error_recovery,
                                         holds_from, not_ready_seconds, payload_change_metrics,
                                         prediction_nmse, reference_distance, repeated_runs,
                                         rolling_nmse, rolling_rms, tracking_rms)
from invdyn_ros.sim.demo_schedule import DemoError


def test_tracking_rms_of_a_sine_over_whole_periods():
    t = np.arange(0.0, 20.0, 0.002)
    amp = np.array([1e-3, 2e-3, 4e-3])
    err = np.sin(2 * np.pi * 0.5 * t)[:, None] * amp
    err[t < 2.0] = 1.0                      # excluded: before the window
    np.testing.assert_allclose(tracking_rms(t, err, 2.0, 20.0), amp / math.sqrt(2), rtol=1e-3)
    with pytest.raises(DemoError):
        tracking_rms(t, err, 30.0, 40.0)


def test_prediction_nmse_known_answer():
    rng = np.random.default_rng(0)
    applied = rng.normal(5.0, [1.0, 2.0, 4.0], size=(200_000, 3))
    noise_std = np.array([0.1, 0.2, 2.0])
    predicted = applied + rng.normal(0.0, noise_std, size=applied.shape)
    expected = (noise_std / np.array([1.0, 2.0, 4.0])) ** 2         # 0.01, 0.01, 0.25
    np.testing.assert_allclose(prediction_nmse(applied, predicted), expected, rtol=0.02)
    # Predicting the mean scores 1.
    np.testing.assert_allclose(prediction_nmse(applied, np.broadcast_to(applied.mean(0),
                                                                        applied.shape)), 1.0)


def test_rolling_nmse_is_time_based():
    t = np.array([0.0, 0.1, 0.2, 5.0, 5.1])
    applied = np.zeros((5, 1))
    predicted = np.array([[1.0], [1.0], [1.0], [3.0], [3.0]])
    roll = rolling_nmse(t, applied, predicted, np.array([1.0]), window_s=1.0)
    # After the 4.8 s gap the window holds only the new samples.
    np.testing.assert_allclose(roll, [1.0, 1.0, 1.0, 9.0, 9.0])


def test_payload_change_recovery_time_known_answer():
    rng = np.random.default_rng(1)
    dt, t_change, bad_for, period = 0.002, 20.0, 7.0, 10.0
    t = np.arange(0.0, 60.0, dt)
    applied = np.stack([10 * np.sin(t), 5 * np.cos(0.7 * t)], axis=1)
    err_std = np.where((t >= t_change) & (t < t_change + bad_for), 1.0, 0.1)
    predicted = applied + err_std[:, None] * rng.standard_normal(applied.shape)
    res = payload_change_metrics(t, applied, predicted, t_change, period)
    assert 50 < res['jump'] < 200                     # error std x10 -> nMSE x100
    assert res['recovered']
    # The trailing period must leave the bad stretch (to within 1.5x of 1 % of its error share):
    # bad_for + period, minus ~0.05 s.
    assert bad_for + period - 0.1 <= res['recovery_s'] <= bad_for + period + 0.01
    cut = t < t_change + 12.0
    never = payload_change_metrics(t[cut], applied[cut], predicted[cut], t_change, period)
    assert not never['recovered'] and never['recovery_s'] is None


def test_rolling_rms_is_time_based_over_joints_and_skips_bad_rows():
    t = np.array([0.0, 0.1, 0.2, 5.0, 5.1, 5.2])
    diff = np.array([[3.0, 4.0], [3.0, 4.0], [np.nan, 0.0], [1.0, 1.0], [0.0, 0.0], [1.0, 7.0]])
    roll = rolling_rms(t, diff, window_s=1.0)
    # mean square over joints per row: 12.5, 12.5, (left out), 1, 0, 25
    np.testing.assert_allclose(roll, np.sqrt([12.5, 12.5, 12.5, 1.0, 0.5, 26.0 / 3]))
    assert np.isnan(rolling_rms(np.array([0.0]), np.array([[np.inf, 0.0]]), 1.0)[0])


def test_holds_from():
    assert holds_from(np.array([False, True, False, True, True])) == 3
    assert holds_from(np.array([True, True])) == 0
    assert holds_from(np.array([True, False])) is None
    assert holds_from(np.array([], bool)) is None


def test_repeated_runs_counts_steps_on_the_same_feedforward():
    """Runs of consecutive equal rows where both steps had a feedforward; a missing feedforward
    (zeros recorded) breaks a run and is not one."""
    a, b, c = [1.0, 2.0], [3.0, 4.0], [5.0, 6.0]
    z = [0.0, 0.0]
    ff = np.array([a, a, a, b, c, c, z, z, c, c])
    present = np.array([1, 1, 1, 1, 1, 1, 0, 0, 1, 1], bool)
    np.testing.assert_array_equal(repeated_runs(ff, present), [3, 2, 2])
    assert int(np.sum(repeated_runs(ff, present) - 1)) == 4       # repeated steps
    assert repeated_runs(ff[:1], present[:1]).size == 0
    assert repeated_runs(np.array([a, b, c]), np.ones(3, bool)).size == 0


def test_error_recovery_known_answer():
    """An error of 0.1 for 20 s, 10x for 3 s after a change at t = 20 s, then 0.12 (first and
    last back within 1.5x once the 1 s window has left the bad stretch), then 0.2 (2x: it does
    not stay)."""
    dt = 0.002
    t = np.arange(0.0, 40.0, dt)
    level = np.where(t < 20.0, 0.1, np.where(t < 23.0, 1.0, 0.12))
    diff = level[:, None] * np.ones((1, 3))
    rec = error_recovery(t, rolling_rms(t, diff, RECOVERY_WINDOW_S), 20.0)
    assert rec['level'] == pytest.approx(0.1) and rec['peak'] == pytest.approx(1.0)
    # within 1.5x = 0.15 once the bad share of the window is small: (x + 0.0144 (1 - x)) <= 0.0225
    bad_share = (0.0225 - 0.0144) / (1.0 - 0.0144)
    expected = 3.0 + RECOVERY_WINDOW_S * (1 - bad_share)
    assert rec['first_within_s'] == pytest.approx(expected, abs=2 * dt)
    assert rec['stays_within_s'] == pytest.approx(expected, abs=2 * dt)
    worse = np.where(t < 30.0, level, 0.2)
    rec = error_recovery(t, rolling_rms(t, worse[:, None], RECOVERY_WINDOW_S), 20.0)
    assert rec['first_within_s'] == pytest.approx(expected, abs=2 * dt)
    assert rec['stays_within_s'] is None
    # a change right back to the old level: "first" waits RECOVERY_SKIP_S, "stays" does not
    calm = np.full_like(t, 0.1)
    rec = error_recovery(t, rolling_rms(t, calm[:, None], RECOVERY_WINDOW_S), 20.0)
    assert rec['first_within_s'] == pytest.approx(RECOVERY_SKIP_S, abs=dt)
    assert rec['stays_within_s'] == 0.0


def test_payload_change_metrics_report_the_rms_recovery_too():
    dt, t_change = 0.002, 20.0
    t = np.arange(0.0, 40.0, dt)
    applied = np.stack([10 * np.sin(t), 5 * np.cos(0.7 * t)], axis=1)
    err = np.where((t >= t_change) & (t < t_change + 3.0), 1.0, 0.1)
    res = payload_change_metrics(t, applied, applied + err[:, None], t_change, 10.0)
    assert res['error_rms_before'] == pytest.approx(0.1)
    assert res['error_rms_peak'] == pytest.approx(1.0)
    assert 3.0 < res['error_rms_first_within_s'] < 3.0 + RECOVERY_WINDOW_S
    assert res['error_rms_stays_within_s'] == res['error_rms_first_within_s']
    assert res['error_rms_window_s'] == RECOVERY_WINDOW_S


# ============================================================================ recorder, summary


def test_not_ready_seconds():
    events = [(0.5, False), (14.0, True), (151.0, False), (160.5, True), (200.0, False)]
    assert not_ready_seconds(events, 150.0, 210.0) == pytest.approx(9.5 + 10.0)
    assert not_ready_seconds(events, 0.0, 14.0) == pytest.approx(14.0)    # not ready before
    assert not_ready_seconds(events, 20.0, 150.0) == 0.0
    assert not_ready_seconds([], 10.0, 12.0) == pytest.approx(2.0)        # never reported


def test_reference_distance_known_answer():
    t = np.linspace(0.0, 2 * np.pi, 400, endpoint=False)
    circle = np.stack([np.cos(t), np.sin(t)], axis=1)
    d = reference_distance(circle, circle * 3.0)          # a circle three times as large: 2 away
    assert d['median_rad'] == pytest.approx(2.0, abs=1e-3)
    assert d['max_rad'] == pytest.approx(2.0, abs=1e-3)
    assert d['primary_self_median_rad'] < 0.02           # the primary against itself
    assert reference_distance(circle, circle[::3])['median_rad'] < 0.02
