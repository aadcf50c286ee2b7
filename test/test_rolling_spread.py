"""RollingSpread: windowed RMS / std of two networks' errors per joint, against numpy directly."""
import numpy as np
import pytest

from invdyn_ros.stages.rolling_spread import RollingSpread


def _errors(seed, steps, n=3, offset=0.0):
    """(steps, 2, n) errors: network b noisier than a, scales varying per joint, plus offset."""
    rng = np.random.default_rng(seed)
    scale = np.array([1.0, 3.0])[:, None] * rng.uniform(0.1, 10.0, n)
    return rng.normal(size=(steps, 2, n)) * scale + offset


def _direct(errs, window, centered):
    """Spread (2, n) of the last ``window`` rows of errs (rows, 2, n), straight from numpy."""
    last = errs[-window:]
    return last.std(axis=0) if centered else np.sqrt(np.mean(last * last, axis=0))


@pytest.mark.parametrize('centered, offset', [(False, 0.0), (False, 1e4), (True, 0.0),
                                              (True, 1e6)])
@pytest.mark.parametrize('window', [2, 7, 40])
def test_push_equals_numpy_over_the_last_window(window, centered, offset):
    """Before the window fills (count < window) and long after it (several wraps); the large
    offset makes the centered std a small difference of large numbers (the shift's job)."""
    n, steps = 3, 5 * window + 3
    errs = _errors(1, steps, n, offset)
    rs = RollingSpread(n, window, centered=centered)
    assert rs.count == 0 and not rs.spread.any()
    for k in range(steps):
        rs.push(errs[k].copy())
        assert rs.count == min(k + 1, window)
        np.testing.assert_allclose(rs.spread, _direct(errs[:k + 1], window, centered),
                                   rtol=1e-9, atol=1e-12, err_msg=str(k))
    if centered and offset:
        assert rs.spread.max() < 1e-3 * offset          # the offset is not in the std ...
    if not centered and offset:
        np.testing.assert_allclose(rs.spread, offset, rtol=1e-2)   # ... but is in the RMS


@pytest.mark.parametrize('centered', [False, True])
def test_a_huge_error_leaving_the_window_leaves_no_garbage(centered):
    """A 1e8 error of network b leaves the window between two periodic recomputes: the running
    sums must not keep its rounding (a plain subtraction would leave garbage or a negative sum)."""
    window, n, steps = 100, 2, 250
    rng = np.random.default_rng(0)
    errs = np.stack([rng.normal(0, 1e-3, (steps, n)), rng.normal(0, 2e-3, (steps, n))], axis=1)
    errs[120, 1] += 1e8
    rs = RollingSpread(n, window, centered=centered)
    for k in range(steps):
        rs.push(errs[k].copy())
    np.testing.assert_allclose(rs.spread, _direct(errs, window, centered), rtol=1e-9)


@pytest.mark.parametrize('centered', [False, True])
@pytest.mark.parametrize('start', [0, 4, 7, 19])
def test_push_many_equals_a_loop_of_push(start, centered):
    """From an empty, partly filled or wrapped ring, in chunks of several sizes (empty, shorter
    and longer than the window): the spreads after each row and the state left behind (a further
    loop of push gives the same spreads on both)."""
    n, window = 3, 7
    errs = _errors(2, start + 120, n, offset=50.0)
    loop, batch = RollingSpread(n, window, centered), RollingSpread(n, window, centered)
    for k in range(start):
        loop.push(errs[k].copy())
        batch.push(errs[k].copy())
    cuts = [start, start, start + 1, start + 4, start + 20, start + 27, start + 120]
    for s, e in zip(cuts[:-1], cuts[1:]):
        ref = []
        for k in range(s, e):
            loop.push(errs[k].copy())
            ref.append(loop.spread.copy())
        got = batch.push_many(np.ascontiguousarray(errs[s:e].transpose(1, 0, 2)))
        assert got.shape == (2, e - s, n)
        if ref:
            np.testing.assert_allclose(got, np.stack(ref, axis=1), rtol=1e-9, atol=1e-12)
        assert batch.count == loop.count
        np.testing.assert_allclose(batch.spread, loop.spread, rtol=1e-9, atol=1e-12)
    more = _errors(3, 3 * window, n, offset=50.0)
    for k in range(len(more)):
        loop.push(more[k].copy())
        batch.push(more[k].copy())
        np.testing.assert_allclose(batch.spread, loop.spread, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(loop.spread, _direct(np.concatenate([errs, more]), window,
                                                    centered), rtol=1e-9)


def test_push_many_empty_is_a_no_op():
    rs = RollingSpread(2, 5)
    rs.push(np.array([[1.0, 2.0], [3.0, 4.0]]))
    before = rs.spread.copy()
    out = rs.push_many(np.zeros((2, 0, 2)))
    assert out.shape == (2, 0, 2) and rs.count == 1
    np.testing.assert_array_equal(rs.spread, before)


@pytest.mark.parametrize('centered', [False, True])
def test_reset_forgets_everything_but_watch(centered):
    n, window = 2, 5
    errs = _errors(4, 13, n, offset=7.0)
    rs, fresh = RollingSpread(n, window, centered), RollingSpread(n, window, centered)
    rs.watch[:] = 0.5
    for k in range(len(errs)):
        rs.push(errs[k].copy())
    rs.reset()
    assert rs.count == 0 and not rs.spread.any()
    np.testing.assert_array_equal(rs.watch, 0.5)
    for k in range(3):                         # nothing of before the reset is left in the sums
        rs.push(errs[k].copy() * 2.0)
        fresh.push(errs[k].copy() * 2.0)
        np.testing.assert_array_equal(rs.spread, fresh.spread)
    np.testing.assert_allclose(rs.spread, _direct(errs[:3] * 2.0, window, centered), rtol=1e-9)


@pytest.mark.parametrize('centered', [False, True])
def test_push_returns_false_only_when_no_watched_comparison_holds(centered):
    """watch[k]: 'the other network's spread < watch[k] * network k's'. push may say True when
    none holds (it did not check), never False when one holds."""
    n, window = 3, 10
    errs = _errors(5, 60, n)                   # network b's errors ~3x network a's
    rs = RollingSpread(n, window, centered)
    rs.watch[1] = 0.9                          # watch "a clearly better than b"
    said = []
    for k in range(len(errs)):
        flag = rs.push(errs[k].copy())
        holds = bool((rs.spread[0] < 0.9 * rs.spread[1]).any())
        assert flag or not holds, k
        said.append(flag)
    assert any(said)
    rs.watch[:] = 0.0                          # nothing watched: RMS checks and says False
    flags = [rs.push(errs[k].copy()) for k in range(window + 1, 2 * window - 1)]
    if not centered:
        assert not any(flags)
