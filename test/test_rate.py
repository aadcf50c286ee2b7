"""Rate estimation under missed samples (issue 15): a 1 kHz stream where a quarter or more of the
samples never reach the estimator (at random, in runs, or every other one for a while, as when the
node falls behind) keeps its rate: the gaps are multiples of the period, not a new rate."""
import numpy as np
import pytest

from invdyn_ros.stages.estimation import FilterConfig, StreamingEstimator

RATE = 1000.0
T = 1.0 / RATE
SECONDS = 60


def _feed(t):
    """Stamps ``t`` through a measuring estimator (constant signal: only the stamps matter)."""
    est = StreamingEstimator(2, FilterConfig())
    q = np.zeros(2)
    rates = []
    for k, tk in enumerate(t):
        est.update(float(tk), q, q, q)
        if k % 100 == 99:
            rates.append(est.rate_hz)
    return est, np.asarray(rates, dtype=float)


def _random(rng, N, frac):
    return rng.random(N) >= frac


def _runs(rng, N, frac):
    """Runs of 1..20 consecutive samples removed, ``frac`` of the samples in all."""
    keep = np.ones(N, bool)
    i = 0
    while i < N:
        i += int(rng.integers(1, int(2 * 10.5 * (1 - frac) / frac)))   # mean run 10.5
        n = int(rng.integers(1, 21))
        keep[i:i + n] = False
        i += n
    return keep


def _behind(rng, N, frac):
    """The node falls behind now and then: for 5..40 ms it takes only every other sample
    (sensor QoS keeps the newest), otherwise every one; plus 1 in 20 dropped as bad input."""
    keep = np.ones(N, bool)
    i = 0
    while i < N:
        i += int(rng.integers(10, 60))
        n = int(rng.integers(5, 41))
        keep[i:i + n:2] = False
        i += n
    keep[19::20] = False
    return keep


@pytest.mark.parametrize('pattern,frac', [(_random, 0.25), (_random, 0.45), (_runs, 0.25),
                                          (_behind, 0.0)])
def test_missed_samples_keep_the_rate(pattern, frac):
    rng = np.random.default_rng(15)
    N = int(SECONDS * RATE)
    keep = pattern(rng, N, frac)
    keep[:40] = True                                  # a clean start (a start-up is tested apart)
    t = 100.0 + np.arange(N) * T + rng.uniform(-0.05 * T, 0.05 * T, N)
    missing = 1.0 - keep.mean()
    assert missing > 0.2 or pattern is not _runs      # the pattern removes what it says
    est, rates = _feed(t[keep])
    assert est.counters['rate_changes'] == 0
    assert np.all(np.abs(rates[1:] - RATE) <= 0.03 * RATE), (rates.min(), rates.max())
    assert est.rate_settled


def test_a_real_halving_is_still_detected_after_missed_samples():
    """1 kHz with 25 % missing, then a genuine 500 Hz (no gap near 1 ms any more): one change."""
    rng = np.random.default_rng(2)
    t1 = 10.0 + np.arange(5000) * T
    t1 = t1[_random(rng, 5000, 0.25) | (np.arange(5000) < 40)]
    t = np.concatenate([t1, t1[-1] + (1 + np.arange(3000)) * 2 * T])
    est, _ = _feed(t)
    assert est.counters['rate_changes'] == 1
    assert est.rate_hz == pytest.approx(500.0, rel=0.03)


# ---------------------------------------------------------------------- the pure rule
from invdyn_ros.stages.rate import (RATE_BLOCK, SETTLE_BLOCKS, RateEstimator,  # noqa: E402
                                    robust_period)


def test_robust_period_leaves_out_a_burst_unless_it_is_most_of_the_block():
    assert robust_period([1e-5] * 10 + [T] * 40) == pytest.approx(T)
    assert robust_period([1e-5] * 40 + [T] * 10) == pytest.approx(1e-5)   # the stream got faster


def _settled_at(period):
    r = RateEstimator(period=period, blocks=SETTLE_BLOCKS, size=RATE_BLOCK)
    assert r.settled
    return r


def test_a_block_of_doubled_gaps_with_a_tenth_at_the_period_keeps_it():
    r = _settled_at(T)
    for _ in range(3):                                # three such blocks in a row
        r.dts = [T] * 5 + [2 * T] * 45
        assert r.block() is False
    assert r.period == T and r.cand is None


def test_two_blocks_with_nothing_left_at_the_period_change_it():
    r = _settled_at(T)
    r.dts = [T] * 4 + [2 * T] * 46                    # under a tenth at the period: a candidate
    assert r.block() is False and r.cand is not None
    r.dts = [2 * T] * RATE_BLOCK
    assert r.block() is True and r.period == pytest.approx(2 * T)
    assert not r.settled and r.size < RATE_BLOCK      # short blocks while it settles again


def test_feed_stops_where_block_by_block_would_change_the_period():
    """``feed`` (the batch path) finds the same difference that changes the period."""
    dts = np.array([T] * 120 + [2 * T] * 200)
    r = _settled_at(T)
    k = r.feed(dts, commit=False)
    seq = _settled_at(T)
    for i, d in enumerate(dts):
        seq.dts.append(float(d))
        if len(seq.dts) >= seq.size and seq.block():
            break
    assert k == i
    assert r == _settled_at(T)                        # commit=False changed nothing
