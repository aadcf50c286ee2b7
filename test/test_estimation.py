"""Known-answer tests of invdyn_ros.estimation.

Tolerances come from the filter itself: for a sine of angular frequency w the causal chain has the
complex response ``H(w)^2 * F(w)`` (F: the half-sample mean or backward difference), so after
compensating the documented delay d the relative error of a channel is ``|H^2 F e^{jwd} - 1|``.
"""
import math

import numpy as np
import pytest
import scipy.signal

from invdyn_ros.errors import ConfigError, DatasetError
from invdyn_ros.estimation import (FilterConfig, State, StreamingEstimator, design_filter,
                                   estimate_offline, filter_delay_s)

RATE = 1000.0
T = 1.0 / RATE
A = 0.7                  # rad
F_SINE = 1.0             # Hz, well below the 30 Hz cutoff
W = 2 * np.pi * F_SINE


def run(est, t, q, qd=None, tau=None):
    """Feed arrays sample by sample; return the list of outputs (None or State)."""
    return [est.update(t[k], q[k], None if qd is None else qd[k], None if tau is None else tau[k])
            for k in range(len(t))]


def stack(outputs, field):
    return np.array([getattr(o, field) for o in outputs if o is not None])


def chain_error(config, rate, w, kind, derived_velocity=False):
    """Relative error |H^2 F e^{jwd} - 1| of a channel after compensating the delay.

    kind 'q' (mean), 'qd' (mean of the velocity) or 'qdd' (difference of the velocity); with
    derived_velocity the velocity itself is the backward difference of positions (another half
    sample, compensated as well).
    """
    sos, _ = design_filter(config, rate)
    _, h = scipy.signal.sosfreqz(sos, worN=[w / (2 * np.pi)], fs=rate)
    dt = 1.0 / rate
    z1 = np.exp(-1j * w * dt)                      # z^-1
    resp = h[0] ** 2
    resp *= (1 + z1) / 2 if kind in ('q', 'qd') else (1 - z1) / (1j * w * dt)
    d = filter_delay_s(config, rate)
    if derived_velocity and kind != 'q':
        resp *= (1 - z1) / (1j * w * dt)
        d += 0.5 * dt
    return abs(resp * np.exp(1j * w * d) - 1)


def sine(t, delay=0.0):
    s = t - delay
    return A * np.sin(W * s), A * W * np.cos(W * s), -A * W * W * np.sin(W * s)


# ---------------------------------------------------------------------- configuration
def test_config_validation_names_the_parameter():
    FilterConfig().validate()
    FilterConfig(rate_hz=100.0).validate()
    with pytest.raises(ConfigError, match='order'):
        FilterConfig(order=0).validate()
    with pytest.raises(ConfigError, match='order'):
        FilterConfig(order=2.5).validate()
    with pytest.raises(ConfigError, match='cutoff_hz'):
        FilterConfig(cutoff_hz=-1.0).validate()
    with pytest.raises(ConfigError, match='Nyquist'):
        FilterConfig(cutoff_hz=60.0, rate_hz=100.0).validate()
    with pytest.raises(ConfigError, match='max_gap_s'):
        FilterConfig(max_gap_s=float('nan')).validate()
    with pytest.raises(ConfigError, match='n_joints'):
        StreamingEstimator(0)
    with pytest.raises(ConfigError, match='rate_hz'):
        StreamingEstimator(2, FilterConfig(rate_hz=0.0))


# ---------------------------------------------------------------------- filtering
def test_output_equals_scipy_sosfilt_on_the_same_data():
    """q, qd, tau = two sosfilt stages of the two-tap mean; qdd = the contract's chain
    (low-pass the velocity, backward difference / dt, low-pass again), for regular stamps."""
    n, N = 3, 400
    cfg = FilterConfig(order=2, cutoff_hz=25.0, rate_hz=RATE)
    rng = np.random.default_rng(0)
    t = 5.0 + np.arange(N) * T
    q = np.cumsum(rng.normal(scale=1e-3, size=(N, n)), axis=0)
    qd = rng.normal(size=(N, n))
    tau = rng.normal(scale=10.0, size=(N, n))
    out = run(StreamingEstimator(n, cfg), t, q, qd, tau)
    assert all(isinstance(o, State) for o in out)

    sos = scipy.signal.butter(2, 25.0, output='sos', fs=RATE)
    zi = scipy.signal.sosfilt_zi(sos)[:, :, None]

    def lowpass(x, x0):
        return scipy.signal.sosfilt(sos, x, axis=0, zi=zi * x0)[0]

    def mean_then_two_stages(x):
        m = 0.5 * (x + np.vstack([x[:1], x[:-1]]))
        return lowpass(lowpass(m, m[0]), m[0])

    np.testing.assert_allclose(stack(out, 'q'), mean_then_two_stages(q), rtol=0, atol=1e-12)
    np.testing.assert_allclose(stack(out, 'qd'), mean_then_two_stages(qd), rtol=0, atol=1e-12)
    np.testing.assert_allclose(stack(out, 'tau'), mean_then_two_stages(tau), rtol=0, atol=1e-11)
    v1 = lowpass(qd, qd[0])
    a_raw = np.diff(v1, axis=0, prepend=v1[:1]) / T
    qdd_ref = lowpass(a_raw, np.zeros(n))
    np.testing.assert_allclose(stack(out, 'qdd'), qdd_ref, rtol=0, atol=1e-9 * np.abs(qdd_ref).max())


@pytest.mark.parametrize('rate', [100.0, 1000.0])
def test_filter_delay_matches_measured_delay_of_a_slow_sine(rate):
    cfg = FilterConfig(rate_hz=rate)
    d = filter_delay_s(cfg, rate)
    if rate >= 20 * cfg.cutoff_hz:
        # Far below Nyquist the bilinear design approaches the continuous 2nd-order Butterworth:
        # group delay sqrt(2) / (2 pi fc) per stage, plus half a sample.
        assert d == pytest.approx(2 * math.sqrt(2) / (2 * np.pi * 30.0) + 0.5 / rate, rel=0.03)

    f = 0.5                                      # Hz: cutoff / 60
    w = 2 * np.pi * f
    t = np.arange(int(12 * rate)) / rate
    x = np.sin(w * t)[:, None]
    y = stack(run(StreamingEstimator(1, cfg), t, x, np.zeros_like(x), x), 'q')[:, 0]
    keep = t > 2.0                               # past the start-up
    basis = np.column_stack([np.sin(w * t[keep]), np.cos(w * t[keep])])
    (a, b), *_ = np.linalg.lstsq(basis, y[keep], rcond=None)
    measured = -math.atan2(b, a) / w             # y = |.| sin(w (t - measured))
    # The phase delay at f differs from the DC group delay by O((f/fc)^2); bound it from the design.
    sos, _ = design_filter(cfg, rate)
    _, h = scipy.signal.sosfreqz(sos, worN=[f], fs=rate)
    z1 = np.exp(-1j * w / rate)
    exact = -np.angle(h[0] ** 2 * (1 + z1) / 2) / w
    assert measured == pytest.approx(exact, abs=1e-6)
    assert abs(measured - d) <= abs(exact - d) + 1e-6
    assert abs(measured - d) < 0.01 * d


