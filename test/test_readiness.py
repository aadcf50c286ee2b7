"""readiness: the rolling nMSE (one-sample and many-sample forms) and the pipeline's ready."""
from __future__ import annotations

import math

import numpy as np
import pytest

from invdyn_ros import metrics
from invdyn_ros.stages.readiness import Readiness, RollingNMSE, window_nmse


def _errors(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (count, 2)) * [1.0, 3.0]


def test_value_is_the_nmse_of_the_last_window_samples():
    err = _errors(130)
    r = RollingNMSE(2, 50)
    var = np.array([2.0, 5.0])
    assert r.value(var) == math.inf                      # before any sample
    for i, e in enumerate(err):
        r.push(e)
        last = err[max(0, i - 49):i + 1]
        expected = float(np.mean(metrics.nmse(last, np.zeros_like(last), np.zeros(2),
                                              np.sqrt(var))))
        assert r.value(var) == pytest.approx(expected, rel=1e-12)
    assert r.count == 50


def test_value_is_inf_for_a_zero_scale_never_nan():
    r = RollingNMSE(1, 5)
    r.push(np.array([1.0]))
    assert r.value(np.array([0.0])) == math.inf
    r2 = RollingNMSE(1, 5)
    r2.push(np.array([0.0]))
    assert r2.value(np.array([0.0])) == math.inf         # 0 / 0


@pytest.mark.parametrize('start', [0, 30, 50, 130])
def test_push_many_equals_push_row_by_row(start):
    """Sums after each row and the ring left exactly as row-by-row pushes leave them, from an
    empty, a partly filled, a just-full and a wrapped ring."""
    err = _errors(start + 170, seed=start)
    a, b = RollingNMSE(2, 50), RollingNMSE(2, 50)
    for e in err[:start]:
        a.push(e)
        b.push(e)
    sums, counts = [], []
    for e in err[start:]:
        a.push(e)
        sums.append(a.sum.copy())
        counts.append(a.count)
    got_sums, got_counts = b.push_many(err[start:])
    np.testing.assert_allclose(got_sums, sums, rtol=1e-9)
    np.testing.assert_array_equal(got_counts, counts)
    assert (a.pos, a.count) == (b.pos, b.count)
    np.testing.assert_array_equal(b.sq, a.sq)
    np.testing.assert_allclose(b.sum, a.sum, rtol=1e-12)


def test_load_restores_a_ring_and_keeps_the_newest_for_a_smaller_window():
    err = _errors(70)
    r = RollingNMSE(2, 50)
    r.push_many(err)
    again = RollingNMSE(2, 50)
    again.load(r.sq, r.pos, r.count)
    assert again.value(np.ones(2)) == r.value(np.ones(2))
    again.push(err[0])
    r.push(err[0])
    np.testing.assert_array_equal(again.sq, r.sq)
    small = RollingNMSE(2, 20)
    small.load(np.sqrt(r.sq), r.pos, r.count, squared=False)
    ref = RollingNMSE(2, 20)
    ref.push_many(np.concatenate((err, err[:1])))
    assert small.count == 20
    assert small.value(np.ones(2)) == pytest.approx(ref.value(np.ones(2)), rel=1e-12)


def test_window_nmse_is_metrics_nmse_of_each_window():
    rng = np.random.default_rng(1)
    y = rng.normal(0, 2, (100, 3))
    pred = y + rng.normal(0, 0.5, y.shape)
    std = np.array([1.0, 2.0, 0.5])
    lo, hi = np.array([0, 10, 40, 99]), np.array([10, 40, 99, 100])
    got = window_nmse(pred - y, std ** 2, lo, hi)
    for k in range(4):
        sel = slice(lo[k], hi[k])
        assert got[k] == pytest.approx(
            float(np.mean(metrics.nmse(y[sel], pred[sel], np.zeros(3), std))), rel=1e-12)


def _readiness() -> Readiness:
    r = Readiness(2, window=50, ready_nmse=0.5, unready_factor=1.5, min_samples=60)
    r.var = np.array([1.0, 4.0])
    return r


def test_ready_needs_min_samples_and_has_hysteresis():
    r = _readiness()
    tau = np.zeros(2)
    for _ in range(59):
        r.update(np.array([0.1, 0.2]), tau)             # nMSE 0.01
        assert not r.ready
    r.update(np.array([0.1, 0.2]), tau)
    assert r.ready and r.scored == 60
    big = np.array([np.sqrt(0.6), 2 * np.sqrt(0.6)])   # nMSE 0.6: between 0.5 and 0.75: holds
    for _ in range(50):
        r.update(big, tau)
    assert r.nmse == pytest.approx(0.6, rel=1e-9) and r.ready
    worse = np.array([1.0, 2.0])                        # nMSE 1.0 > 0.75: lost
    for _ in range(50):
        r.update(worse, tau)
    assert not r.ready
    for _ in range(50):
        r.update(big, tau)                              # 0.6 again: stays unready
    assert not r.ready


