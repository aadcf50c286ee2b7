"""Rolling error spread of two networks per joint: the statistics under the dual identifier.

:class:`RollingSpread` keeps, per (network, joint), the last ``window`` errors of two networks
(a, b) and their *spread*: the root-mean-square of the errors in the window (their standard
deviation about *zero*) by default, the plain standard deviation (about the window mean) with
``centered=True``. Until the window has filled, the spread is over the errors so far (``count``).

* :meth:`~RollingSpread.push` -- one sample's errors (2, n), O(1): running sums of the squared
  errors (and, centered, of the errors) add the entering error and subtract the one leaving the
  window. Running sums drift by rounding, and a subtraction loses everything when a large error
  leaves a window of small ones (a 1e6 Nm glitch would leave garbage behind, possibly a negative
  sum that makes the broken network look perfect). So the sums are recomputed exactly from the
  ring buffer
  (1) every ``window`` pushes, when the ring position wraps to 0: the drift is bounded by one
      window's worth of operations, however long the node runs;
  (2) at once when the reported sum of squares falls below ``_DRIFT_TOL`` (1e-3) of the largest
      one since the last recompute, the only case in which that bounded drift can still be large
      *relative* to the answer. It also catches a negative sum.
  Between recomputes the relative error stays below ~1e-9 (window 1000). In centered mode the sums
  are of ``error - shift``, ``shift`` being the window mean at the last recompute, so a network
  with a large bias does not lose its small std to cancellation in ``E[d^2] - E[d]^2``; tiny
  negative variances left by rounding are clamped to 0 before the square root. (In RMS mode a
  negative sum triggers the recompute of (2), so nothing negative reaches the square root.)
* :meth:`~RollingSpread.push_many` -- m samples' errors (2, m, n) at once (offline replay): the
  spreads after each of them, vectorized, and the state left as m pushes leave it (spreads equal
  to rounding, ~1e-12 relative). Rolling sums come from per-block prefix and suffix cumulative
  sums (van Herk / Gil-Werman: the window of length ``window`` ending at offset ``r`` of block
  ``j`` is the prefix ``0..r`` of block ``j`` plus the suffix ``r+1..`` of block ``j-1``), so no
  sum ever holds a value from outside its window and nothing is subtracted: RMS adds squares
  only; centered sums each piece about a value inside the window and merges the two with Chan's
  formula.
* :meth:`~RollingSpread.reset` and :attr:`~RollingSpread.count`.

The per-sample path runs in the node's 1 kHz loop, so :meth:`~RollingSpread.push` allocates no
array and its RMS form checks the drift guard (2) and the owner's comparison of the two networks'
spreads (:attr:`~RollingSpread.watch`, e.g. the identifier's switching law) with one multiply and
one comparison over one block of state; see :class:`RollingSpread`.

The errors pushed must be finite, and their squares summed over a window must not overflow (the
identifier rejects a sample above ``MAX_ERROR_NORM`` first). Pure numpy; ``n_joints`` is small
(at most 7).
"""
from __future__ import annotations

import numpy as np

__all__ = ['RollingSpread']

# Recompute the running sums exactly when the reported sum of squares falls below this fraction of
# the largest one since the last exact recompute: rounding error in the running sums is about
# eps * (updates since recompute) * peak <= 2.2e-16 * 2 * window * peak, so with 1e-3 the relative
# error of what is reported stays below ~1e-9 for window 1000.
_DRIFT_TOL = 1e-3


