"""Tests of invdyn_ros.stages.windows: ordering, fullness, copies, label alignment."""
import numpy as np
import pytest

from invdyn_ros.errors import ConfigError
from invdyn_ros.stages.windows import WindowBuffer, make_windows


def rows(N, width):
    """Row k is k * 10 + column, so every value says where it came from."""
    return np.arange(N)[:, None] * 10.0 + np.arange(width)[None, :]


def test_window_is_the_last_rows_oldest_first():
    buf = WindowBuffer(4, 3)
    data = rows(11, 3)
    for k, row in enumerate(data):
        buf.push(row)
        assert buf.full == (k >= 3)
        assert len(buf) == min(k + 1, 4)
        if buf.full:
            np.testing.assert_array_equal(buf.window(), data[k - 3:k + 1])
    assert buf.window().shape == (4, 3)


def test_partial_window_before_full():
    buf = WindowBuffer(5, 2)
    data = rows(3, 2)
    for row in data:
        buf.push(row)
    assert not buf.full
    np.testing.assert_array_equal(buf.window(), data)


def test_window_is_a_copy_and_push_copies_the_row():
    buf = WindowBuffer(3, 2)
    row = np.array([1.0, 2.0])
    for _ in range(3):
        buf.push(row)
    row[:] = -1.0                      # caller reuses its array
    w = buf.window()
    np.testing.assert_array_equal(w, [[1.0, 2.0]] * 3)
    w[:] = 99.0                        # caller modifies the window
    buf.push([5.0, 6.0])
    np.testing.assert_array_equal(w, 99.0)
    np.testing.assert_array_equal(buf.window(), [[1.0, 2.0], [1.0, 2.0], [5.0, 6.0]])


def test_reset_empties_the_buffer():
    buf = WindowBuffer(2, 1)
    buf.push([1.0])
    buf.push([2.0])
    assert buf.full
    buf.reset()
    assert not buf.full and len(buf) == 0
    buf.push([3.0])
    buf.push([4.0])
    np.testing.assert_array_equal(buf.window(), [[3.0], [4.0]])


def test_bad_rows_and_parameters_raise():
    buf = WindowBuffer(2, 3)
    with pytest.raises(ValueError):
        buf.push([1.0, 2.0])
    with pytest.raises(ValueError):
        buf.push([1.0, np.nan, 2.0])
    assert len(buf) == 0
    with pytest.raises(ConfigError, match='length'):
        WindowBuffer(0, 3)
    with pytest.raises(ConfigError, match='width'):
        WindowBuffer(2, 0)
    with pytest.raises(ConfigError, match='length'):
        make_windows(np.zeros((5, 2)), 0)


def test_make_windows_shape_and_label_alignment():
    N, F, L = 12, 3, 5
    feats = rows(N, F)
    labels = np.arange(N) * 1.5
    win = make_windows(feats, L)
    assert win.shape == (N - L + 1, L, F)
    for i in range(N - L + 1):
        np.testing.assert_array_equal(win[i], feats[i:i + L])
    # label of window i is row i + L - 1: the newest row of that window
    y = labels[L - 1:]
    assert len(y) == len(win)
    np.testing.assert_array_equal(win[:, -1, 0] / 10.0 * 1.5, y)
    # a writable, contiguous copy that does not alias the input
    assert win.flags.c_contiguous and win.flags.writeable
    assert not np.shares_memory(win, feats)


def test_make_windows_matches_the_streaming_buffer():
    feats = np.random.default_rng(0).normal(size=(30, 4))
    L = 7
    buf = WindowBuffer(L, 4)
    streamed = []
    for row in feats:
        buf.push(row)
        if buf.full:
            streamed.append(buf.window())
    np.testing.assert_array_equal(np.array(streamed), make_windows(feats, L))


def test_make_windows_shorter_than_the_window_is_empty():
    assert make_windows(np.zeros((3, 2)), 5).shape == (0, 5, 2)