@pytest.mark.parametrize('velocity_given', [True, False])
def test_derivatives_of_a_sine_match_analytic_after_the_delay(velocity_given):
    cfg = FilterConfig(rate_hz=RATE)
    t = 100.0 + np.arange(3000) * T
    q, qd, _ = sine(t)
    q, qd = q[:, None], qd[:, None]
    out = run(StreamingEstimator(1, cfg), t, q, qd if velocity_given else None, 2.0 * q)
    stamps = np.array([o.stamp for o in out if o is not None])
    assert len(stamps) == len(t) - (0 if velocity_given else 1)
    d = filter_delay_s(cfg, RATE)
    dv = d if velocity_given else d + 0.5 * T
    settle = stamps > t[0] + 0.5                 # the start assumes the sine was standing still
    q_ref, _, _ = sine(stamps, d)
    _, qd_ref, qdd_ref = sine(stamps, dv)
    derived = not velocity_given
    for field, ref, scale, kind in (('q', q_ref, A, 'q'), ('qd', qd_ref, A * W, 'qd'),
                                    ('qdd', qdd_ref, A * W * W, 'qdd')):
        tol = scale * chain_error(cfg, RATE, W, kind, derived) * 1.05 + 1e-9 * scale
        err = np.abs(stack(out, field)[:, 0] - ref)[settle].max()
        assert err <= tol, (field, err, tol)
    np.testing.assert_allclose(stack(out, 'tau')[settle, 0], 2.0 * q_ref[settle],
                               atol=2 * A * chain_error(cfg, RATE, W, 'q') * 1.05)


@pytest.mark.parametrize('velocity_given', [True, False])
def test_jittered_stamps_still_track(velocity_given):
    """Stamps jitter by up to +-30 % of the period; q is sampled at the real stamps.

    The filter runs in sample index, so its output at k reflects sample k - D stamped
    t_{k-D} = (k - D) T + e_{k-D}: compared with t_k - d the time error is at most 2 * 0.3 T, i.e.
    a relative error of w * 0.6 T on top of the chain's own error. qdd divides the filtered velocity
    change by the equally filtered time change, so it obeys the same bound (dividing by the newest dt
    instead would be off by ~20 %).
    """
    cfg = FilterConfig(rate_hz=RATE)
    eps = 0.3
    rng = np.random.default_rng(1)
    t = np.arange(3000) * T + rng.uniform(-eps * T, eps * T, 3000)
    q, qd, _ = sine(t)
    out = run(StreamingEstimator(1, cfg), t, q[:, None], qd[:, None] if velocity_given else None)
    stamps = np.array([o.stamp for o in out if o is not None])
    d = filter_delay_s(cfg, RATE)
    dv = d if velocity_given else d + 0.5 * T
    settle = stamps > 0.5
    q_ref, _, _ = sine(stamps, d)
    _, qd_ref, qdd_ref = sine(stamps, dv)
    jitter = W * 2 * eps * T
    for field, ref, scale, kind in (('q', q_ref, A, 'q'), ('qd', qd_ref, A * W, 'qd'),
                                    ('qdd', qdd_ref, A * W * W, 'qdd')):
        tol = scale * (chain_error(cfg, RATE, W, kind, not velocity_given) + jitter)
        err = np.abs(stack(out, field)[:, 0] - ref)[settle].max()
        assert err <= tol, (field, err, tol)


# ---------------------------------------------------------------------- bad input
def _clean_stream(n=2, N=300):
    t = 10.0 + np.arange(N) * T
    phase = np.arange(n)
    q = A * np.sin(W * t[:, None] + phase)
    qd = A * W * np.cos(W * t[:, None] + phase)
    tau = 5.0 * q + 1.0
    return t, q, qd, tau


@pytest.mark.parametrize('velocity_given', [True, False])
def test_rejected_samples_are_counted_and_change_nothing(velocity_given):
    n = 2
    t, q, qd, tau = _clean_stream(n)
    cfg = FilterConfig(rate_hz=RATE)
    clean = run(StreamingEstimator(n, cfg), t, q, qd if velocity_given else None, tau)

    good = np.ones(n)
    bad = [  # (stamp offset from the previous good sample, q, qd, tau, counter)
        (0.5 * T, [np.nan, 0.1], good, good, 'rejected_nonfinite'),
        (0.5 * T, good * 0.1, good, [np.inf, 0.0], 'rejected_nonfinite'),
        (float('nan'), good * 0.1, good, good, 'rejected_nonfinite'),
        (0.5 * T, [0.1, 0.1, 0.1], good, good, 'rejected_shape'),
        (0.5 * T, good * 0.1, good, [1.0], 'rejected_shape'),
        (0.5 * T, good * 0.1, [1.0, 2.0, 3.0], good, 'rejected_shape'),
        (0.5 * T, None, good, good, 'rejected_shape'),
        (0.5 * T, 'abc', good, good, 'rejected_shape'),
        (0.5 * T, [1e6, 0.0], good, good, 'rejected_magnitude'),
        (0.5 * T, good * 0.1, good, [1e9, 0.0], 'rejected_magnitude'),
        (0.5 * T, good * 0.1, [500.0, 0.0], good, 'rejected_magnitude'),
        (0.5 * T, good * 50.0, None, good, 'rejected_magnitude'),   # |dq/dt| absurd
        (0.0, good * 0.3, good, good, 'dropped_stamp'),              # duplicate stamp
        (-0.5 * T, good * 0.3, good, good, 'dropped_stamp'),         # backwards
    ]
    est = StreamingEstimator(n, cfg)
    dirty = []
    expected = dict.fromkeys(est.counters, 0)
    rng = np.random.default_rng(3)
    for k in range(len(t)):
        dirty.append(est.update(t[k], q[k], qd[k] if velocity_given else None, tau[k]))
        if k >= 5 and k % 20 == 0:
            offset, bq, bqd, btau, counter = bad[rng.integers(len(bad))]
            assert est.update(t[k] + offset, bq, bqd, btau) is None
            expected[counter] += 1
    for a, b in zip(clean, dirty):
        assert (a is None) == (b is None)
        if a is not None:
            for field in ('stamp', 'q', 'qd', 'qdd', 'tau'):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    expected['accepted'] = len(t)
    expected['velocity_from_positions'] = 0 if velocity_given else len(t) - 1
    assert est.counters == expected
    assert sum(expected[c] for c in expected if c.startswith(('rejected', 'dropped'))) >= 10


