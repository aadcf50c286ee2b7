"""Sliding windows of feature rows: the LSTM input is the last ``L`` rows, oldest first.

A feature row is ``[q(n), qd(n), qdd(n)]`` of one time step; the label of a window is the torque of
its newest (last) row, i.e. of the same stamp (see ``estimation`` for the alignment).
"""
from __future__ import annotations

import numpy as np

from invdyn_ros.errors import ConfigError

__all__ = ['WindowBuffer', 'make_windows']


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f'{name} must be a positive integer, got {value!r}')
    return int(value)


class WindowBuffer:
    """Ring buffer of the last ``length`` rows of width ``width``.

    Every row is stored twice (at ``i`` and ``i + length``) so the current window is always one
    contiguous slice: ``window()`` is a single copy, no concatenation or roll, whatever the phase.
    """

    def __init__(self, length: int, width: int) -> None:
        self.length = _positive_int('length', length)
        self.width = _positive_int('width', width)
        self._buf = np.zeros((2 * self.length, self.width))
        self.reset()

    def reset(self) -> None:
        """Drop all rows (e.g. after an estimator reset: a window must not span a gap)."""
        self._next = 0       # slot the next row goes to
        self._count = 0

    def push(self, row: np.ndarray) -> None:
        """Append one row (copied); the oldest row drops out once the buffer is full.

        Raises ValueError for a row of the wrong shape or with non-finite values, which would
        otherwise poison every window it is part of.
        """
        arr = np.asarray(row, dtype=np.float64)
        if arr.shape != (self.width,):
            raise ValueError(f'row must have shape ({self.width},), got {arr.shape}')
        if not np.isfinite(arr).all():
            raise ValueError('row contains non-finite values')
        i = self._next
        self._buf[i] = arr
        self._buf[i + self.length] = arr
        self._next = (i + 1) % self.length
        if self._count < self.length:
            self._count += 1

    @property
    def full(self) -> bool:
        """True once ``length`` rows were pushed since construction / reset."""
        return self._count >= self.length

    def __len__(self) -> int:
        return self._count

    def window(self) -> np.ndarray:
        """A copy of the rows, oldest first: (length, width) once full, else (len(self), width)."""
        if self._count < self.length:
            return self._buf[:self._count].copy()
        start = self._next               # the oldest row sits where the next one will go
        return self._buf[start:start + self.length].copy()


def make_windows(features: np.ndarray, length: int) -> np.ndarray:
    """All windows of a recorded feature array: (N, F) -> (N - L + 1, L, F), oldest row first.

    Window ``i`` holds rows ``i .. i + L - 1``; its label is the target of row ``i + L - 1``, so
    ``labels[length - 1:]`` lines up with the result. Returns a contiguous copy (empty when N < L).
    """
    length = _positive_int('length', length)
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f'features must have shape (N, F), got {x.shape}')
    if x.shape[0] < length:
        return np.empty((0, length, x.shape[1]))
    view = np.lib.stride_tricks.sliding_window_view(x, length, axis=0)  # (N-L+1, F, L)
    return np.ascontiguousarray(view.transpose(0, 2, 1))