@pytest.mark.parametrize('start', [0, 30, 50, 130])
def test_update_many_equals_update_row_by_row(start):
    """nmse / ready after each row and the final state as row-by-row updates leave them."""
    rng = np.random.default_rng(start)
    a, b = _readiness(), _readiness()
    tau = rng.normal(0, 1, (start + 400, 2))
    # errors that cross the ready thresholds both ways (0.5 and 0.75 with unready_factor 1.5)
    scale = np.resize(np.repeat([0.2, 1.5, 0.3, 0.9, 0.1], 80), start + 400)[:, None] * [1.0, 2.0]
    torque = tau + scale * rng.normal(0, 1, tau.shape)
    for i in range(start):
        a.update(torque[i], tau[i])
        b.update(torque[i], tau[i])
    nmse, ready = [], []
    for i in range(start, start + 400):
        a.update(torque[i], tau[i])
        nmse.append(a.nmse)
        ready.append(a.ready)
    got_nmse, got_ready = b.update_many(torque[start:], tau[start:])
    np.testing.assert_allclose(got_nmse, nmse, rtol=1e-9)
    np.testing.assert_array_equal(got_ready, ready)
    assert any(ready) and not all(ready)
    assert (a.scored, a.ready) == (b.scored, b.ready)
    assert b.nmse == pytest.approx(a.nmse, rel=1e-9)
    np.testing.assert_array_equal(b.errors.sq, a.errors.sq)
    got_nmse, got_ready = b.update_many(torque[:0], tau[:0])     # nothing: no change
    assert len(got_nmse) == 0 and b.scored == a.scored


def _timed(min_samples: int = 10, min_seconds: float = 2.0, max_dt: float = 0.05) -> Readiness:
    r = Readiness(2, window=50, ready_nmse=0.5, unready_factor=1.5, min_samples=min_samples,
                  min_seconds=min_seconds, max_dt=max_dt)
    r.var = np.array([1.0, 4.0])
    return r


@pytest.mark.parametrize('rate', [125.0, 1000.0])
def test_the_seconds_floor_means_the_same_time_at_any_rate(rate):
    """With a good prediction from the first sample, ready comes after 2 s of stamps at 125 Hz
    and at 1 kHz alike (the sample floor, 10, is met long before), never earlier."""
    r = _timed()
    good, tau = np.array([0.1, 0.2]), np.zeros(2)
    first = None
    for i in range(int(3 * rate)):
        r.update(good, tau, 100.0 + i / rate)
        if r.ready and first is None:
            first = i / rate
    assert first is not None and 2.0 <= first <= 2.0 + 1.5 / rate
    assert r.seconds == pytest.approx((int(3 * rate) - 1) / rate)


def test_both_floors_must_hold():
    """Many samples in little time (a 10 kHz burst) are not enough with min_seconds, nor is
    much time with few samples (a 2 Hz stream) with min_samples."""
    good, tau = np.array([0.1, 0.2]), np.zeros(2)
    burst = _timed(min_samples=10, min_seconds=1.0)
    for i in range(5000):                               # 0.5 s at 10 kHz
        burst.update(good, tau, i * 1e-4)
    assert not burst.ready and burst.scored == 5000
    slow = _timed(min_samples=10, min_seconds=1.0, max_dt=1.0)
    for i in range(9):                                  # 4 s at 2 Hz, 9 samples
        slow.update(good, tau, i * 0.5)
    assert not slow.ready and slow.seconds == pytest.approx(4.0)
    slow.update(good, tau, 4.5)
    assert slow.ready


def test_gaps_count_at_most_max_dt_and_back_steps_count_nothing():
    """A pause of the stream (stamps 10 s apart) is not motion; a restarted clock (a stamp back
    in time) adds nothing; NaN / missing stamps add nothing and do not move the reference."""
    r = _timed(min_samples=1, min_seconds=0.5, max_dt=0.05)
    good, tau = np.array([0.1, 0.2]), np.zeros(2)
    r.update(good, tau, 0.0)
    r.update(good, tau, 10.0)                           # a 10 s gap: 0.05 s
    assert r.seconds == pytest.approx(0.05) and not r.ready
    r.update(good, tau, 3.0)                            # back in time: 0
    r.update(good, tau, None)
    r.update(good, tau, math.nan)
    assert r.seconds == pytest.approx(0.05)
    r.update(good, tau, 3.01)                           # from the last real stamp, 3.0
    assert r.seconds == pytest.approx(0.06)