def test_nan_velocity_falls_back_to_position_differences():
    n = 2
    t, q, qd, tau = _clean_stream(n, N=1500)
    qd_bad = qd.copy()
    qd_bad[400:1400:7, 0] = np.nan          # joint 0 only, every 7th sample
    qd_bad[403:1400:50, :] = np.nan         # both joints
    est = StreamingEstimator(n, FilterConfig(rate_hz=RATE))
    out = run(est, t, q, qd_bad, tau)
    assert all(o is not None for o in out)
    n_bad = int(np.isnan(qd_bad).any(axis=1).sum())
    assert est.counters['velocity_from_positions'] == n_bad
    assert est.counters['accepted'] == len(t)
    # Still the analytic velocity: a position difference is the velocity half a sample earlier.
    d = filter_delay_s(FilterConfig(rate_hz=RATE), RATE)
    stamps = stack(out, 'stamp')
    ref = A * W * np.cos(W * (stamps[:, None] - d) + np.arange(n))
    tol = A * W * (chain_error(FilterConfig(rate_hz=RATE), RATE, W, 'qd', True) + W * 0.5 * T)
    assert np.abs(stack(out, 'qd') - ref)[500:].max() <= tol


def test_velocity_none_and_tau_none():
    t, q, _, _ = _clean_stream(2, N=50)
    est = StreamingEstimator(2, FilterConfig(rate_hz=RATE))
    first = est.update(t[0], q[0])           # no velocity, no previous sample: primes only
    assert first is None
    second = est.update(t[1], q[1], [], [])
    assert isinstance(second, State) and second.tau is None
    np.testing.assert_allclose(second.qd, (q[1] - q[0]) / T, rtol=1e-12)   # steady start
    np.testing.assert_array_equal(second.qdd, 0.0)
    assert est.counters['velocity_from_positions'] == 1
    # Efforts that appear later start at their own steady state: no transient from zero.
    third = est.update(t[2], q[2], None, [3.0, -4.0])
    np.testing.assert_allclose(third.tau, [3.0, -4.0], rtol=1e-12)


def test_numbers_beyond_float_range_are_rejected_not_raised():
    est = StreamingEstimator(2, FilterConfig(rate_hz=RATE))
    assert est.update(0.0, [10 ** 400, 0.0]) is None
    assert est.update(10 ** 400, [0.0, 0.0]) is None
    assert est.update(0.0, [0.0, 0.0], None, [0, 10 ** 400]) is None
    assert est.counters['rejected_shape'] == 3 and est.counters['accepted'] == 0


def test_outputs_stay_finite_under_random_garbage():
    rng = np.random.default_rng(7)
    est = StreamingEstimator(3, FilterConfig(rate_hz=500.0))
    choices = [np.nan, np.inf, -np.inf, 1e300, 1e-300, 0.0]
    stamp = 0.0
    emitted = 0
    for _ in range(3000):
        stamp += rng.choice([2e-3, 2e-3, 2e-3, 0.0, -1e-3, 1e-7, 0.5, -5.0])
        q = rng.normal(size=3)
        qd = rng.normal(size=3) * 3
        tau = rng.normal(size=3) * 10
        for arr in (q, qd, tau):
            if rng.random() < 0.05:
                arr[rng.integers(3)] = rng.choice(choices)
        out = est.update(stamp, q, qd if rng.random() < 0.8 else None,
                         tau if rng.random() < 0.8 else None)
        if out is not None:
            emitted += 1
            for field in ('q', 'qd', 'qdd'):
                assert np.isfinite(getattr(out, field)).all()
            assert out.tau is None or np.isfinite(out.tau).all()
    assert emitted > 1000
    assert est.counters['rejected_nonfinite'] > 0 and est.counters['resets'] > 0


# ---------------------------------------------------------------------- gaps, resets, warm-up
def test_gap_resets_without_transient():
    cfg = FilterConfig(rate_hz=RATE, max_gap_s=0.1)
    t = np.concatenate([np.arange(1000) * T, 1.0 + 0.537 + np.arange(1500) * T])   # 0.537 s gap
    q, qd, _ = sine(t)
    est = StreamingEstimator(1, cfg)
    out = run(est, t, q[:, None], qd[:, None], 2.0 * q[:, None])
    assert est.counters['resets'] == 1
    first_after = out[1000]
    # Steady-state initial conditions: the first output after the gap *is* the new sample.
    np.testing.assert_allclose(first_after.q, q[1000], rtol=1e-12)
    np.testing.assert_allclose(first_after.qd, qd[1000], rtol=1e-12)
    np.testing.assert_allclose(first_after.tau, 2.0 * q[1000], rtol=1e-12)
    after = out[1000:]
    # No spike: everything stays within the signal's own range (plus the filter's overshoot; the
    # step response of two 2nd-order Butterworth stages overshoots by < 10 %).
    assert np.abs(stack(after, 'q')).max() <= A * 1.1
    assert np.abs(stack(after, 'qd')).max() <= A * W * 1.1
    assert np.abs(stack(after, 'qdd')).max() <= A * W * W * 1.1
    # ... and after a few delays it tracks as if it had never stopped.
    d = filter_delay_s(cfg, RATE)
    stamps = stack(after, 'stamp')
    settled = stamps > stamps[0] + 20 * d
    _, qd_ref, _ = sine(stamps, d)
    tol = A * W * chain_error(cfg, RATE, W, 'qd') * 1.05 + 1e-9
    assert np.abs(stack(after, 'qd')[:, 0] - qd_ref)[settled].max() <= tol


def test_clock_jump_back_resets_and_recovers():
    """A restarted clock (or looped bag) jumps back by more than max_gap_s: reset, not lock-out."""
    t, q, qd, tau = _clean_stream(2, N=200)
    t2 = np.concatenate([t[:100], t[100:] - 5.0])
    est = StreamingEstimator(2, FilterConfig(rate_hz=RATE))
    out = run(est, t2, q, qd, tau)
    assert est.counters['resets'] == 1 and est.counters['dropped_stamp'] == 0
    assert all(o is not None for o in out)
    # A single far-future glitch: reset into it, reset back out of it -- no permanent lock-out.
    est = StreamingEstimator(2, FilterConfig(rate_hz=RATE))
    run(est, t[:100], q[:100], qd[:100], tau[:100])
    est.update(t[99] + 1000.0, q[99], qd[99], tau[99])
    later = run(est, t[100:], q[100:], qd[100:], tau[100:])
    assert est.counters['resets'] == 2
    assert all(o is not None for o in later)


