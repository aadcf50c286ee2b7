"""invdyn_ros.stages.estimation_batch: ``update_many`` gives the States, counters and final state of
sample-by-sample ``update`` bit for bit, on dirty streams, in chunks, with tiny runs, with the
public sosfilt, and when a run goes non-finite.
"""
import numpy as np
import pytest
from test_estimation import RATE, A, W, _clean_stream

from invdyn_ros.stages import estimation_batch, filters
from invdyn_ros.stages.estimation import FilterConfig, StateBatch, StreamingEstimator

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
    from invdyn_ros.offline.datasets import load_kuka
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