def test_min_seconds_zero_is_the_sample_count_alone():
    """The default (0 s) keeps the old rule exactly, with or without stamps."""
    a = Readiness(2, 50, 0.5, 1.5, 60)
    b = Readiness(2, 50, 0.5, 1.5, 60, min_seconds=0.0, max_dt=0.1)
    a.var = b.var = np.array([1.0, 4.0])
    for i in range(60):
        a.update(np.array([0.1, 0.2]), np.zeros(2))
        b.update(np.array([0.1, 0.2]), np.zeros(2), 5.0 + i * 1e-3)
        assert a.ready == b.ready == (i == 59)


@pytest.mark.parametrize('start', [0, 7, 300])
def test_update_many_with_stamps_equals_update_row_by_row(start):
    """The seconds floor in the many-row form: the same ready rows and final state, stamps with
    jitter, a gap beyond max_dt, a step back and NaN stamps included."""
    rng = np.random.default_rng(start)
    k = start + 600
    stamps = 20.0 + np.cumsum(rng.uniform(0.004, 0.012, k))
    stamps[start + 100:] += 5.0                         # a gap
    stamps[start + 200] -= 1.0                          # one stamp back in time
    stamps[start + 50] = np.nan
    stamps[start + 51] = np.nan
    tau = rng.normal(0, 1, (k, 2))
    scale = np.resize(np.repeat([0.2, 1.5, 0.3, 0.9, 0.1], 90), k)[:, None] * [1.0, 2.0]
    torque = tau + scale * rng.normal(0, 1, tau.shape)
    a, b = _timed(min_samples=20, min_seconds=1.5), _timed(min_samples=20, min_seconds=1.5)
    for i in range(start):
        a.update(torque[i], tau[i], stamps[i])
        b.update(torque[i], tau[i], stamps[i])
    ready = []
    for i in range(start, k):
        a.update(torque[i], tau[i], stamps[i])
        ready.append(a.ready)
    _, got_ready = b.update_many(torque[start:], tau[start:], stamps[start:])
    np.testing.assert_array_equal(got_ready, ready)
    assert any(ready) and not all(ready)
    assert b.seconds == pytest.approx(a.seconds, rel=1e-12)
    assert (b.scored, b.ready) == (a.scored, a.ready)
    assert b._last_stamp == a._last_stamp
    assert b.ready_since == a.ready_since


def test_ready_since_is_the_stamp_of_the_sample_that_made_it_ready():
    r = _timed(min_samples=10, min_seconds=0.0)
    tau = np.zeros(2)
    good, bad = np.array([0.1, 0.2]), np.array([2.0, 4.0])    # nMSE 0.01 / 4
    for i in range(9):
        r.update(good, tau, 10.0 + 0.01 * i)
        assert r.ready_since is None
    r.update(good, tau, 10.09)                                 # the 10th: ready
    assert r.ready and r.ready_since == 10.09
    r.update(good, tau, 10.10)
    assert r.ready_since == 10.09                              # stays while ready
    for i in range(200):
        r.update(bad, tau, 11.0 + 0.01 * i)
    assert not r.ready and r.ready_since is None
    i = 0
    while not r.ready:
        r.update(good, tau, 20.0 + 0.01 * i)
        i += 1
    assert r.ready_since == 20.0 + 0.01 * (i - 1)              # ready again: the new stamp
    s = _timed(min_samples=10, min_seconds=0.0)
    for _ in range(10):
        s.update(good, tau)                                    # no stamps: ready, since unknown
    assert s.ready and s.ready_since is None


@pytest.mark.parametrize('chunk', [1, 7, 64, 1000])
def test_update_many_gives_the_ready_since_of_row_by_row_updates(chunk):
    rng = np.random.default_rng(chunk)
    k = 900
    stamps = 5.0 + np.cumsum(rng.uniform(0.004, 0.012, k))
    stamps[333] = np.nan
    tau = rng.normal(0, 1, (k, 2))
    scale = np.resize(np.repeat([0.2, 1.5, 0.3, 0.9, 0.1], 90), k)[:, None] * [1.0, 2.0]
    torque = tau + scale * rng.normal(0, 1, tau.shape)
    a, b = _timed(min_samples=20, min_seconds=0.5), _timed(min_samples=20, min_seconds=0.5)
    seen = set()
    for lo in range(0, k, chunk):
        hi = min(k, lo + chunk)
        for i in range(lo, hi):
            a.update(torque[i], tau[i], stamps[i])
            seen.add(a.ready_since is not None)
        b.update_many(torque[lo:hi], tau[lo:hi], stamps[lo:hi])
        assert b.ready == a.ready and b.ready_since == a.ready_since, (lo, hi)
    assert seen == {True, False}
