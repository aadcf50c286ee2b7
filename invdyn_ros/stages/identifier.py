"""Dual-network identification: per joint, publish the torque of whichever network is doing better.

Two networks (by default an LSTM and a GRU) predict the same torques. Each network's *identification
error* ``tau_measured - prediction`` is kept per joint in a rolling window of the last ``window``
samples; a joint switches to the other network only when the other's error spread is clearly smaller
(``std_other < (1 - hysteresis) * std_active``), so two nearly equal networks do not make the
published torque flip back and forth (every flip is a small step in the feedforward).

The error spread is the root-mean-square of the error (its standard deviation about *zero*) by
default, not the standard deviation about its own mean: a network with a constant 10 Nm bias has a
tiny ordinary std but is a bad feedforward, and RMS sees that. ``centered=True`` gives the plain std.

Cost. ``update`` runs in the node's 1 kHz loop and once per sample in offline replay, so it is
O(1): per (network, joint) it keeps running sums of the squared errors (and, for ``centered=True``,
of the errors), adds the entering error and subtracts the one leaving the window. Running sums
drift by rounding, and a subtraction loses everything when a large error leaves a window of small
ones (a 1e6 Nm glitch would leave garbage behind, possibly a negative sum that makes the broken
network look perfect). So the sums are recomputed exactly from the ring buffer
(1) every ``window`` updates, when the ring position wraps to 0: the drift is bounded by one
    window's worth of operations, however long the node runs;
(2) at once when the reported sum of squares falls below ``_DRIFT_TOL`` (1e-3) of the largest one
    since the last recompute, the only case in which that bounded drift can still be large
    *relative* to the answer. It also catches a negative sum.
Between recomputes the relative error stays below ~1e-9 (window 1000). In centered mode the sums
are of ``error - shift``, ``shift`` being the window mean at the last recompute, so a network with
a large bias does not lose its small std to cancellation in ``E[d^2] - E[d]^2``; tiny negative
variances left by rounding are clamped to 0 before the square root. (In RMS mode a negative sum
triggers the recompute of (2), so nothing negative reaches the square root.)

``update_many`` is the same law for a whole recorded stream at once (offline replay), vectorized:
rolling sums from per-block prefix and suffix cumulative sums (van Herk / Gil-Werman: the window of
length ``window`` ending at offset ``r`` of block ``j`` is the prefix ``0..r`` of block ``j`` plus
the suffix ``r+1..`` of block ``j-1``), so no sum ever holds a value from outside its window and
nothing is subtracted: RMS adds squares only; centered sums each piece about a value inside the
window and merges the two with Chan's formula. The hysteresis law becomes a per-joint forward fill
of the "clearly better" events.

A sample whose errors are absurdly large (root-sum-square of its 2n errors above ``MAX_ERROR_NORM``
= 1e100; no torque is that large, and squares would overflow the sums) is rejected like one with a
non-finite value (which always makes an error non-finite); one dot product checks both. (numpy may
emit a RuntimeWarning for such a sample, e.g. for Inf - Inf; it is still only rejected and counted.)

Pure numpy; ``n_joints`` is at most 7.

Why one module of ~650 lines: it is the one owner of the switching rule, in every form the pipeline
uses (``update`` / ``select`` per sample, ``choose`` on the fast path, ``select_from``,
``update_many`` / ``select_many`` for replay and trajectories). Splitting the per-sample and the
vectorized forms apart would put the rule in two places again; half of the lines are the
explanations above and beside the two exactness tricks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from invdyn_ros.errors import ConfigError

__all__ = ['DualIdentifier', 'IdentifierOutput', 'IdentifierTrace', 'MAX_ERROR_NORM']

#: A sample whose 2n identification errors have a root-sum-square above this is rejected, like a
#: non-finite one. Squared errors then stay below 1e200, far from float64 overflow even summed over
#: any window that fits in memory.
MAX_ERROR_NORM = 1e100
_MAX_SUMSQ = MAX_ERROR_NORM ** 2

# Recompute the running sums exactly when the reported sum of squares falls below this fraction of
# the largest one since the last exact recompute: rounding error in the running sums is about
# eps * (updates since recompute) * peak <= 2.2e-16 * 2 * window * peak, so with 1e-3 the relative
# error of what is reported stays below ~1e-9 for window 1000.
_DRIFT_TOL = 1e-3

# uses -> needed (the networks a prediction needs under the current choice)
_NEEDED = {(True, True): (0, 1), (True, False): (0,), (False, True): (1,), (False, False): (0,)}

# update_many works on at most this many rows at a time (memory: a few arrays of
# 2 x (rows + 2 window) x n float64).
_BATCH_ROWS = 50_000


@dataclass(frozen=True)
class IdentifierOutput:
    """What the identifier publishes for one sample (all arrays have shape ``(n,)``, float64).

    ``torque``: per joint the prediction of the active network; ``active``: 0 = ``names[0]``
    (``pred_a``), 1 = ``names[1]`` (``pred_b``); ``std_a`` / ``std_b``: the rolling error spread of each
    network (0 until a joint has samples); ``uncertainty``: ``max(std_active, |pred_a - pred_b|)``, an
    honest error bar: large when the active network has been wrong lately or the two networks disagree.
    """

    torque: np.ndarray
    active: np.ndarray
    std_a: np.ndarray
    std_b: np.ndarray
    uncertainty: np.ndarray


@dataclass(frozen=True)
class IdentifierTrace:
    """Per-row record of ``DualIdentifier.update_many`` (row ``t`` = input row ``t``).

    ``accepted`` (T,) bool: the row was finite and used. ``active_before`` (T, n) int64 is the
    choice in force *before* row ``t`` was pushed, i.e. what ``select`` would use for row ``t``
    (the prequential choice for replay); ``std_a_before`` / ``std_b_before`` (T, n) the error
    spreads at that moment. ``*_after`` are the same right after row ``t`` (a rejected row leaves
    them unchanged).
    """

    accepted: np.ndarray
    active_before: np.ndarray
    std_a_before: np.ndarray
    std_b_before: np.ndarray
    active_after: np.ndarray
    std_a_after: np.ndarray
    std_b_after: np.ndarray


class DualIdentifier:
    """Per-joint choice between two networks from their rolling identification errors.

    ``update(pred_a, pred_b, tau_measured)`` pushes one sample's errors and re-decides the active
    network of every joint (the decision is state, because of the hysteresis); ``select(pred_a,
    pred_b)`` only applies the current decision, so it can be used for any pair of predictions (e.g.
    the feedforward for a reference trajectory) without touching the statistics.
    ``update_many`` does what a loop of ``update`` over recorded rows would, vectorized.

    Until ``min_samples`` errors are in the window every joint keeps network 0 (the primary).
    A sample with a non-finite, too large or wrongly shaped value is rejected and counted, never
    raised on.
    """

    def __init__(self, n_joints: int, window: int = 200, hysteresis: float = 0.1,
                 names: tuple[str, str] = ('lstm', 'gru'), min_samples: int = 10,
                 centered: bool = False) -> None:
        if not isinstance(n_joints, (int, np.integer)) or n_joints < 1:
            raise ConfigError(f'n_joints must be a positive int, got {n_joints!r}')
        if not isinstance(window, (int, np.integer)) or window < 2:
            raise ConfigError(f'dual_window must be an int >= 2, got {window!r}')
        if not (isinstance(hysteresis, (int, float)) and 0.0 <= hysteresis < 1.0):
            raise ConfigError(f'dual_hysteresis must be in [0, 1), got {hysteresis!r}')
        if len(names) != 2 or not all(isinstance(s, str) for s in names):
            raise ConfigError(f'names must be two strings, got {names!r}')
        if not isinstance(min_samples, (int, np.integer)) or not 1 <= min_samples <= window:
            raise ConfigError(f'min_samples must be an int in [1, window], got {min_samples!r}')
        self.n_joints = int(n_joints)
        self.window = int(window)
        self.hysteresis = float(hysteresis)
        self.names = (str(names[0]), str(names[1]))
        self.min_samples = int(min_samples)
        self.centered = bool(centered)
        self._shape = (self.n_joints,)
        self._keep = 1.0 - self.hysteresis
        # Ring buffers of errors: axis 0 = network (a, b), axis 1 = time, axis 2 = joint. While the
        # window is filling (count < window) the errors are at [0, count) and pos == count.
        self._err = np.zeros((2, self.window, self.n_joints))
        self._pos = 0
        self._count = 0
        # Running sums per (network, joint) of d and d^2 with d = error - shift (shift = 0 for RMS).
        # The drift guard's reference is the largest _sq since the last exact recompute (peak).
        # _sq, _std and the peak live in one block with rows [sq_a, sq_b, std_a, std_b, peak_b,
        # peak_a], so one multiply and one comparison check both the switching law and the guard:
        #   lhs = rows 3..0 = [std_b, std_a, sq_b, sq_a]   (a reversed view, only read)
        #   rhs = coef * rows 2..5 = coef * [std_a, std_b, peak_b, peak_a]
        # lhs < rhs row 0: b clearly better, row 1: a clearly better (coef = keep = 1 - hysteresis
        # where that would be a switch and the law applies, else 0: std >= 0 is never < 0), rows 2
        # and 3: the guard (coef = _DRIFT_TOL). Arrays are written in place only (views).
        n = self.n_joints
        block = np.zeros((6, n))
        self._sq, self._std, self._peak_ba = block[0:2], block[2:4], block[4:6]
        self._lhs, self._src = block[3::-1], block[2:6]
        self._coef = np.zeros((4, n))
        self._rhs = np.zeros((4, n))
        self._cmp = np.zeros((4, n), dtype=bool)
        self._s = np.zeros((2, n))
        self._shift = np.zeros((2, n))
        # Scratch for update (no allocation in the control loop): the new errors and views of them.
        self._e = np.empty((2, n))
        self._e0, self._e1, self._eflat = self._e[0], self._e[1], self._e.reshape(-1)
        self._active = np.zeros(n, dtype=np.int64)
        self._set_masks()
        self.counters = {'updates': 0, 'rejected': 0, 'switches': 0}
        self.switches_per_joint = np.zeros(self.n_joints, dtype=np.int64)

    # ------------------------------------------------------------------ state
    @property
    def active(self) -> np.ndarray:
        """Current choice per joint (0 = ``names[0]``, 1 = ``names[1]``); a copy."""
        return self._active.copy()

    @property
    def uses(self) -> tuple[bool, bool]:
        """(some joint uses ``names[0]``, some joint uses ``names[1]``) under the current choice:
        the networks a prediction needs. Kept up to date with the choice (no array work)."""
        return self._uses

    @property
    def needed(self) -> tuple[int, ...]:
        """Indexes of the networks the current choice uses: ``(0,)``, ``(1,)`` or ``(0, 1)``; the
        predictions :meth:`choose` needs (the fast path runs only those networks)."""
        return self._needed

    @property
    def std_a(self) -> np.ndarray:
        return self._std[0].copy()

    @property
    def std_b(self) -> np.ndarray:
        return self._std[1].copy()

    @property
    def count(self) -> int:
        """Number of errors currently in the rolling window (≤ ``window``)."""
        return self._count

    def reset(self) -> None:
        """Forget all errors and go back to network 0 on every joint (counters are kept)."""
        self._err[:] = 0.0
        self._pos = 0
        self._count = 0
        for arr in (self._s, self._sq, self._shift, self._peak_ba, self._std):
            arr[:] = 0.0
        self._active[:] = 0
        self._set_masks()

    # ------------------------------------------------------------------ statistics
    def _resum(self) -> None:
        """Recompute the running sums exactly from the ring (and re-centre the shift)."""
        c = self._count
        errs = self._err[:, :c]
        if c == 0:
            for arr in (self._s, self._sq, self._shift, self._peak_ba):
                arr[:] = 0.0
            return
        if self.centered:
            self._shift[...] = errs.mean(axis=1)
            d = errs - self._shift[:, None, :]
            self._s[...] = d.sum(axis=1)
            self._sq[...] = np.einsum('ktj,ktj->kj', d, d)
        else:
            self._sq[...] = np.einsum('ktj,ktj->kj', errs, errs)
        self._peak_ba[...] = self._sq[::-1]

    def _spread_into(self, out: np.ndarray) -> np.ndarray:
        """Mean square (RMS mode) or variance (centered) per (network, joint) into ``out``, >= 0."""
        inv_c = 1.0 / self._count
        np.multiply(self._sq, inv_c, out=out)
        if self.centered:
            mean = self._s * inv_c
            out -= mean * mean
        return np.maximum(out, 0.0, out=out)

    # ------------------------------------------------------------------ input
    def _as_vector(self, x) -> np.ndarray | None:
        if type(x) is np.ndarray and x.shape == self._shape and x.dtype == np.float64:
            return x  # fast path (the control loop): read only, never stored
        try:
            v = np.asarray(x, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            return None
        if v.shape != self._shape:
            return None
        return v

    def update(self, pred_a, pred_b, tau_measured) -> bool:
        """Push one sample's identification errors and re-decide the active network per joint.

        Returns False (and counts it in ``counters['rejected']``) when an input is missing, has the
        wrong shape, is not finite or gives absurdly large errors (``MAX_ERROR_NORM``); the
        statistics are then left untouched. O(1): running sums, see the module docstring.
        """
        a, b, tau = self._as_vector(pred_a), self._as_vector(pred_b), self._as_vector(tau_measured)
        if a is None or b is None or tau is None:
            self.counters['rejected'] += 1
            return False
        e = self._e                           # (2, n): errors of network a and b
        np.subtract(tau, a, out=self._e0)
        np.subtract(tau, b, out=self._e1)
        # One check for NaN, Inf and absurd magnitudes: any non-finite input makes an error
        # non-finite, and then the sum of squares is NaN (compares False) or Inf.
        if not np.dot(self._eflat, self._eflat) <= _MAX_SUMSQ:
            self.counters['rejected'] += 1
            return False
        pos, window, count = self._pos, self.window, self._count
        slot = self._err[:, pos]              # view; holds the leaving error once the ring is full
        full = count == window
        sq = self._sq
        if self.centered:
            if count == 0:
                self._shift[...] = e          # centre the first window on its first sample
            d = e - self._shift
            if full:
                od = slot - self._shift
                self._s += e - slot
                sq += d * d - od * od
            else:
                self._s += d
                sq += d * d
        elif full:
            sq += e * e - slot * slot
        else:
            sq += e * e
        slot[...] = e
        if not full:
            self._count = count = count + 1
        self._pos = pos = (pos + 1) % window
        self.counters['updates'] += 1

        if not full and count == self.min_samples:
            self._set_masks()                 # the switching law applies from now on

        std = self._std
        if pos == 0:
            self._resum()                     # periodic exact recompute: drift stays bounded
            self._spread_into(std)
        elif self.centered:
            self._spread_into(std)
            # Guard: the sum of squares about the window mean (count * var) is a small fraction of
            # what the running sums held lately, so rounding may dominate: recompute exactly.
            peak = np.maximum(self._peak_ba, self._sq[::-1], out=self._peak_ba)[::-1]
            if np.count_nonzero(std * count < _DRIFT_TOL * peak):
                self._resum()
                self._spread_into(std)
        else:
            # RMS, the hot path: mean square, guard and switching law in one comparison (see
            # __init__). The guard also catches a negative sum, so what reaches the sqrt is >= 0
            # without a clamp (while the window fills only squares are added; a recompute is exact).
            np.maximum(self._peak_ba, sq[::-1], out=self._peak_ba)
            np.multiply(sq, 1.0 / count, out=std)
            np.sqrt(std, out=std)
            np.multiply(self._coef, self._src, out=self._rhs)
            cmp = np.less(self._lhs, self._rhs, out=self._cmp)
            if np.count_nonzero(cmp):
                if np.count_nonzero(cmp[2:]):
                    self._resum()             # guard: recompute, then decide afresh
                    np.multiply(self._sq, 1.0 / count, out=std)
                    np.sqrt(std, out=std)
                    self._decide()
                else:
                    self._switch(cmp[0] | cmp[1])
            return True
        np.sqrt(std, out=std)
        self._decide()
        return True

    def _decide(self) -> None:
        """The switching law: leave the active network only for a clearly better one.

        Only the law's rows of the comparison described in __init__ (the coefficients make it a
        no-op before ``min_samples`` and where the clearly better network is already active).
        """
        rhs = np.multiply(self._coef[:2], self._std, out=self._rhs[:2])
        better = np.less(self._lhs[:2], rhs, out=self._cmp[:2])
        if np.count_nonzero(better):
            self._switch(better[0] | better[1])

    def _switch(self, switch: np.ndarray) -> None:
        self._active[switch] = 1 - self._active[switch]
        self.switches_per_joint += switch
        self.counters['switches'] += int(np.count_nonzero(switch))
        self._set_masks()

    def _set_masks(self) -> None:
        """Coefficients of the comparison after a change of the choice or of the sample count."""
        law = self._keep if self._count >= self.min_samples else 0.0
        self._coef[0] = np.where(self._active == 0, law, 0.0)   # b clearly better: switch to b
        self._coef[1] = np.where(self._active == 1, law, 0.0)   # a clearly better: switch to a
        self._coef[2:] = _DRIFT_TOL
        self._uses = (bool((self._active == 0).any()), bool(self._active.any()))
        self._needed = _NEEDED[self._uses]

    # ------------------------------------------------------------------ batch
    def _as_batch(self, x, name: str) -> np.ndarray:
        try:
            arr = np.asarray(x, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f'{name} must be a numeric (T, {self.n_joints}) array: {exc}') from exc
        if arr.ndim == 1 and arr.size == 0:
            arr = arr.reshape(0, self.n_joints)
        if arr.ndim != 2 or arr.shape[1] != self.n_joints:
            raise ValueError(f'{name} must have shape (T, {self.n_joints}), got {arr.shape}')
        return arr

    def update_many(self, pred_a, pred_b, tau_measured) -> IdentifierTrace:
        """``update(pred_a[t], pred_b[t], tau_measured[t])`` for t = 0..T-1, vectorized.

        Inputs are (T, n) array-likes. A row with a non-finite (or too large) value in any of the
        three is rejected and counted and does not touch the statistics; arrays of the wrong shape
        raise ValueError (a caller bug, unlike a bad sample). Returns an ``IdentifierTrace``; the
        identifier is left in the state the sequential calls would have left (stds equal to
        rounding, ~1e-12 relative; a decision may differ only at an exact tie of the hysteresis
        threshold, which rounding can tip either way).
        """
        a = self._as_batch(pred_a, 'pred_a')
        b = self._as_batch(pred_b, 'pred_b')
        tau = self._as_batch(tau_measured, 'tau_measured')
        if not a.shape[0] == b.shape[0] == tau.shape[0]:
            raise ValueError(f'pred_a, pred_b and tau_measured must have the same number of rows, '
                             f'got {a.shape[0]}, {b.shape[0]}, {tau.shape[0]}')
        T = a.shape[0]
        parts = [self._update_chunk(a[s:s + _BATCH_ROWS], b[s:s + _BATCH_ROWS],
                                    tau[s:s + _BATCH_ROWS]) for s in range(0, T, _BATCH_ROWS)]
        if not parts:  # empty batch: a no-op with an empty trace
            n = self.n_joints
            parts = [(np.zeros(0, bool), np.zeros((0, n), np.int64), np.zeros((2, 0, n)),
                      np.zeros((0, n), np.int64), np.zeros((2, 0, n)))]
        # Rows are axis 0 of accepted / active, axis 1 of the (2, T, n) spreads.
        accepted, act_before, std_before, act_after, std_after = (
            np.concatenate(p, axis=1 if p[0].ndim == 3 else 0) for p in zip(*parts))
        return IdentifierTrace(accepted=accepted, active_before=act_before,
                               std_a_before=std_before[0], std_b_before=std_before[1],
                               active_after=act_after, std_a_after=std_after[0],
                               std_b_after=std_after[1])

    def _update_chunk(self, a: np.ndarray, b: np.ndarray, tau: np.ndarray):
        """update_many for at most _BATCH_ROWS rows; returns the per-row trace arrays."""
        T = a.shape[0]
        with np.errstate(over='ignore', invalid='ignore'):   # the rule of update, per row
            err = np.stack([tau - a, tau - b])                  # (2, T, n)
            ok = np.einsum('ktj,ktj->t', err, err) <= _MAX_SUMSQ
        m = int(np.count_nonzero(ok))
        active0, std0 = self._active.copy(), self._std.copy()
        if m:
            new = err if m == T else err[:, ok]                # (2, m, n)
            std_acc = self._rolling_std(new)                    # (2, m, n)
            act_acc = self._decide_many(std_acc, active0)       # (m, n)
            self._store(new, std_acc[:, -1], act_acc[-1])
        else:
            std_acc = np.empty((2, 0, self.n_joints))
            act_acc = np.empty((0, self.n_joints), dtype=np.int64)
        # The state after row t is the state after the last accepted row at or before t: index
        # n_acc[t] of the arrays extended by the state before the batch (index 0).
        n_acc = np.cumsum(ok)
        before = n_acc - ok
        act_ext = np.concatenate([active0[None], act_acc])
        std_ext = np.concatenate([std0[:, None], std_acc], axis=1)   # (2, m + 1, n)
        switches = np.count_nonzero(act_ext[1:] != act_ext[:-1], axis=0)
        self.switches_per_joint += switches
        self.counters['switches'] += int(switches.sum())
        self.counters['updates'] += m
        self.counters['rejected'] += T - m
        return (ok, act_ext[before], std_ext[:, before], act_ext[n_acc], std_ext[:, n_acc])

    def _rolling_std(self, new: np.ndarray) -> np.ndarray:
        """The error spreads (2, m, n) after each of the new errors ``new`` (2, m, n) is pushed.

        The stream is the ring contents in order (the last ``count`` errors) followed by ``new``;
        element ``k`` of it has the window ``[max(0, k - window + 1), k]``. It is laid out in blocks
        of ``window`` after one block of zeros, so element ``k`` sits at ``f = k + window``, block
        ``j = f // window``, offset ``r = f % window``; its window is the prefix ``0..r`` of block
        ``j`` plus the suffix ``r+1..`` of block ``j-1`` (empty for ``r = window - 1``, and zeros
        for ``j == 1``, the padding), and that suffix sum sits at flat index ``f - window + 1`` of
        the per-block suffix sums. So every needed sum is a slice; nothing is gathered.
        """
        window, n = self.window, self.n_joints
        c0, m = self._count, new.shape[1]
        if c0 < window:
            prior = self._err[:, :c0]
        else:
            prior = np.concatenate([self._err[:, self._pos:], self._err[:, :self._pos]], axis=1)
        length = c0 + m
        nb = 1 + -(-length // window)
        z = np.zeros((2, nb * window, n))
        z[:, window:window + c0] = prior
        z[:, window + c0:window + length] = new
        zb = z.reshape(2, nb, window, n)
        lo, hi = window + c0, window + length                   # flat positions of the new errors
        f = np.arange(lo, hi)
        r = f % window
        n1 = r + 1
        # Suffix length; 0 at the end of a block and in block 1 (its predecessor is the padding).
        n2 = np.where(f >= 2 * window, window - 1 - r, 0)
        cnt = (n1 + n2).astype(np.float64)[:, None]             # = min(k + 1, window)

        def prefix(x):   # per-block inclusive cumulative sums, flat, at the new positions
            return np.cumsum(x, axis=2).reshape(2, -1, n)[:, lo:hi]

        def suffix(x):   # per-block suffix sums from offset r + 1 (garbage where n2 == 0)
            q = np.cumsum(x[:, :, ::-1], axis=2)[:, :, ::-1].reshape(2, -1, n)
            return q[:, lo - window + 1:hi - window + 1]

        if not self.centered:
            # RMS: sums of squares of positive terms only, no shift needed.
            z2 = zb * zb
            sumsq = prefix(z2) + suffix(z2) * (n2 > 0)[:, None]
            var = sumsq / cnt
        else:
            # Each piece is summed about a value inside the window (the first value of block j,
            # the last of block j-1), then the two are merged with Chan's formula.
            first, last = zb[:, :, :1], zb[:, :, -1:]
            dp, ds = zb - first, zb - last
            s1, ss1 = prefix(dp), prefix(dp * dp)
            s2, ss2 = suffix(ds), suffix(ds * ds)
            n1f = n1.astype(np.float64)[:, None]
            n2f = n2.astype(np.float64)[:, None]
            mean1 = s1 / n1f                                    # about first_j
            mean2 = s2 / np.maximum(n2f, 1.0)                   # about last_{j-1}
            m2 = np.maximum(ss1 - s1 * mean1, 0.0)
            m2 += np.maximum(ss2 - s2 * mean2, 0.0) * (n2f > 0)
            # first_j - last_{j-1} per block, spread over the new positions.
            jump = (first[:, 1:, 0] - last[:, :-1, 0])          # (2, nb - 1, n), block j at j - 1
            jump = np.repeat(jump, window, axis=1)[:, lo - window:hi - window]
            delta = mean2 - mean1 - jump                        # mean of piece 2 - mean of piece 1
            m2 += delta * delta * (n1f * n2f / cnt)
            var = m2 / cnt
        return np.sqrt(np.maximum(var, 0.0, out=var), out=var)

    def _decide_many(self, std_acc: np.ndarray, active0: np.ndarray) -> np.ndarray:
        """The switching law over accepted rows: a per-joint forward fill of "clearly better"
        events.

        After a row with at least ``min_samples`` errors in its window, "to network 1" fires when
        ``std_b < (1 - h) std_a`` and "to network 0" when ``std_a < (1 - h) std_b`` (never both);
        otherwise the choice is kept, so the choice after row i is the one of the last event at or
        before i, or the choice before the batch. Returns the choices (m, n).
        """
        m = std_acc.shape[1]
        sa, sb = std_acc[0], std_acc[1]
        to_b = sb < self._keep * sa
        event = to_b | (sa < self._keep * sb)
        first_eligible = max(self.min_samples - self._count - 1, 0)   # rows before: too few errors
        event[:first_eligible] = False
        rows = np.where(event, np.arange(m)[:, None], -1)
        np.maximum.accumulate(rows, axis=0, out=rows)
        return np.where(rows >= 0, np.take_along_axis(to_b, np.maximum(rows, 0), axis=0),
                        active0[None]).astype(np.int64)

    def _store(self, new: np.ndarray, std_last: np.ndarray, active_last: np.ndarray) -> None:
        """Leave ring, position, count, sums, std and choice as the sequential updates would."""
        window, m = self.window, new.shape[1]
        keep = min(m, window)
        idx = (self._pos + np.arange(m - keep, m)) % window
        self._err[:, idx] = new[:, m - keep:]
        self._pos = (self._pos + m) % window
        self._count = min(self._count + m, window)
        self._resum()
        self._std[...] = std_last
        self._active[...] = active_last
        self._set_masks()

    # ------------------------------------------------------------------ output
    def select(self, pred_a, pred_b=None) -> IdentifierOutput:
        """Combine two predictions per joint with the current choice.

        ``pred_b=None`` (single-network mode) returns ``pred_a`` with ``active`` all 0. If the chosen
        prediction of a joint is not finite but the other one is, the other one is used for that
        joint (a broken network never hides a working one); if both are non-finite the torque stays
        non-finite and the caller (the pipeline) must drop the sample.
        """
        a = self._as_vector(pred_a)
        if a is None:
            raise ValueError(f'pred_a must have shape ({self.n_joints},)')
        joints = np.arange(self.n_joints)
        if pred_b is None:
            std_a = self._std[0].copy()
            active = np.zeros(self.n_joints, dtype=np.int64)
            unc = std_a.copy()
            return IdentifierOutput(a.copy(), active, std_a, self._std[1].copy(), unc)
        b = self._as_vector(pred_b)
        if b is None:
            raise ValueError(f'pred_b must have shape ({self.n_joints},)')
        active = self._active.copy()
        fa, fb = np.isfinite(a), np.isfinite(b)
        active[~fa & fb] = 1
        active[fa & ~fb] = 0
        both = np.stack([a, b])
        torque = both[active, joints]
        std_active = self._std[active, joints]
        with np.errstate(invalid='ignore'):
            diff = np.abs(a - b)
        # A non-finite partner says nothing about the disagreement: fall back to the error spread.
        diff = np.where(np.isfinite(diff), diff, 0.0)
        unc = np.maximum(std_active, diff)
        return IdentifierOutput(torque, active, self._std[0].copy(), self._std[1].copy(), unc)

    def choose(self, preds) -> np.ndarray | None:
        """The fast path of :meth:`select`: per joint the current choice's prediction.

        ``preds`` holds one prediction per network, indexed like ``names`` (one entry: single
        network, the prediction itself); only the :attr:`needed` ones must be given, the others
        may be None. Returns None when a needed prediction is missing or a chosen value is not
        finite: then :meth:`select_from` with every network's prediction decides (its fallback).
        Otherwise the torque equals ``select(...).torque`` (not a copy in the one-network case).
        """
        needed = self._needed
        if len(preds) == 1 or needed == (0,):
            torque = preds[0]
        elif needed == (1,):
            torque = preds[1]
        else:
            pa, pb = preds
            if pa is None or pb is None:
                return None
            torque = np.where(self._active == 1, pb, pa)
        if torque is None or not np.isfinite(torque).all():
            return None
        return torque

    def select_from(self, preds) -> IdentifierOutput | None:
        """:meth:`select` for one prediction per network (``preds`` indexed like ``names``; one
        entry: single network) where None marks a network without a prediction (treated as a
        non-finite one: the other network is used); None when no network has one. The
        ``uncertainty`` is finite (0 where it would not be)."""
        pa = preds[0]
        if len(preds) == 1:
            if pa is None:
                return None
            sel = self.select(pa)
        else:
            pb = preds[1]
            if pa is None and pb is None:
                return None
            nan = np.full(self.n_joints, np.nan)
            sel = self.select(nan if pa is None else pa, nan if pb is None else pb)
        unc = sel.uncertainty
        if not np.isfinite(unc).all():
            unc[~np.isfinite(unc)] = 0.0
        return sel

    def select_many(self, pred_a, pred_b=None, tau_measured=None) -> IdentifierOutput:
        """A loop of ``select`` then ``update`` over recorded rows, vectorized (offline replay).

        Row ``t`` (inputs (T, n); a row of NaN: that network had no prediction) is selected with
        the statistics of the rows before it, exactly as :meth:`select_from` would per row; then,
        if ``tau_measured`` is given and the row's predictions and torque are all finite, its
        errors are pushed (:meth:`update_many`; ``pred_b=None``: single network, the errors of
        ``pred_a`` for both). Returns the per-row selections as an ``IdentifierOutput`` of (T, n)
        arrays (``uncertainty`` finite); the identifier is left as the loop would leave it.
        """
        PA = self._as_batch(pred_a, 'pred_a')
        dual = pred_b is not None
        PB = self._as_batch(pred_b, 'pred_b') if dual else PA
        T = PA.shape[0]
        if PB.shape[0] != T:
            raise ValueError(f'pred_a and pred_b must have the same number of rows, '
                             f'got {T}, {PB.shape[0]}')
        fa, fb = np.isfinite(PA), np.isfinite(PB)
        if tau_measured is None:
            upd = np.zeros(0, dtype=np.int64)
        else:
            tau = self._as_batch(tau_measured, 'tau_measured')
            upd = np.flatnonzero(fa.all(axis=1) & fb.all(axis=1) & np.isfinite(tau).all(axis=1))
        if upd.size:
            trace = self.update_many(PA[upd], PB[upd], tau[upd])
            act_b, sa_b, sb_b = trace.active_before, trace.std_a_before, trace.std_b_before
        else:
            act_b = sa_b = sb_b = np.zeros((0, self.n_joints))
        # row t sees the updates of the rows before it: the trace's 'before' of the next
        # updated row at or after t, or the final state
        before = np.searchsorted(upd, np.arange(T), side='left')
        SA = np.concatenate((sa_b, self._std[0][None]))[before]
        SB = np.concatenate((sb_b, self._std[1][None]))[before]
        if not dual:
            active = np.zeros((T, self.n_joints), dtype=np.int64)
            torque, unc = PA.copy(), SA.copy()
        else:
            active = np.concatenate((act_b.astype(np.int64), self._active[None]))[before]
            active[~fa & fb] = 1                     # a missing network never hides a working one
            active[fa & ~fb] = 0
            torque = np.where(active == 1, PB, PA)
            with np.errstate(invalid='ignore'):
                diff = np.abs(PA - PB)
            diff[~np.isfinite(diff)] = 0.0
            unc = np.maximum(np.where(active == 1, SB, SA), diff)
        unc[~np.isfinite(unc)] = 0.0
        return IdentifierOutput(torque, active, SA, SB, unc)

    def __repr__(self) -> str:
        return (f'DualIdentifier(n_joints={self.n_joints}, window={self.window}, '
                f'hysteresis={self.hysteresis}, names={self.names})')
