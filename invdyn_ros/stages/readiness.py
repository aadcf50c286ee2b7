"""Rolling nMSE and readiness: the one rule for "how wrong were the latest predictions".

The nMSE of a window of samples is, per joint, the mean squared error of its samples divided by
a torque variance (the scale), then the mean over joints (``metrics.nmse`` of the same rows with
``std = sqrt(var)``). Everything that reports a recent or windowed error uses this module:

* :class:`RollingNMSE` -- the last ``window`` samples' squared errors in a ring with running sums:
  one-sample form :meth:`~RollingNMSE.push` (O(1); the sums are recomputed exactly from the ring
  at every wrap, so rounding never accumulates) and many-sample form
  :meth:`~RollingNMSE.push_many` (the sums after each row, and the ring left as the pushes leave
  it). :meth:`~RollingNMSE.value` is the nMSE for a scale given when asked (the scale may change
  while errors accumulate: the learner's target scaler, the pipeline's label statistics).
  ``OnlineLearner.recent_nmse`` is one.
* :class:`Readiness` -- the pipeline's ``ready``: a :class:`RollingNMSE` of the published torque,
  with hysteresis (ready below ``ready_nmse``, unready above ``unready_factor * ready_nmse``, never
  before the evidence floor: ``min_samples`` scored samples AND ``min_seconds`` of scored stream
  time, see :class:`Readiness`); :meth:`~Readiness.update` and :meth:`~Readiness.update_many`
  give the same numbers.
* :func:`window_nmse` -- offline, over a whole recorded series: the nMSE of arbitrary windows
  ``[lo, hi)`` of rows from one cumulative sum (the demo's time-based rolling nMSE, the
  evaluator's binned learning curve).

Pure numpy.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ['RollingNMSE', 'Readiness', 'window_sums', 'window_nmse']


def window_sums(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Sums of the rows ``x[lo[i]:hi[i]]`` (x (N, ...) ; lo, hi (k,) ints with lo <= hi), from
    one cumulative sum: (k, ...). A sum of non-negative values never comes out negative."""
    cs = np.zeros((x.shape[0] + 1,) + x.shape[1:])
    np.cumsum(x, axis=0, out=cs[1:])
    sums = cs[hi] - cs[lo]
    return sums


def window_nmse(err: Any, var: Any, lo: Any, hi: Any) -> np.ndarray:
    """nMSE (mean over joints) of each window of rows ``[lo[i], hi[i])`` of the errors ``err``
    (N, n) (prediction - measurement) with the per-joint variance ``var`` (n,): (k,). Windows
    must not be empty."""
    err = np.asarray(err, dtype=np.float64)
    lo, hi = np.asarray(lo, dtype=np.int64), np.asarray(hi, dtype=np.int64)
    sums = np.maximum(window_sums(np.square(err), lo, hi), 0.0)
    return np.mean(sums / ((hi - lo)[:, None] * np.asarray(var, dtype=np.float64)), axis=1)


