"""ReplayBuffer: the bounded FIFO + reservoir, its batches and its state round trip."""
import numpy as np
import pytest

from invdyn_ros.learning.replay_buffer import ReplayBuffer


def _tagged(i: int, L: int = 2, width: int = 3, n: int = 1):
    return np.full((L, width), float(i)), np.full(n, float(i))


def test_buffer_bounded_fifo_newest_and_reservoir_keeps_old():
    buf = ReplayBuffer(capacity=300, recent_capacity=100, window=2, width=3, n_out=1, seed=0)
    total = 20000
    for i in range(total):
        buf.add(*_tagged(i))
        assert len(buf) <= 300
    assert len(buf) == 300
    rx, ry = buf.recent()
    np.testing.assert_array_equal(ry[:, 0], np.arange(total - 100, total))   # exactly the newest
    sx, sy = buf.reservoir()
    tags = sy[:, 0]
    assert len(tags) == 200 and len(np.unique(tags)) == 200
    assert tags.max() < total - 100              # the reservoir only holds evicted windows
    # a uniform sample of 19900 evicted windows: ~200/19900 * 2000 = 20 expected from the first 2000
    assert (tags < 2000).sum() >= 5
    assert tags.min() < 1000
    np.testing.assert_array_equal(sx[:, 0, 0], tags)   # windows stay paired with their labels


def test_buffer_sample_mixes_recent_fraction():
    buf = ReplayBuffer(capacity=1000, recent_capacity=100, window=2, width=3, n_out=1, seed=1)
    for i in range(5000):
        buf.add(*_tagged(i))
    X, Y = buf.sample(200, recent_fraction=0.25)
    assert X.shape == (200, 2, 3) and Y.shape == (200, 1) and X.dtype == np.float32
    assert int((Y[:, 0] >= 4900).sum()) == 50
    np.testing.assert_array_equal(X[:, 0, 0], Y[:, 0])
    # only a FIFO: the whole batch comes from it
    small = ReplayBuffer(capacity=10, recent_capacity=10, window=2, width=3, n_out=1)
    small.add(*_tagged(7))
    assert set(small.sample(8, 0.0)[1][:, 0]) == {7.0}
    with pytest.raises(ValueError):
        ReplayBuffer(10, 5, 2, 3, 1).sample(4)


def test_buffer_state_roundtrip_and_resize():
    buf = ReplayBuffer(capacity=50, recent_capacity=20, window=2, width=3, n_out=1, seed=3)
    for i in range(500):
        buf.add(*_tagged(i))
    same = ReplayBuffer(capacity=50, recent_capacity=20, window=2, width=3, n_out=1, seed=99)
    same.load_state_dict(buf.state_dict())
    np.testing.assert_array_equal(same.recent()[1], buf.recent()[1])
    np.testing.assert_array_equal(same.reservoir()[1], buf.reservoir()[1])
    np.testing.assert_array_equal(same.sample(16)[1], buf.sample(16)[1])   # rng state restored
    smaller = ReplayBuffer(capacity=30, recent_capacity=10, window=2, width=3, n_out=1)
    smaller.load_state_dict(buf.state_dict())
    assert len(smaller) == 30
    np.testing.assert_array_equal(smaller.recent()[1][:, 0], np.arange(490, 500))