@pytest.mark.parametrize('velocity_given', [True, False])
def test_nominal_rate_from_the_median_of_the_first_20_intervals(velocity_given):
    rate = 500.0
    rng = np.random.default_rng(2)
    t = np.arange(200) / rate + rng.uniform(-1e-4, 1e-4, 200)
    q, qd, _ = sine(t)
    est = StreamingEstimator(1, FilterConfig(rate_hz=None))
    out = run(est, t, q[:, None], qd[:, None] if velocity_given else None)
    assert all(o is None for o in out[:20])
    assert all(o is not None for o in out[20:])
    assert est.rate_hz == pytest.approx(1.0 / np.median(np.diff(t[:21])), rel=1e-12)
    assert est.delay_s == pytest.approx(filter_delay_s(FilterConfig(), est.rate_hz))
    np.testing.assert_allclose(out[20].q, q[20], rtol=1e-12)   # primed at its own steady state


def test_cutoff_at_or_above_nyquist_of_the_measured_rate_designs_no_filter():
    """Never a silently moved cutoff: no output, a message naming filter_cutoff_hz, a counter;
    once the stream runs at a rate that allows the cutoff, the filter is designed."""
    est = StreamingEstimator(1, FilterConfig(cutoff_hz=30.0))
    t = np.arange(60) / 40.0                                   # 40 Hz: Nyquist 20 Hz < 30 Hz
    out = run(est, t, np.zeros((60, 1)), np.zeros((60, 1)))
    assert all(o is None for o in out)
    assert est.sos is None and est.rate_hz == pytest.approx(40.0)
    assert 'filter_cutoff_hz' in est.filter_error and '20' in est.filter_error
    assert est.counters['cutoff_above_nyquist'] == 60 - 20
    t2 = t[-1] + 0.01 + np.arange(300) / 100.0                 # the driver now runs at 100 Hz
    out = run(est, t2, np.zeros((300, 1)), np.zeros((300, 1)))
    assert est.filter_error is None and est.rate_hz == pytest.approx(100.0)
    assert est.counters['rate_changes'] == 1
    assert out[-1] is not None and sum(o is None for o in out) <= 3 * 10


def _rate_stream(t, n=2):
    q = A * np.sin(W * t[:, None] + np.arange(n))
    qd = A * W * np.cos(W * t[:, None] + np.arange(n))
    return q, qd, 5.0 * q


def _run_with_rates(est, t, q, qd, tau):
    """Every sample through ``est``: the outputs and the rate estimate after each one."""
    out, rates = [], []
    for k in range(len(t)):
        out.append(est.update(t[k], q[k], qd[k], tau[k]))
        rates.append(est.rate_hz)
    return out, rates


def test_startup_burst_is_detected_and_the_rate_re_estimated():
    """30 messages 10 us apart, then 1 kHz (the probe): the burst fools the first design, the
    monitor corrects it within a few dozen samples, with a rate change to warn about."""
    t = np.concatenate([10.0 + 1e-5 * np.arange(30), 10.0 + 3e-4 + np.arange(3000) * T])
    q, qd, tau = _rate_stream(t)
    est = StreamingEstimator(2, FilterConfig())
    out, rates = _run_with_rates(est, t, q, qd, tau)
    assert est.rate_hz == pytest.approx(RATE, rel=1e-6)
    assert est.counters['rate_changes'] == 1 and est.rate_settled
    fooled = [k for k, o in enumerate(out) if o is not None and rates[k] > 2 * RATE]
    assert 0 < len(fooled) <= 40                               # outputs of the fooled design
    # afterwards the estimate tracks the signal (delay-compensated, the chain's own error)
    d = filter_delay_s(FilterConfig(), RATE)
    last = out[-1]
    np.testing.assert_allclose(last.q, A * np.sin(W * (t[-1] - d) + np.arange(2)), atol=1e-3)


@pytest.mark.parametrize('first', [True, False])
def test_a_burst_a_pause_and_jitter_with_drops_keep_the_rate(first):
    """A short burst (5 stamps 10 us apart) at the start or mid-run, pauses below and above
    max_gap_s, +-10 % jitter and 5 % dropped messages: no rate change."""
    rng = np.random.default_rng(4)
    t = 10.0 + np.arange(6000) * T + rng.uniform(-0.1 * T, 0.1 * T, 6000)
    t = t[rng.random(6000) > 0.05]
    k = 0 if first else 2000
    t = np.concatenate([t[:k], t[k] - 1e-5 * np.arange(5, 0, -1), t[k:]])
    t[3000:] += 0.05                                           # a pause below max_gap_s
    t[4000:] += 0.5                                            # and one above it (a reset)
    q, qd, tau = _rate_stream(t)
    est = StreamingEstimator(2, FilterConfig())
    run(est, t, q, qd, tau)
    assert est.counters['rate_changes'] == 0
    assert est.rate_hz == pytest.approx(RATE, rel=0.05)
    assert est.counters['resets'] == 1


@pytest.mark.parametrize('new_rate', [500.0, 2000.0, 10000.0])
def test_a_rate_change_mid_run_is_re_estimated(new_rate):
    t1 = 10.0 + np.arange(1000) * T
    t = np.concatenate([t1, t1[-1] + (1 + np.arange(4000)) / new_rate])
    q, qd, tau = _rate_stream(t)
    est = StreamingEstimator(2, FilterConfig())
    out, rates = _run_with_rates(est, t, q, qd, tau)
    assert est.counters['rate_changes'] == 1 and est.counters['resets'] == 1
    assert est.rate_hz == pytest.approx(new_rate, rel=1e-6)
    assert est.delay_s == pytest.approx(filter_delay_s(FilterConfig(), new_rate))
    # detected within two long blocks of the change (plus the one the change starts in)
    changed_at = next(k for k in range(1001, len(t)) if rates[k] != rates[1000])
    assert changed_at - 1000 <= 3 * estimation.RATE_BLOCK
    assert all(o is not None for o in out[changed_at:])       # re-primed at once: no gap


def test_a_configured_rate_is_not_monitored():
    t = np.concatenate([10.0 + np.arange(500) * T, 10.5 + np.arange(500) * 2 * T])
    q, qd, tau = _rate_stream(t)
    est = StreamingEstimator(2, FilterConfig(rate_hz=RATE))
    run(est, t, q, qd, tau)
    assert est.rate_hz == RATE and est.counters['rate_changes'] == 0 and est.rate_settled