class RollingNMSE:
    """Squared errors of the last ``window`` samples (n joints) and their per-joint sums."""

    def __init__(self, n_joints: int, window: int) -> None:
        self.n = int(n_joints)
        self.window = int(window)
        self.sq = np.zeros((self.window, self.n))      # ring of squared errors
        self.sum = np.zeros(self.n)
        self.pos = 0
        self.count = 0

    def push(self, err: np.ndarray) -> None:
        """One sample's errors (n,) (prediction - measurement, raw units)."""
        e = err * err
        pos = self.pos
        if self.count == self.window:
            self.sum -= self.sq[pos]
        else:
            self.count += 1
        self.sq[pos] = e
        self.sum += e
        pos += 1
        if pos == self.window:
            pos = 0
            np.sum(self.sq, axis=0, out=self.sum)        # no drift of the running sum
        self.pos = pos

    def push_many(self, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """k samples' errors (k, n) at once: returns the sums (k, n) and counts (k,) after each
        row; the ring is left exactly as k :meth:`push` calls leave it (the sum to rounding)."""
        k = len(err)
        E = np.square(err)
        size, cnt, pos = self.window, self.count, self.pos
        old = self.sq[:cnt] if cnt < size else np.roll(self.sq, -pos, axis=0)
        allE = np.concatenate((old, E))                  # the ring's rows oldest first, then E
        end = cnt + np.arange(1, k + 1)
        counts = np.minimum(end, size)
        sums = np.maximum(window_sums(allE, end - counts, end), 0.0)
        total = cnt + k
        if total < size:
            self.sq[:total] = allE
            self.pos = self.count = total
        else:
            new_pos = (pos + k) % size if cnt == size else total % size
            self.sq[:] = np.roll(allE[-size:], new_pos, axis=0)
            self.pos, self.count = new_pos, size
        np.sum(self.sq, axis=0, out=self.sum)
        return sums, counts

    @staticmethod
    def nmse(sums: np.ndarray, counts: Any, var: np.ndarray) -> Any:
        """The nMSE of window sums (n,) or (k, n) over ``counts`` samples with scale ``var``;
        a float (inf where not finite) or a (k,) array."""
        if np.ndim(sums) == 1:                      # the per-sample path: no errstate (µs)
            value = float(np.mean(sums / (counts * var)))
            return value if math.isfinite(value) else math.inf
        with np.errstate(divide='ignore', invalid='ignore', over='ignore'):
            value = np.mean(sums / (np.asarray(counts)[:, None] * var), axis=1)
        value[~np.isfinite(value)] = np.inf
        return value

    def value(self, var: np.ndarray) -> float:
        """nMSE of the samples in the window with per-joint variance ``var``; inf before any.
        Summed afresh from the ring (not the running sum), so equal rings give equal values."""
        if self.count == 0:
            return math.inf
        with np.errstate(divide='ignore', invalid='ignore', over='ignore'):
            return self.nmse(np.sum(self.sq, axis=0), self.count, var)

    def load(self, ring: Any, pos: int, count: int, squared: bool = True) -> None:
        """Restore a ring (``ring``, ``pos``, ``count`` as :attr:`sq`, :attr:`pos`,
        :attr:`count`; ``squared=False``: the ring holds errors, not their squares). A ring of
        another window length gives its newest ``window`` errors, oldest first."""
        ring = np.asarray(ring, dtype=np.float64)
        if not squared:
            ring = np.square(ring)
        count = min(int(count), len(ring))
        if ring.shape == self.sq.shape:
            self.sq[:] = ring
            self.pos, self.count = int(pos) % self.window, count
        else:
            keep = ring[(int(pos) - count + np.arange(count)) % max(len(ring), 1)]
            keep = keep.reshape(-1, self.n)[-self.window:]
            self.sq[:] = 0.0
            self.sq[:len(keep)] = keep
            self.count = len(keep)
            self.pos = self.count % self.window
        np.sum(self.sq, axis=0, out=self.sum)


class Readiness:
    """The pipeline's ``ready`` / ``recent_nmse``: the rolling nMSE of the published torque
    against the measured one with hysteresis (module docstring). ``var`` (n,) is the scale,
    set by the owner (inf until known: nMSE 0, never ready before the evidence floor anyway).

    The evidence floor: ready is never declared before BOTH ``min_samples`` scored samples and
    ``min_seconds`` of scored stream time. The seconds are the sample stamps' increments between
    consecutive scored samples, each counted at most ``max_dt`` (a longer gap is a pause of the
    stream, not motion; a stamp going back counts 0), so the floor means the same at 125 Hz and
    1 kHz -- consecutive samples of a 1 kHz stream are strongly correlated, so a sample count
    alone asks 8x more motion of a 125 Hz robot than of a 1 kHz one for the same confidence.
    ``min_seconds`` 0 (the default) is the count alone; updates without a stamp add no time.
    The window stays in samples (``window``): it is what the score averages, not a floor.

    ``ready_since``: the stamp of the sample that made it ready this time (None while not ready,
    or when that sample had no stamp) -- when the output became usable, to the sample, unlike a
    periodic report of ``ready``."""

    def __init__(self, n_joints: int, window: int, ready_nmse: float, unready_factor: float,
                 min_samples: int, min_seconds: float = 0.0, max_dt: float = math.inf) -> None:
        self.errors = RollingNMSE(n_joints, window)
        self.ready_nmse = float(ready_nmse)
        self.unready_nmse = float(unready_factor) * self.ready_nmse
        self.min_samples = int(min_samples)
        self.min_seconds = float(min_seconds)
        self.max_dt = float(max_dt)
        self.var = np.full(int(n_joints), np.inf)
        self.scored = 0
        self.seconds = 0.0                   # scored stream time (s), see the class docstring
        self._last_stamp = math.nan
        self.ready = False
        self.ready_since: float | None = None
        self.nmse = math.inf

    def _advance(self, stamp: float | None) -> None:
        if stamp is None:
            return
        dt = stamp - self._last_stamp
        if dt > 0.0:                         # False for the first stamp (NaN) and back-steps
            self.seconds += min(dt, self.max_dt)
        if math.isfinite(stamp):
            self._last_stamp = stamp

    def _seconds_many(self, stamps: Any, k: int) -> np.ndarray:
        """The scored seconds after each of k rows with ``stamps`` (k,) (None: no time)."""
        if stamps is None:
            return np.full(k, self.seconds)
        st = np.asarray(stamps, dtype=np.float64)
        prev = np.concatenate(([self._last_stamp], st[:-1]))
        # the previous finite stamp of each row (NaN stamps neither count nor move it)
        finite = np.isfinite(prev)
        idx = np.where(finite, np.arange(k), -1)
        np.maximum.accumulate(idx, out=idx)
        prev = np.where(idx >= 0, prev[np.maximum(idx, 0)], np.nan)
        with np.errstate(invalid='ignore'):
            dt = st - prev
            dt = np.where(dt > 0.0, np.minimum(dt, self.max_dt), 0.0)
        seconds = np.cumsum(np.concatenate(([self.seconds], dt)))[1:]   # as update() adds
        good = np.flatnonzero(np.isfinite(st))
        if good.size:
            self._last_stamp = float(st[good[-1]])
        self.seconds = float(seconds[-1])
        return seconds

    @property
    def enough_evidence(self) -> bool:
        """Both floors met (the scored samples and seconds so far)."""
        return self.scored >= self.min_samples and self.seconds >= self.min_seconds

    def update(self, torque: np.ndarray, tau: np.ndarray, stamp: float | None = None) -> None:
        """Score one published torque against the measured ``tau`` (``stamp``: the sample's)."""
        errors = self.errors
        errors.push(torque - tau)
        self.scored += 1
        self._advance(stamp)
        self.nmse = nmse = errors.nmse(errors.sum, errors.count, self.var)
        was = self.ready
        if self.scored < self.min_samples or self.seconds < self.min_seconds:
            self.ready = False
        elif was:
            self.ready = nmse <= self.unready_nmse
        else:
            self.ready = nmse < self.ready_nmse
        if self.ready != was:
            self.ready_since = stamp if self.ready and stamp is not None and \
                math.isfinite(stamp) else None

    def update_many(self, torque: np.ndarray, tau: np.ndarray, stamps: Any = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`update` for k rows (``stamps`` (k,) or None); returns ``nmse`` (k,) and
        ``ready`` (k,) after each row.

        The hysteresis as a forward fill: below ``ready_nmse`` sets it, above the unready
        level (or before the evidence floor) clears it, in between the previous value holds."""
        k = len(torque)
        if k == 0:
            return np.zeros(0), np.zeros(0, dtype=bool)
        sums, counts = self.errors.push_many(torque - tau)
        nmse = self.errors.nmse(sums, counts, self.var)
        n_scored = self.scored + np.arange(1, k + 1)
        seconds = self._seconds_many(stamps, k)
        event = np.where(nmse < self.ready_nmse, 1, np.where(nmse > self.unready_nmse, 0, -1))
        event[(n_scored < self.min_samples) | (seconds < self.min_seconds)] = 0
        idx = np.where(event >= 0, np.arange(k), -1)
        np.maximum.accumulate(idx, out=idx)
        ready = np.where(idx >= 0, event[np.maximum(idx, 0)] == 1, self.ready)
        self.scored += k
        self.nmse = float(nmse[-1])
        if not ready[-1]:
            self.ready_since = None
        else:                                # the first row of the last run of ready rows
            off = np.flatnonzero(~ready)
            if off.size or not self.ready:
                first = int(off[-1]) + 1 if off.size else 0
                since = math.nan if stamps is None else float(stamps[first])
                self.ready_since = since if math.isfinite(since) else None
        self.ready = bool(ready[-1])
        return nmse, ready
