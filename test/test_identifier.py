"""DualIdentifier: per-joint switching with hysteresis, known answers on generated errors."""
import numpy as np
import pytest

from invdyn_ros.errors import ConfigError
from invdyn_ros.stages.identifier import MAX_ERROR_NORM, DualIdentifier, IdentifierTrace


def _stream(n=5, steps=600, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(steps) * 0.01
    tau = np.sin(t[:, None] * (1.0 + np.arange(n))) * 10.0
    return rng, tau


def test_crippled_joints_follow_other_network():
    n = 5
    rng, tau = _stream(n)
    ident = DualIdentifier(n, window=100, hysteresis=0.1, names=('lstm', 'gru'))
    bad = np.array([False, True, False, True, False])
    for k in range(tau.shape[0]):
        good_a = tau[k] + rng.normal(0, 0.03, n)  # a slightly better where it works
        pred_b = tau[k] + rng.normal(0, 0.05, n)
        pred_a = good_a + np.where(bad, rng.normal(0, 5.0, n), 0.0)  # network a broken on {1, 3}
        out = ident.select(pred_a, pred_b)
        ident.update(pred_a, pred_b, tau[k])
    np.testing.assert_array_equal(out.active, bad.astype(int))
    np.testing.assert_array_equal(out.torque[bad], pred_b[bad])
    np.testing.assert_array_equal(out.torque[~bad], pred_a[~bad])
    assert np.all(out.std_a[bad] > 10 * out.std_b[bad])
    assert ident.names == ('lstm', 'gru')
    # uncertainty is at least the active network's spread and at least the disagreement
    assert np.all(out.uncertainty >= np.abs(pred_a - pred_b) - 1e-12)


def test_keeps_primary_until_enough_samples():
    ident = DualIdentifier(2, window=50, min_samples=10)
    for _ in range(9):
        ident.update([5.0, 5.0], [0.0, 0.0], [0.0, 0.0])  # network b perfect, a awful
    assert list(ident.active) == [0, 0]
    ident.update([5.0, 5.0], [0.0, 0.0], [0.0, 0.0])
    assert list(ident.active) == [1, 1]


def test_hysteresis_reduces_switching_between_equal_networks():
    n, steps = 3, 3000

    def count_switches(h):
        rng = np.random.default_rng(1)
        ident = DualIdentifier(n, window=50, hysteresis=h)
        for _ in range(steps):
            tau = rng.normal(0, 1, n)
            ident.update(tau + rng.normal(0, 1.0, n), tau + rng.normal(0, 1.02, n), tau)
        return ident.counters['switches']

    no_h, with_h = count_switches(0.0), count_switches(0.2)
    assert no_h > 50
    assert with_h * 10 < no_h


def test_bias_counts_as_error():
    """A constant offset has zero centered std but is a bad feedforward: RMS must catch it."""
    ident = DualIdentifier(1, window=20)
    rng = np.random.default_rng(2)
    for _ in range(40):
        tau = rng.normal(0, 1, 1)
        ident.update(tau + 3.0, tau + rng.normal(0, 0.1, 1), tau)
    assert ident.active[0] == 1


def test_rejects_bad_samples_without_raising():
    ident = DualIdentifier(2, window=10, min_samples=1)
    assert not ident.update([np.nan, 0.0], [0.0, 0.0], [0.0, 0.0])
    assert not ident.update([0.0, 0.0], [0.0, np.inf], [0.0, 0.0])
    assert not ident.update([0.0, 0.0, 0.0], [0.0, 0.0], [0.0, 0.0])
    assert not ident.update(None, [0.0, 0.0], [0.0, 0.0])
    assert ident.counters['rejected'] == 4
    assert ident.count == 0
    assert ident.update([1.0, 1.0], [0.0, 0.0], [1.0, 1.0])
    assert np.isfinite(ident.std_a).all() and np.isfinite(ident.std_b).all()


def test_select_falls_back_from_non_finite_prediction():
    ident = DualIdentifier(2)
    out = ident.select([np.nan, 1.0], [2.0, 3.0])
    assert list(out.active) == [1, 0]
    np.testing.assert_array_equal(out.torque, [2.0, 1.0])
    assert np.isfinite(out.uncertainty).all()
    single = ident.select([1.0, 2.0], None)
    np.testing.assert_array_equal(single.torque, [1.0, 2.0])
    assert list(single.active) == [0, 0]


def test_window_rolls():
    ident = DualIdentifier(1, window=10, min_samples=1)
    for _ in range(10):
        ident.update([10.0], [0.0], [0.0])
    assert ident.std_a[0] == pytest.approx(10.0)
    for _ in range(10):
        ident.update([1.0], [0.0], [0.0])
    assert ident.std_a[0] == pytest.approx(1.0)  # old errors have left the window
    ident.reset()
    assert ident.count == 0 and list(ident.active) == [0]


@pytest.mark.parametrize('kwargs', [dict(window=1), dict(hysteresis=1.0), dict(hysteresis=-0.1),
                                    dict(names=('a',)), dict(min_samples=0)])
def test_bad_config_raises_config_error(kwargs):
    with pytest.raises(ConfigError):
        DualIdentifier(2, **kwargs)


# --------------------------------------------------------------------------------------------------
# O(1) update (running sums) and the vectorized update_many

TRACE_FIELDS = ('accepted', 'active_before', 'std_a_before', 'std_b_before', 'active_after',
                'std_a_after', 'std_b_after')
STD_FIELDS = ('std_a_before', 'std_b_before', 'std_a_after', 'std_b_after')


def _error_stream(seed, steps, n=3, bad_frac=0.05, period=97.0):
    """Two networks whose error levels drift against each other (so joints switch both ways), with
    rows carrying NaN / +-Inf in one of the three inputs sprinkled in."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)[:, None]
    tau = rng.normal(0.0, 5.0, (steps, n))
    phase = rng.uniform(0, 2 * np.pi, n)
    level_a = 1.0 + 0.6 * np.sin(2 * np.pi * t / period + phase)
    level_b = 1.0 + 0.6 * np.cos(2 * np.pi * t / (1.3 * period) + phase)
    pred_a = tau + rng.normal(size=(steps, n)) * level_a + 0.2
    pred_b = tau + rng.normal(size=(steps, n)) * level_b - 0.1
    bad_rows = np.flatnonzero(rng.random(steps) < bad_frac)
    for row in bad_rows:
        target = (pred_a, pred_b, tau)[rng.integers(3)]
        target[row, rng.integers(n)] = (np.nan, np.inf, -np.inf)[rng.integers(3)]
    return pred_a, pred_b, tau


def _sequential(ident, pred_a, pred_b, tau):
    """A loop of update, recording what the public API shows around each call."""
    rec = {k: [] for k in TRACE_FIELDS}
    for row in range(len(tau)):
        rec['active_before'].append(ident.active)
        rec['std_a_before'].append(ident.std_a)
        rec['std_b_before'].append(ident.std_b)
        rec['accepted'].append(ident.update(pred_a[row], pred_b[row], tau[row]))
        rec['active_after'].append(ident.active)
        rec['std_a_after'].append(ident.std_a)
        rec['std_b_after'].append(ident.std_b)
    return {k: np.array(v) for k, v in rec.items()}


def _assert_trace_matches(trace, ref, rtol=1e-9):
    assert isinstance(trace, IdentifierTrace)
    np.testing.assert_array_equal(trace.accepted, ref['accepted'])
    for k in ('active_before', 'active_after'):
        got = getattr(trace, k)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, ref[k], err_msg=k)
    for k in STD_FIELDS:
        np.testing.assert_allclose(getattr(trace, k), ref[k], rtol=rtol, atol=1e-14, err_msg=k)


def _assert_same_state(x, y, rtol=1e-9):
    assert x.count == y.count
    assert x.counters == y.counters
    np.testing.assert_array_equal(x.switches_per_joint, y.switches_per_joint)
    np.testing.assert_array_equal(x.active, y.active)
    np.testing.assert_allclose(x.std_a, y.std_a, rtol=rtol, atol=1e-14)
    np.testing.assert_allclose(x.std_b, y.std_b, rtol=rtol, atol=1e-14)


def _assert_continue_alike(x, y, window, seed=99, n=3):
    """A further sequential stream (longer than the window, so every stored error leaves it)
    gives the same results on both: ring contents, position and sums were left consistent."""
    a, b, tau = _error_stream(seed, 2 * window + 5, n=n)
    rx, ry = _sequential(x, a, b, tau), _sequential(y, a, b, tau)
    for k in TRACE_FIELDS:
        np.testing.assert_allclose(rx[k], ry[k], rtol=1e-9, atol=1e-14, err_msg=k)
    _assert_same_state(x, y)


def _reference_spread(errs, window, centered):
    """Error spread of the last `window` rows of errs (rows, 2, n), computed directly."""
    last = errs[-window:]
    return last.std(axis=0) if centered else np.sqrt(np.mean(last * last, axis=0))


@pytest.mark.parametrize('centered', [False, True])
@pytest.mark.parametrize('hysteresis', [0.0, 0.2])
@pytest.mark.parametrize('window', [2, 7, 50])
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_update_many_equals_loop_of_update(seed, window, hysteresis, centered):
    n = 3
    a, b, tau = _error_stream(seed, 8 * window + 40, n=n, period=3.0 * window + 5)
    for min_samples in sorted({1, max(1, window // 2), window}):
        kw = dict(window=window, hysteresis=hysteresis, min_samples=min_samples, centered=centered)
        seq, vec = DualIdentifier(n, **kw), DualIdentifier(n, **kw)
        ref = _sequential(seq, a, b, tau)
        trace = vec.update_many(a, b, tau)
        _assert_trace_matches(trace, ref)
        _assert_same_state(vec, seq)
        assert 0 < vec.counters['rejected'] < len(tau)     # the stream does contain bad rows
        if hysteresis == 0.0:
            assert vec.counters['switches'] > 0            # ... and decisions that matter
        # The trace's last row is the state left behind.
        np.testing.assert_array_equal(trace.active_after[-1], vec.active)
        np.testing.assert_array_equal(trace.std_a_after[-1], vec.std_a)
        _assert_continue_alike(vec, seq, window, n=n)


@pytest.mark.parametrize('centered', [False, True])
def test_update_many_in_chunks_equals_one_call(centered):
    n, window = 3, 7
    a, b, tau = _error_stream(5, 400, n=n, period=30.0)
    kw = dict(window=window, hysteresis=0.1, min_samples=4, centered=centered)
    whole, pieces = DualIdentifier(n, **kw), DualIdentifier(n, **kw)
    ref = whole.update_many(a, b, tau)
    cuts = [0, 0, 1, 2, 5, 5, 6, 13, 50, 51, 200, 333, 400]   # includes empty and 1-row chunks
    traces = [pieces.update_many(a[s:e], b[s:e], tau[s:e]) for s, e in zip(cuts[:-1], cuts[1:])]
    for k in TRACE_FIELDS:
        got = np.concatenate([getattr(t, k) for t in traces])
        np.testing.assert_allclose(got, getattr(ref, k), rtol=1e-9, atol=1e-14, err_msg=k)
    _assert_same_state(pieces, whole)
    _assert_continue_alike(pieces, whole, window, n=n)


@pytest.mark.parametrize('centered', [False, True])
@pytest.mark.parametrize('start', [0, 3, 9, 10, 13, 31])
def test_update_many_from_a_partial_or_wrapped_window(start, centered):
    """The batch continues whatever the sequential calls left: a window still filling (start <
    window) or a full ring whose oldest error is not at index 0."""
    n, window = 3, 10
    a, b, tau = _error_stream(7, start + 300, n=n, period=40.0)
    kw = dict(window=window, hysteresis=0.05, min_samples=6, centered=centered)
    seq, mixed = DualIdentifier(n, **kw), DualIdentifier(n, **kw)
    _sequential(mixed, a[:start], b[:start], tau[:start])
    trace = mixed.update_many(a[start:], b[start:], tau[start:])
    ref = _sequential(seq, a, b, tau)
    _assert_trace_matches(trace, {k: v[start:] for k, v in ref.items()})
    _assert_same_state(mixed, seq)
    _assert_continue_alike(mixed, seq, window, n=n)


def _wild_stream(seed, steps, n=2, bias=0.0):
    """Errors whose scale jumps over six decades, with rare huge glitches: where running sums that
    are never recomputed, or cumulative sums over the whole stream, would lose all precision."""
    rng = np.random.default_rng(seed)
    seg = np.repeat(10.0 ** rng.uniform(-3, 3, size=(steps // 500 + 1, 2, n)), 500, axis=0)[:steps]
    errs = rng.normal(size=(steps, 2, n)) * seg + bias
    glitch = rng.random(steps) < 0.002
    errs[glitch] *= 1e6
    tau = rng.normal(0.0, 10.0, (steps, n))
    return tau - errs[:, 0], tau - errs[:, 1], tau, errs


@pytest.mark.parametrize('centered', [False, True])
def test_long_stream_keeps_precision(centered):
    steps, window, n = 50_000, 50, 2
    a, b, tau, errs = _wild_stream(3, steps, n=n, bias=250.0 if centered else 0.0)
    kw = dict(window=window, hysteresis=0.1, centered=centered)
    seq, vec = DualIdentifier(n, **kw), DualIdentifier(n, **kw)
    trace = vec.update_many(a, b, tau)
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.choice(steps, 3000, replace=False), np.arange(steps - 80, steps)])
    for row in rows:    # straight from the errors of the window ending at the row
        ref = _reference_spread(errs[:row + 1], window, centered)
        np.testing.assert_allclose(trace.std_a_after[row], ref[0], rtol=1e-9)
        np.testing.assert_allclose(trace.std_b_after[row], ref[1], rtol=1e-9)
    seq_trace = _sequential(seq, a, b, tau)
    for k in ('std_a_after', 'std_b_after'):
        np.testing.assert_allclose(seq_trace[k], getattr(trace, k), rtol=1e-9, err_msg=k)
    _assert_same_state(vec, seq)


@pytest.mark.parametrize('centered', [False, True])
def test_running_sums_match_exact_recompute_after_100k_updates(centered):
    """100k updates of errors whose scale alternates between 1e3 (with 1e6-times glitches) and
    1e-3 every 1500 rows, the two networks in opposite phase, around a bias of 40. Checked at the
    end of every segment, when the window (997, not a divisor of the checkpoints) holds only the
    quiet errors: what the loud ones left in the running sums must have been cleaned up."""
    window, n, seg, steps = 997, 2, 1500, 100_500
    rng = np.random.default_rng(4)
    loud = (np.arange(steps) // seg) % 2 == 0
    scale = np.where(np.stack([loud, ~loud], axis=1), 1e3, 1e-3)[:, :, None]   # (steps, 2, 1)
    errs = rng.normal(size=(steps, 2, n)) * scale
    errs *= np.where((rng.random((steps, 2, 1)) < 0.003) & (scale > 1), 1e6, 1.0)
    errs += 40.0
    tau = rng.normal(0.0, 10.0, (steps, n))
    a, b = tau - errs[:, 0], tau - errs[:, 1]
    ident = DualIdentifier(n, window=window, centered=centered)
    checkpoints = set(range(seg, steps + 1, seg)) - set(range(0, steps + 1, window))
    for row in range(steps):
        assert ident.update(a[row], b[row], tau[row])
        if row + 1 in checkpoints:
            ref = _reference_spread(errs[:row + 1], window, centered)
            np.testing.assert_allclose(ident.std_a, ref[0], rtol=1e-9, err_msg=str(row))
            np.testing.assert_allclose(ident.std_b, ref[1], rtol=1e-9, err_msg=str(row))
    assert ident.counters['updates'] == steps and len(checkpoints) >= 60


@pytest.mark.parametrize('batch', [False, True])
@pytest.mark.parametrize('centered', [False, True])
def test_huge_error_leaving_the_window_leaves_no_garbage(batch, centered):
    """A 1e8 glitch of network b leaves the window between two periodic recomputes: the spreads
    must be exact again (plain running sums would go negative: b would look perfect and win)."""
    window, n, steps = 100, 2, 250     # glitch at 120 leaves at 220; recomputes at 200 and 300
    rng = np.random.default_rng(0)
    errs = np.stack([rng.normal(0, 1e-3, (steps, n)), rng.normal(0, 2e-3, (steps, n))], axis=1)
    errs[120, 1] += 1e8
    tau = np.zeros((steps, n))
    ident = DualIdentifier(n, window=window, min_samples=5, centered=centered)
    if batch:
        ident.update_many(-errs[:, 0], -errs[:, 1], tau)
    else:
        _sequential(ident, -errs[:, 0], -errs[:, 1], tau)
    ref = _reference_spread(errs, window, centered)
    np.testing.assert_allclose(ident.std_a, ref[0], rtol=1e-9)
    np.testing.assert_allclose(ident.std_b, ref[1], rtol=1e-9)
    assert list(ident.active) == [0, 0]


@pytest.mark.parametrize('batch', [False, True])
def test_constant_bias_network_is_rejected_with_rms(batch):
    n, steps = 3, 300
    rng = np.random.default_rng(2)
    tau = rng.normal(0, 1, (steps, n))
    biased = tau + 3.0                                  # tiny centered std, 3 Nm RMS
    noisy = tau + rng.normal(0, 0.1, (steps, n))
    rms, plain = DualIdentifier(n, window=50), DualIdentifier(n, window=50, centered=True)
    for ident in (rms, plain):
        if batch:
            ident.update_many(biased, noisy, tau)
        else:
            _sequential(ident, biased, noisy, tau)
    assert list(rms.active) == [1] * n                 # RMS sees the bias
    assert list(plain.active) == [0] * n               # the plain std does not
    np.testing.assert_allclose(rms.std_a, 3.0, rtol=1e-9)


def test_update_many_empty_batch_is_a_no_op():
    n = 3
    a, b, tau = _error_stream(1, 30, n=n)
    ident, ref = (DualIdentifier(n, window=7, min_samples=3) for _ in range(2))
    ident.update_many(a, b, tau)
    ref.update_many(a, b, tau)
    for empty in (np.zeros((0, n)), []):
        trace = ident.update_many(empty, empty, empty)
        assert trace.accepted.shape == (0,) and trace.active_before.shape == (0, n)
        assert trace.std_a_after.shape == (0, n) and trace.std_b_before.shape == (0, n)
    _assert_same_state(ident, ref)
    _assert_continue_alike(ident, ref, 7, n=n)


def test_update_many_all_rows_rejected_keeps_state():
    n = 2
    ident = DualIdentifier(n, window=5, min_samples=1)
    ident.update([1.0, 0.0], [0.0, 0.0], [0.0, 0.0])      # b perfect -> joint 0 uses b
    bad = np.array([[np.nan, 0.0], [0.0, np.inf], [-np.inf, 1.0]])
    ok = np.zeros((3, n))
    trace = ident.update_many(bad, ok, ok)
    assert not trace.accepted.any()
    assert ident.counters == {'updates': 1, 'rejected': 3, 'switches': 1}
    np.testing.assert_array_equal(trace.active_before, [[1, 0]] * 3)
    np.testing.assert_array_equal(trace.active_after, [[1, 0]] * 3)
    np.testing.assert_array_equal(trace.std_a_after, [[1.0, 0.0]] * 3)
    assert ident.count == 1


def test_update_many_wrong_shape_raises_but_bad_values_do_not():
    ident = DualIdentifier(3, window=5, min_samples=2)
    good = np.zeros((4, 3))
    with pytest.raises(ValueError):
        ident.update_many(np.zeros((4, 2)), good, good)
    with pytest.raises(ValueError):
        ident.update_many(good, good, np.zeros((5, 3)))
    with pytest.raises(ValueError):
        ident.update_many(np.zeros(3), np.zeros(3), np.zeros(3))    # one sample: use update
    with pytest.raises(ValueError):
        ident.update_many([['a', 'b', 'c']], good[:1], good[:1])
    assert ident.counters == {'updates': 0, 'rejected': 0, 'switches': 0}
    nan = np.full((4, 3), np.nan)
    trace = ident.update_many(nan, good, good)
    assert ident.counters['rejected'] == 4 and not trace.accepted.any()


@pytest.mark.parametrize('batch', [False, True])
def test_absurd_errors_are_rejected_not_summed(batch):
    """Finite but absurd values (|error| ~ 1e200) would overflow the sums: rejected and counted."""
    ident = DualIdentifier(2, window=5, min_samples=1)
    rows = np.array([[1e200, 0.0], [0.0, 0.0], [MAX_ERROR_NORM * 2, 0.0], [0.5, 0.0]])
    zeros = np.zeros((4, 2))
    with np.errstate(over='ignore'):
        if batch:
            accepted = ident.update_many(rows, zeros, zeros).accepted
        else:
            accepted = np.array([ident.update(r, z, z) for r, z in zip(rows, zeros)])
    np.testing.assert_array_equal(accepted, [False, True, False, True])
    assert ident.counters['rejected'] == 2 and ident.count == 2
    np.testing.assert_allclose(ident.std_a, [np.sqrt(0.125), 0.0])
    assert np.isfinite(ident.std_b).all()


# ------------------------------------------------------------------ the switching rule's forms
def _missing_rows(seed, steps, n=3):
    """_error_stream without its bad values, then whole rows missing: a network without a
    prediction (NaN row) or a sample without a measured torque."""
    rng = np.random.default_rng(seed)
    a, b, tau = _error_stream(seed, steps, n=n, bad_frac=0.0)
    for arr, frac in ((a, 0.04), (b, 0.04), (tau, 0.1)):
        arr[rng.random(steps) < frac] = np.nan
    return a, b, tau


def _none_if_nan(row):
    return None if np.isnan(row).all() else row


def test_needed_and_choose_are_select_for_the_networks_in_use():
    n = 3
    a, b, tau = _error_stream(5, 400, n=n, bad_frac=0.0)
    ident = DualIdentifier(n, window=30, hysteresis=0.05)
    seen = set()
    for k in range(len(tau)):
        needed = ident.needed
        seen.add(needed)
        assert needed == tuple(i for i in (0, 1) if (ident.active == i).any())
        preds = [a[k] if 0 in needed else None, b[k] if 1 in needed else None]
        np.testing.assert_array_equal(ident.choose(preds), ident.select(a[k], b[k]).torque)
        if needed == (0, 1):
            assert ident.choose([a[k], None]) is None          # a needed prediction is missing
        broken = a[k].copy() if 0 in needed else b[k].copy()
        broken[int(np.flatnonzero(ident.active == needed[0])[0])] = np.nan
        assert ident.choose([broken, broken]) is None           # a chosen value is not finite
        ident.update(a[k], b[k], tau[k])
    assert {(0,), (0, 1)} <= seen                               # joints switched
    row = a[0].copy()
    assert ident.choose([row]) is row                           # one network: its prediction


def test_select_from_treats_a_missing_network_like_a_non_finite_one():
    ident = DualIdentifier(2, window=20, min_samples=2)
    for _ in range(5):
        ident.update([3.0, 3.0], [0.1, 0.1], [0.0, 0.0])          # network b is better
    assert list(ident.active) == [1, 1]
    pa, pb = np.array([1.0, 2.0]), np.array([5.0, 6.0])
    np.testing.assert_array_equal(ident.select_from([pa, pb]).torque, pb)
    out = ident.select_from([pa, None])
    np.testing.assert_array_equal(out.torque, pa)
    np.testing.assert_array_equal(out.active, [0, 0])
    assert np.isfinite(out.uncertainty).all()
    assert ident.select_from([None, None]) is None
    assert ident.select_from([None]) is None
    single = ident.select_from([pa])
    np.testing.assert_array_equal(single.torque, pa)
    np.testing.assert_array_equal(single.active, [0, 0])


@pytest.mark.parametrize('dual', [True, False])
@pytest.mark.parametrize('start', [0, 45])
def test_select_many_equals_a_loop_of_select_then_update(dual, start):
    """Each row selected with the statistics before it, then its errors pushed when it has both
    predictions and a torque: the per-row outputs and the final state of the loop."""
    n, window = 3, 30
    a, b, tau = _missing_rows(11, start + 300, n=n)
    loop, batch = DualIdentifier(n, window, 0.05), DualIdentifier(n, window, 0.05)
    for k in range(start):                   # a partly filled or wrapped window first
        for ident in (loop, batch):
            if not (np.isnan(a[k]).any() or np.isnan(b[k]).any() or np.isnan(tau[k]).any()):
                ident.update(a[k], b[k] if dual else a[k], tau[k])
    a, b, tau = a[start:], b[start:], tau[start:]
    rows = []
    for k in range(len(tau)):
        pa, pb = _none_if_nan(a[k]), _none_if_nan(b[k])
        sel = loop.select_from([pa, pb] if dual else [pa])
        rows.append(sel)
        if pa is not None and (pb is not None or not dual) and not np.isnan(tau[k]).any():
            loop.update(pa, pb if dual else pa, tau[k])
    got = batch.select_many(a, b if dual else None, tau)
    for k, sel in enumerate(rows):
        if sel is None:                      # no prediction at all: NaN torque in the batch
            assert np.isnan(got.torque[k]).all()
            continue
        np.testing.assert_array_equal(got.torque[k], sel.torque)
        np.testing.assert_array_equal(got.active[k], sel.active)
        np.testing.assert_allclose(got.std_a[k], sel.std_a, rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(got.std_b[k], sel.std_b, rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(got.uncertainty[k], sel.uncertainty, rtol=1e-9, atol=1e-14)
    assert np.isfinite(got.uncertainty).all()
    if dual:
        assert (got.active == 1).any() and (got.active == 0).any()
    _assert_same_state(loop, batch)
    assert loop.counters['rejected'] == 0


def test_select_many_without_torques_only_selects():
    ident = DualIdentifier(2, window=20, min_samples=2)
    for _ in range(5):
        ident.update([0.1, 3.0], [3.0, 0.1], [0.0, 0.0])          # a on joint 0, b on joint 1
    before = dict(ident.counters)
    a, b = np.ones((4, 2)), 2 * np.ones((4, 2))
    got = ident.select_many(a, b)
    np.testing.assert_array_equal(got.torque, [[1.0, 2.0]] * 4)
    assert ident.counters == before