@pytest.mark.parametrize('rate_hz', [None, RATE])
def test_one_stamp_in_the_future_drops_only_itself(rate_hz):
    """One stamp 40 ms ahead: dropped and counted; every genuine sample after it gives exactly
    the state of a stream without it."""
    t = 10.0 + np.arange(400) * T
    q, qd, tau = _rate_stream(t)
    bad_t = t.copy()
    bad_t[200] += 0.040
    est, ref = StreamingEstimator(2, FilterConfig(rate_hz=rate_hz)), \
        StreamingEstimator(2, FilterConfig(rate_hz=rate_hz))
    out = run(est, bad_t, q, qd, tau)
    keep = np.arange(400) != 200
    expected = run(ref, t[keep], q[keep], qd[keep], tau[keep])
    assert out[200] is None
    got = [o for k, o in enumerate(out) if k != 200]
    for a, b in zip(got, expected):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a.q, b.q)
            np.testing.assert_array_equal(a.qdd, b.qdd)
    c = est.counters
    assert c['dropped_future_stamp'] == 1 and c['dropped_stamp'] == 0
    assert c['stamp_jumps'] == 0 and c['resets'] == 0


def test_a_persistent_stamp_jump_moves_the_time_axis():
    t = 10.0 + np.arange(400) * T
    t[200:] += 0.040                                           # the source's clock jumped
    q, qd, tau = _rate_stream(t)
    est = StreamingEstimator(2, FilterConfig(rate_hz=RATE))
    out = run(est, t, q, qd, tau)
    c = est.counters
    assert c['dropped_future_stamp'] == 1 and c['stamp_jumps'] == 1 and c['resets'] == 0
    assert out[200] is None and all(o is not None for o in out[201:])


def test_efforts_beyond_the_label_limits_are_dropped_not_the_sample():
    t = 10.0 + np.arange(300) * T
    q, qd, tau = _rate_stream(t)
    bad = tau.copy()
    bad[150, 1] = 9000.0                                       # > 1.5 x 100, < max_abs_effort
    est = StreamingEstimator(2, FilterConfig(rate_hz=RATE), effort_limits=[100.0, 150.0])
    ref = StreamingEstimator(2, FilterConfig(rate_hz=RATE), effort_limits=[100.0, 150.0])
    out = run(est, t, q, qd, bad)
    taus = [None if k == 150 else tau[k] for k in range(300)]
    expected = run(ref, t, q, qd, taus)
    assert out[150] is not None and out[150].tau is None       # the state is still estimated
    for a, b in zip(out, expected):
        np.testing.assert_array_equal(a.q, b.q)
        assert (a.tau is None) == (b.tau is None)
        if a.tau is not None:
            np.testing.assert_array_equal(a.tau, b.tau)       # the spike never got filtered in
    assert est.counters['rejected_labels'] == 1 and est.counters['rejected_magnitude'] == 0
    bad[160, 0] = 1e5                                          # absurd: the sample goes, as before
    est2 = StreamingEstimator(2, FilterConfig(rate_hz=RATE), effort_limits=[100.0, 150.0])
    run(est2, t, q, qd, bad)
    assert est2.counters['rejected_magnitude'] == 1 and est2.counters['rejected_labels'] == 1
    with pytest.raises(ConfigError, match='effort_limits'):
        StreamingEstimator(2, FilterConfig(), effort_limits=[1.0])


def test_manual_reset_keeps_rate_and_counters():
    t, q, qd, tau = _clean_stream(2, N=60)
    est = StreamingEstimator(2, FilterConfig())
    run(est, t, q, qd, tau)
    rate, accepted = est.rate_hz, est.counters['accepted']
    est.reset()
    assert est.rate_hz == rate and est.counters['accepted'] == accepted
    state = est.update(t[-1] + 1.0, q[0], qd[0], tau[0])
    np.testing.assert_allclose(state.q, q[0], rtol=1e-12)
    assert est.counters['resets'] == 0                        # only automatic resets are counted


# ---------------------------------------------------------------------- offline
@pytest.mark.parametrize('eps', [0.0, 0.2])
def test_offline_is_zero_phase_and_differentiates_with_real_t(eps):
    """Error budget (relative): 1 - |H(w)|^2 (filtfilt magnitude), (w T)^2 / 6 per central
    difference of np.gradient, and with stamp jitter +-eps T a time smear of at most 2 eps T
    (the index-space filter output describes the neighbours' mean time), i.e. w * 2 eps T.
    A factor 1.5 covers the neglected higher-order terms."""
    rng = np.random.default_rng(4)
    t = 3.0 + np.arange(4000) * T + rng.uniform(-eps * T, eps * T, 4000)
    q, qd, qdd = sine(t)
    cfg = FilterConfig()
    q_f, qd_f, qdd_f, tau_f = estimate_offline(t, q[:, None], None, 3.0 * q[:, None], cfg)
    inner = slice(500, -500)                                   # away from the padded ends
    sos, _ = design_filter(cfg, RATE)
    _, h = scipy.signal.sosfreqz(sos, worN=[F_SINE], fs=RATE)
    mag = 1 - abs(h[0]) ** 2
    grad = (W * T) ** 2 / 6
    smear = W * 2 * eps * T
    for got, ref, scale, budget in ((q_f, q, A, mag), (tau_f, 3.0 * q, 3.0 * A, mag),
                                    (qd_f, qd, A * W, mag + grad),
                                    (qdd_f, qdd, A * W * W, mag + 2 * grad)):
        tol = 1.5 * scale * (budget + smear)
        assert np.abs(got[inner, 0] - ref[inner]).max() <= tol
    if eps == 0.0:
        # zero phase: the fitted delay of the filtered sine is ~0 (the causal chain's is 15 ms)
        basis = np.column_stack([np.sin(W * t), np.cos(W * t)])[inner]
        (a, b), *_ = np.linalg.lstsq(basis, q_f[inner, 0], rcond=None)
        assert abs(math.atan2(b, a) / W) < 1e-6
    # the recorded velocity is used where finite, the position gradient elsewhere
    qd_rec = np.where(rng.random(qd.shape) < 0.1, np.nan, qd)[:, None]
    _, qd_f2, _, tau_none = estimate_offline(t, q[:, None], qd_rec, None, cfg)
    assert tau_none is None
    assert np.abs(qd_f2[inner, 0] - qd[inner]).max() <= 1.5 * A * W * (mag + grad + smear)