class RollingSpread:
    """Windowed error spread per (network, joint) of two networks over the last ``window`` errors.

    :attr:`spread` (2, n): row 0 network a, row 1 network b; RMS of the errors in the window, or
    their standard deviation when ``centered``; 0 before any error. It is a view into the state,
    updated in place by every push (read it, copy it to keep it, never write it).
    :attr:`count`: the errors in the window (<= ``window``; read only).

    :attr:`watch` (2, n), zeros until the owner writes it: coefficients of the owner's comparison
    ``spread[1 - k] < watch[k] * spread[k]`` (the other network's spread clearly below network
    ``k``'s; a coefficient 0 turns a comparison off, since a spread is never below 0).
    :meth:`push` returns False only when it has checked that none of them holds, True when one
    may (then the owner compares itself). This lets the RMS form fold the owner's comparison into
    the drift guard's: the state is one block of rows ``[sq_a, sq_b, std_a, std_b, peak_b,
    peak_a]`` (sums of squares, spreads, the guard's peaks), and with

        lhs = rows 3..0 = [std_b, std_a, sq_b, sq_a]   (a reversed view, only read)
        rhs = coef * rows 2..5 = coef * [std_a, std_b, peak_b, peak_a],
        coef = [watch[0], watch[1], _DRIFT_TOL, _DRIFT_TOL]

    ``lhs < rhs`` is the owner's two comparisons in rows 0 and 1 and the guard in rows 2 and 3, so
    a sample where nothing happens costs one multiply and one comparison. Arrays are written in
    place only (views).
    """

    def __init__(self, n_joints: int, window: int, centered: bool = False) -> None:
        self.n_joints = int(n_joints)
        self.window = int(window)
        self.centered = bool(centered)
        n = self.n_joints
        # Ring buffers of errors: axis 0 = network (a, b), axis 1 = time, axis 2 = joint. While the
        # window is filling (count < window) the errors are at [0, count) and pos == count.
        self._err = np.zeros((2, self.window, n))
        self._pos = 0
        self.count = 0
        # Running sums per (network, joint) of d and d^2 with d = error - shift (shift = 0 for RMS).
        # The drift guard's reference is the largest _sq since the last exact recompute (peak).
        block = np.zeros((6, n))
        self._sq, self.spread, self._peak_ba = block[0:2], block[2:4], block[4:6]
        self._lhs, self._src = block[3::-1], block[2:6]
        self._coef = np.zeros((4, n))
        self._coef[2:] = _DRIFT_TOL
        self.watch = self._coef[0:2]
        self._rhs = np.zeros((4, n))
        self._cmp = np.zeros((4, n), dtype=bool)
        self._s = np.zeros((2, n))
        self._shift = np.zeros((2, n))

    def reset(self) -> None:
        """Forget all errors (:attr:`watch` is the owner's and kept)."""
        self._err[:] = 0.0
        self._pos = 0
        self.count = 0
        for arr in (self._s, self._sq, self._shift, self._peak_ba, self.spread):
            arr[:] = 0.0

    # ------------------------------------------------------------------ sums
    def _resum(self) -> None:
        """Recompute the running sums exactly from the ring (and re-centre the shift)."""
        c = self.count
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
        inv_c = 1.0 / self.count
        np.multiply(self._sq, inv_c, out=out)
        if self.centered:
            mean = self._s * inv_c
            out -= mean * mean
        return np.maximum(out, 0.0, out=out)

    # ------------------------------------------------------------------ one sample
    def push(self, e: np.ndarray) -> bool:
        """Push one sample's errors ``e`` (2, n) float64 (read, not kept) and update
        :attr:`spread`. O(1), no array allocated. Returns False when the :attr:`watch`
        comparisons were checked and none holds, True when one may (see the class docstring).
        """
        pos, window, count = self._pos, self.window, self.count
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
            self.count = count = count + 1
        self._pos = pos = (pos + 1) % window

        std = self.spread
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
            # RMS, the hot path: mean square, guard and the owner's comparison in one (see the
            # class docstring). The guard also catches a negative sum, so what reaches the sqrt is
            # >= 0 without a clamp (while the window fills only squares are added; a recompute is
            # exact).
            np.maximum(self._peak_ba, sq[::-1], out=self._peak_ba)
            np.multiply(sq, 1.0 / count, out=std)
            np.sqrt(std, out=std)
            np.multiply(self._coef, self._src, out=self._rhs)
            cmp = np.less(self._lhs, self._rhs, out=self._cmp)
            if np.count_nonzero(cmp):
                if np.count_nonzero(cmp[2:]):
                    self._resum()             # guard: recompute (the owner compares afresh)
                    np.multiply(self._sq, 1.0 / count, out=std)
                    np.sqrt(std, out=std)
                return True
            return False
        np.sqrt(std, out=std)
        return True

    # ------------------------------------------------------------------ many samples
    def push_many(self, new: np.ndarray) -> np.ndarray:
        """Push m samples' errors ``new`` (2, m, n) at once: returns the spreads (2, m, n) after
        each of them (what :attr:`spread` would be after each :meth:`push`, to rounding) and
        leaves ring, count, sums and :attr:`spread` (the last row) as the pushes would. m = 0 is a
        no-op. :attr:`watch` is not looked at: the owner decides over the returned spreads.
        """
        m = new.shape[1]
        if m == 0:
            return np.empty((2, 0, self.n_joints))
        spreads = self._rolling(new)
        window = self.window
        keep = min(m, window)
        idx = (self._pos + np.arange(m - keep, m)) % window
        self._err[:, idx] = new[:, m - keep:]
        self._pos = (self._pos + m) % window
        self.count = min(self.count + m, window)
        self._resum()
        self.spread[...] = spreads[:, -1]
        return spreads

    def _rolling(self, new: np.ndarray) -> np.ndarray:
        """The spreads (2, m, n) after each of the new errors ``new`` (2, m, n) is pushed.

        The stream is the ring contents in order (the last ``count`` errors) followed by ``new``;
        element ``k`` of it has the window ``[max(0, k - window + 1), k]``. It is laid out in blocks
        of ``window`` after one block of zeros, so element ``k`` sits at ``f = k + window``, block
        ``j = f // window``, offset ``r = f % window``; its window is the prefix ``0..r`` of block
        ``j`` plus the suffix ``r+1..`` of block ``j-1`` (empty for ``r = window - 1``, and zeros
        for ``j == 1``, the padding), and that suffix sum sits at flat index ``f - window + 1`` of
        the per-block suffix sums. So every needed sum is a slice; nothing is gathered.
        """
        window, n = self.window, self.n_joints
        c0, m = self.count, new.shape[1]
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

    def __repr__(self) -> str:
        return (f'RollingSpread(n_joints={self.n_joints}, window={self.window}, '
                f'centered={self.centered})')
