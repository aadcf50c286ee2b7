"""The ``effort_label='delayed'`` label: the raw effort ``filter_delay_s`` before a sample.

The networks learn, for a window ending at sample k, either the effort through the state's own
filter (``effort_label='filtered'``: the estimator's ``State.tau``) or the raw (scaled) effort
``filter_delay_s`` earlier, interpolated (``'delayed'``): the features of sample k describe the
robot that long ago, and the raw effort keeps friction steps sharp. :class:`DelayedEffort` keeps
the newest raw efforts and reads that one out. Pure numpy.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ['DelayedEffort']


class DelayedEffort:
    """A ring of the last ``floor(delay_s * rate) + 2`` raw efforts (n,) of accepted samples."""

    def __init__(self, n_joints: int) -> None:
        self.n = int(n_joints)
        self._ring = np.zeros((0, self.n))
        self._pos = 0
        self._count = 0
        self._delay = (0, 0.0)                  # whole samples, fraction
        self._rate: float | None = None

    def reset(self) -> None:
        """A stream boundary: no label until the ring has filled again."""
        self._count = 0

    def record(self, tau: Any, delay_s: float, rate_hz: float) -> None:
        """Keep this accepted sample's raw (scaled) effort, NaN when it has none (None or a
        wrong shape). A new ``rate_hz`` re-sizes the ring (and empties it)."""
        if self._ring.shape[0] == 0 or self._rate != rate_hz:
            d = delay_s * rate_hz                  # samples
            whole = int(math.floor(d))
            self._delay = (whole, d - whole)
            self._rate = rate_hz
            self._ring = np.full((whole + 2, self.n), np.nan)
            self._pos = self._count = 0
        ring, pos = self._ring, self._pos
        if tau is None or np.shape(tau) != (self.n,):
            ring[pos] = np.nan
        else:
            ring[pos] = tau
        self._pos = (pos + 1) % ring.shape[0]
        self._count = min(self._count + 1, ring.shape[0])

    def label(self) -> np.ndarray | None:
        """The effort recorded ``delay_s`` before the newest recorded sample (linear
        interpolation between the two nearest samples), or None: not enough history since the
        last reset, or a sample without effort involved."""
        ring = self._ring
        whole, frac = self._delay
        if self._count < whole + 2:
            return None
        size = ring.shape[0]
        newest = self._pos - 1
        label = (1.0 - frac) * ring[(newest - whole) % size] \
            + frac * ring[(newest - whole - 1) % size]
        return label if np.isfinite(label).all() else None