def test_offline_segments_at_gaps_and_rejects_bad_arrays():
    t = np.concatenate([np.arange(300) * T, 5.0 + np.arange(5) * T, [10.0]])
    q = np.concatenate([np.zeros(300), np.ones(5), [2.0]])[:, None]
    q_f, qd_f, qdd_f, _ = estimate_offline(t, q, config=FilterConfig(rate_hz=RATE))
    # constant segments stay constant: nothing is smeared across the gaps
    np.testing.assert_allclose(q_f[:, 0], q[:, 0], atol=1e-12)
    np.testing.assert_allclose(qd_f, 0.0, atol=1e-9)
    with pytest.raises(DatasetError):
        estimate_offline(t, np.where(t > 1, np.nan, q[:, 0])[:, None])
    with pytest.raises(DatasetError):
        estimate_offline(t[::-1], q)
    with pytest.raises(DatasetError):
        estimate_offline(t, q[:-1])
    with pytest.raises(DatasetError):
        estimate_offline(t, q, tau=np.zeros((len(t), 2)))


# ---------------------------------------------------------------------- update_many (batch)
from invdyn_ros import estimation, estimation_batch, filters  # noqa: E402
from invdyn_ros.estimation import StateBatch  # noqa: E402

_STATE_ATTRS = ('_have_prev', '_t_prev', '_primed', '_tau_seen', '_rate', 'rate_hz', 'cutoff_hz',
                '_held_t', '_jump_dt',
                '_fast_dt', 'filter_error',
                'delay_s', 'sos', '_zi', '_raw_prev', '_tv_prev', '_q_prev', '_tau_hold', '_x',
                '_tv', '_raw')
_BAD_KINDS = ('nan_q', 'inf_tau', 'nan_stamp', 'absurd_q', 'absurd_qd', 'absurd_tau', 'absurd_dq',
              'dup_stamp', 'backwards', 'far_future', 'nan_qd_all')
_MALFORMED_KINDS = ('len_q', 'len_qd', 'len_tau', 'str_q', 'none_q', 'str_stamp', 'huge_int')


def _dirty_stream(seed, form, n=3, N=1500, rate=100.0):
    """A stream (stamps, q, qd, tau) with every kind of bad sample, in the given input form.

    form 'entries': Python lists of per-sample entries (ndarray / list / tuple / None / [] /
    malformed); 'arrays': 2-D float arrays (absent velocities are NaN rows, bad efforts NaN/Inf);
    'arrays_no_tau': 2-D arrays and tau=None. Stretches without velocity or efforts, partial NaN
    velocities, jittered stamps (odd seeds), gaps and clock jumps back are part of the good data.
    """
    rng = np.random.default_rng(seed)
    T_ = 1.0 / rate
    t = 50.0 + np.arange(N) * T_
    if seed % 2:
        t += rng.uniform(-0.3 * T_, 0.3 * T_, N)
    for k in rng.integers(100, N, 2):
        t[k:] += 0.5                              # gaps > max_gap_s
    t[rng.integers(100, N):] -= 20.0              # the clock jumps back
    phase = np.arange(n)
    q = A * np.sin(W * t[:, None] + phase) + 1e-4 * rng.normal(size=(N, n))
    qd = A * W * np.cos(W * t[:, None] + phase) + 1e-3 * rng.normal(size=(N, n))
    tau = 5.0 * q + 0.1 * rng.normal(size=(N, n))

    def stretches(p_start):
        mask = np.zeros(N, dtype=bool)
        for k in np.flatnonzero(rng.random(N) < p_start):
            mask[k:k + rng.integers(3, 150)] = True
        return mask

    no_vel, no_tau = stretches(0.004), stretches(0.004)
    qd_nan = rng.random((N, n)) < 0.01           # single NaN velocities
    arrays = form != 'entries'
    kinds = _BAD_KINDS + (() if arrays else _MALFORMED_KINDS)
    S, Q, QD, TAU = [], [], [], []
    for k in range(N):
        qd_k = np.where(qd_nan[k], np.nan, qd[k])
        if no_vel[k]:
            qd_k = np.full(n, np.nan) if arrays else (None if rng.random() < 0.5 else [])
        tau_k = None if (no_tau[k] and form == 'entries') else tau[k]
        q_k = q[k] if arrays or rng.random() < 0.7 else list(q[k])
        S.append(t[k] if arrays or rng.random() < 0.8 else float(t[k]))
        Q.append(q_k)
        QD.append(qd_k)
        TAU.append(tau_k)
        if rng.random() < 0.04:
            kind = kinds[rng.integers(len(kinds))]
            s, bq, bqd, btau = t[k] + 0.5 * T_, q[k].copy(), qd[k].copy(), tau[k].copy()
            if kind == 'nan_q':
                bq[rng.integers(n)] = np.nan
            elif kind == 'inf_tau':
                btau[rng.integers(n)] = np.inf
            elif kind == 'nan_stamp':
                s = np.nan
            elif kind == 'absurd_q':
                bq[0] = 1e6
            elif kind == 'absurd_qd':
                bqd[0] = 1e3
            elif kind == 'absurd_tau':
                btau[0] = 1e9
            elif kind == 'absurd_dq':         # accepted with a velocity, rejected without one
                bq += 50.0
                if rng.random() < 0.5:
                    bqd[:] = np.nan
            elif kind == 'dup_stamp':
                s = t[k]
            elif kind == 'backwards':
                s = t[k] - 0.5 * T_
            elif kind == 'far_future':
                s = t[k] + 1000.0
            elif kind == 'nan_qd_all':
                bqd[:] = np.nan
            elif kind == 'len_q':
                bq = np.zeros(n + 1)
            elif kind == 'len_qd':
                bqd = np.zeros(n + 2)
            elif kind == 'len_tau':
                btau = np.zeros(n - 1)
            elif kind == 'str_q':
                bq = 'abc'
            elif kind == 'none_q':
                bq = None
            elif kind == 'str_stamp':
                s = 'x'
            elif kind == 'huge_int':
                bq = [10 ** 400] * n
            S.append(s)
            Q.append(bq)
            QD.append(bqd)
            TAU.append(btau)
    if not arrays:
        return S, Q, QD, TAU
    return (np.array(S, dtype=np.float64), np.array(Q), np.array(QD),
            None if form == 'arrays_no_tau' else np.array(TAU))


def _sequential(est, stamps, q, qd, tau):
    """update() per sample: ([(index, State)], resets after each sample)."""
    states, resets = [], []
    for k in range(len(stamps)):
        s = est.update(stamps[k], q[k], None if qd is None else qd[k],
                       None if tau is None else tau[k])
        resets.append(est.counters['resets'])
        if s is not None:
            states.append((k, s))
    return states, np.array(resets, dtype=np.int64)


def _assert_batch_equals(batch, states, resets, offset=0):
    assert isinstance(batch, StateBatch) and len(batch) == len(states)
    np.testing.assert_array_equal(batch.index + offset, [k for k, _ in states])
    assert batch.index.dtype == np.int64 and batch.resets.dtype == np.int64
    np.testing.assert_array_equal(batch.resets, resets)
    for j, (_, s) in enumerate(states):
        b = batch.state(j)
        assert b.stamp == s.stamp == batch.stamp[j]
        for field in ('q', 'qd', 'qdd'):
            np.testing.assert_array_equal(getattr(b, field), getattr(s, field))
            np.testing.assert_array_equal(getattr(batch, field)[j], getattr(s, field))
        assert bool(batch.has_tau[j]) == (s.tau is not None) == (b.tau is not None)
        if s.tau is None:
            assert np.isnan(batch.tau[j]).all()
        else:
            np.testing.assert_array_equal(b.tau, s.tau)


def _assert_same_state(a, b):
    assert a.counters == b.counters
    for name in _STATE_ATTRS:
        va, vb = getattr(a, name), getattr(b, name)
        if isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
            np.testing.assert_array_equal(va, vb, err_msg=name)
        else:
            assert va == vb, name


def _tail(est_a, est_b, n, start, rate=100.0):
    """A further clean stretch fed with update() to both: the outputs must be identical."""
    t = start + 0.5 / rate + np.arange(40) / rate
    q = A * np.sin(W * t[:, None] + np.arange(n))
    qd = A * W * np.cos(W * t[:, None] + np.arange(n))
    for k in range(len(t)):
        qd_k = qd[k] if k % 10 < 6 else None
        sa, sb = est_a.update(t[k], q[k], qd_k, 3 * q[k]), est_b.update(t[k], q[k], qd_k, 3 * q[k])
        assert (sa is None) == (sb is None)
        if sa is not None:
            for field in ('stamp', 'q', 'qd', 'qdd', 'tau'):
                np.testing.assert_array_equal(getattr(sa, field), getattr(sb, field))
    _assert_same_state(est_a, est_b)


@pytest.fixture(params=['default', 'tiny_runs'])
def run_sizes(request, monkeypatch):
    """'tiny_runs' vectorizes every clean run (MIN 1) in blocks of at most 5 samples."""
    if request.param == 'tiny_runs':
        monkeypatch.setattr(estimation_batch, 'MIN_BATCH_RUN', 1)
        monkeypatch.setattr(estimation_batch, 'MAX_BATCH_RUN', 5)
    return request.param


def test_run_sizes_take_effect(run_sizes, monkeypatch):
    """The fixture's patches reach the code that reads them (``estimation_batch``'s limits and
    ``filters.filter_inplace``): the kernel calls' widths are the runs. A patch of a name nobody
    looks up any more would make the tests using the fixture unable to fail."""
    widths = []
    real = filters.filter_inplace

    def recording(sos, x, zi):
        widths.append(x.shape[1])
        real(sos, x, zi)

    monkeypatch.setattr(filters, 'filter_inplace', recording)
    t, q, qd, tau = _clean_stream(2, N=40)
    StreamingEstimator(2, FilterConfig(rate_hz=RATE)).update_many(t, q, qd, tau)
    # the first sample primes through update()'s numpy path; the other 39 are one clean run
    assert widths == ([1, 39] if run_sizes == 'default' else [1] + [5] * 7 + [4])


@pytest.mark.parametrize('form', ['entries', 'arrays', 'arrays_no_tau'])
@pytest.mark.parametrize('rate_hz', [None, 100.0])
@pytest.mark.parametrize('seed', range(4))
def test_update_many_equals_sequential_update_on_dirty_streams(seed, rate_hz, form, run_sizes):
    n = 3
    stamps, q, qd, tau = _dirty_stream(seed, form, n=n)
    cfg = FilterConfig(rate_hz=rate_hz, cutoff_hz=10.0)
    seq, bat = StreamingEstimator(n, cfg), StreamingEstimator(n, cfg)
    states, resets = _sequential(seq, stamps, q, qd, tau)
    batch = bat.update_many(stamps, q, qd, tau)
    _assert_batch_equals(batch, states, resets)
    _assert_same_state(seq, bat)
    # the stream really was dirty, and most of it came out
    c = bat.counters
    assert c['resets'] >= 3 and c['dropped_stamp'] >= 1 and c['velocity_from_positions'] > 10
    assert c['rejected_nonfinite'] + c['rejected_magnitude'] + c['rejected_shape'] >= 20
    assert len(batch) > 0.8 * len(stamps)
    if form == 'entries':
        assert c['rejected_shape'] >= 1 and not batch.has_tau.all() and batch.has_tau.any()
    _tail(seq, bat, n, float(np.nanmax(batch.stamp[-1:])))


def test_update_many_with_the_public_sosfilt(monkeypatch):
    """Without scipy's private kernel both paths use scipy.signal.sosfilt: still identical."""
    monkeypatch.setattr(filters, '_SOSFILT_KERNEL', None)
    n = 3
    stamps, q, qd, tau = _dirty_stream(5, 'entries', n=n, N=600)
    cfg = FilterConfig(rate_hz=100.0, cutoff_hz=10.0)
    seq, bat = StreamingEstimator(n, cfg), StreamingEstimator(n, cfg)
    states, resets = _sequential(seq, stamps, q, qd, tau)
    _assert_batch_equals(bat.update_many(stamps, q, qd, tau), states, resets)
    _assert_same_state(seq, bat)


@pytest.mark.parametrize('seed', range(3))
def test_update_many_in_chunks_equals_one_call(seed, run_sizes):
    n = 3
    stamps, q, qd, tau = _dirty_stream(10 + seed, 'entries', n=n)
    cfg = FilterConfig(rate_hz=None, cutoff_hz=10.0)
    one, chunked = StreamingEstimator(n, cfg), StreamingEstimator(n, cfg)
    whole = one.update_many(stamps, q, qd, tau)
    rng = np.random.default_rng(seed)
    cuts = np.concatenate(([0], np.sort(rng.integers(0, len(stamps), 12)), [len(stamps)]))
    for a, b in zip(cuts[:-1], cuts[1:]):
        part = chunked.update_many(stamps[a:b], q[a:b], qd[a:b], tau[a:b])
        keep = (whole.index >= a) & (whole.index < b)
        np.testing.assert_array_equal(part.index + a, whole.index[keep])
        np.testing.assert_array_equal(part.resets, whole.resets[a:b])
        for field in ('stamp', 'q', 'qd', 'qdd', 'tau', 'has_tau'):
            np.testing.assert_array_equal(getattr(part, field), getattr(whole, field)[keep])
    _assert_same_state(one, chunked)


def test_update_many_uses_the_vectorized_path_for_clean_streams():
    """Known answer: only the samples before priming go through update(); the rest is vectorized
    and still identical."""
    n, N = 7, 1000
    t = 10.0 + np.arange(N) / 100.0
    q = A * np.sin(W * t[:, None] + np.arange(n))
    qd = A * W * np.cos(W * t[:, None] + np.arange(n))
    tau = 5.0 * q
    # measured rate: the 21 warm-up samples, and the one whose block settles the rate (from
    # then on stamps ahead are checked against it: the run ends there)
    for qd_in, rate_hz, expected_calls in ((qd, 100.0, 1), (None, 100.0, 2), (qd, None, 22),
                                           (None, None, 22)):
        cfg = FilterConfig(rate_hz=rate_hz)
        seq, bat = StreamingEstimator(n, cfg), StreamingEstimator(n, cfg)
        calls = []
        per_sample = bat.update

        def counting(*args, _calls=calls, _f=per_sample):
            _calls.append(1)
            return _f(*args)

        bat.update = counting
        batch = bat.update_many(t, q, qd_in, tau)
        assert len(calls) == expected_calls
        _assert_batch_equals(batch, *_sequential(seq, t, q, qd_in, tau))
        _assert_same_state(seq, bat)


def test_update_many_nonfinite_output_falls_back_to_update():
    """A run whose output is not finite is redone by update() (which counts and resets)."""
    n = 2
    t, q, qd, tau = _clean_stream(n, N=200)
    cfg = FilterConfig(rate_hz=RATE)
    seq, bat = StreamingEstimator(n, cfg), StreamingEstimator(n, cfg)
    for est in (seq, bat):
        _sequential(est, t[:50], q[:50], qd[:50], tau[:50])
        est._den_floor = float('nan')            # poisons qdd from here on
    states, resets = _sequential(seq, t[50:], q[50:], qd[50:], tau[50:])
    batch = bat.update_many(t[50:], q[50:], qd[50:], tau[50:])
    _assert_batch_equals(batch, states, resets, offset=0)
    assert len(batch) == 0 and bat.counters['rejected_nonfinite'] == 150
    _assert_same_state(seq, bat)


def test_update_many_redoes_a_nonfinite_run_from_the_state_before_it(monkeypatch):
    """If one kernel call over a run produced a non-finite value, the filter state is restored
    and update() redoes the run: the result is still that of the sequential stream."""
    n = 2
    t, q, qd, tau = _clean_stream(n, N=300)
    cfg = FilterConfig(rate_hz=RATE)
    seq, bat = StreamingEstimator(n, cfg), StreamingEstimator(n, cfg)
    states, resets = _sequential(seq, t, q, qd, tau)
    real = filters.filter_inplace
    poisoned = []

    def poison_first_run(sos, x, zi):
        real(sos, x, zi)
        if x.shape[1] > 1 and not poisoned:
            poisoned.append(x.shape[1])
            x[0, -1] = np.nan

    monkeypatch.setattr(filters, 'filter_inplace', poison_first_run)
    _assert_batch_equals(bat.update_many(t, q, qd, tau), states, resets)
    assert poisoned == [len(t) - 1]            # the run after the first (priming) sample
    _assert_same_state(seq, bat)


def test_update_many_empty_batch_is_a_no_op_and_lengths_must_match():
    n = 2
    t, q, qd, tau = _clean_stream(n, N=100)
    est, ref = StreamingEstimator(n, FilterConfig()), StreamingEstimator(n, FilterConfig())
    est.update_many(t, q, qd, tau)
    ref.update_many(t, q, qd, tau)
    for args in (([], []), (np.empty(0), np.empty((0, n)), np.empty((0, n)), np.empty((0, n))),
                 ([], [], None, [])):
        empty = est.update_many(*args)
        assert len(empty) == 0 and empty.resets.shape == (0,) and empty.q.shape == (0, n)
        assert empty.tau.shape == (0, n) and empty.index.dtype == np.int64
    _assert_same_state(est, ref)
    for args in ((t, q[:-1]), (t, q, qd[:-1]), (t, q, None, tau[1:]), (t[:-1], q, qd, tau)):
        with pytest.raises(ValueError):
            est.update_many(*args)
    _assert_same_state(est, ref)                 # a refused batch touches nothing


def test_update_many_on_real_kuka_data(shared_datasets):
    from invdyn_ros.datasets import load_kuka
    rec = load_kuka(shared_datasets, trajectories=[1, 2])
    n = rec.n_joints
    cfg = FilterConfig(rate_hz=None)
    seq, bat = StreamingEstimator(n, cfg), StreamingEstimator(n, cfg)
    states, resets = _sequential(seq, rec.t, rec.q, rec.qd, rec.tau)
    _assert_batch_equals(bat.update_many(rec.t, rec.q, rec.qd, rec.tau), states, resets)
    _assert_same_state(seq, bat)


@pytest.mark.parametrize('seed', range(3))
def test_update_many_equals_update_with_rate_changes_jumps_and_bad_labels(seed, run_sizes):
    """Bursts, rate changes, stamps ahead (outliers and real jumps) and efforts beyond the label
    limits, with a measured rate: batch and per-sample give the same States and state."""
    rng = np.random.default_rng(seed)
    parts, t0 = [], 50.0
    for rate in (1000.0, 1000.0, 250.0, 2000.0):
        k = int(rng.integers(300, 900))
        parts.append(t0 + 1e-5 * np.arange(int(rng.integers(0, 40))))   # a burst
        t0 = parts[-1][-1] + 1e-3 if len(parts[-1]) else t0
        seg = t0 + np.arange(k) / rate + rng.uniform(-0.1, 0.1, k) / rate
        parts.append(seg)
        t0 = seg[-1] + 1.0 / rate
    t = np.concatenate(parts)
    N = len(t)
    for k in rng.integers(50, N, 6):
        t[k] += 0.03                                          # single stamps ahead
    j = int(rng.integers(N // 2, N))
    t[j:] += 0.02                                             # a real jump
    n = 3
    q = A * np.sin(W * t[:, None] + np.arange(n))
    qd = A * W * np.cos(W * t[:, None] + np.arange(n))
    tau = 5.0 * q
    tau[rng.random(N) < 0.01, 1] = 500.0                      # beyond the label limit
    cfg = FilterConfig(cutoff_hz=10.0)
    lim = [10.0, 10.0, 10.0]
    seq, bat = StreamingEstimator(n, cfg, effort_limits=lim), \
        StreamingEstimator(n, cfg, effort_limits=lim)
    states, resets = _sequential(seq, t, q, qd, tau)
    batch = bat.update_many(t, q, qd, tau)
    _assert_batch_equals(batch, states, resets)
    _assert_same_state(seq, bat)
    c = bat.counters
    assert c['rate_changes'] >= 2 and c['dropped_future_stamp'] >= 3 and c['stamp_jumps'] >= 1
    assert c['rejected_labels'] >= 3
    _tail(seq, bat, n, float(batch.stamp[-1]), rate=2000.0)
