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
O(1) and allocates nothing: the rolling error spreads are a
:class:`~invdyn_ros.stages.rolling_spread.RollingSpread` (running sums, recomputed exactly from
the ring at every wrap and whenever rounding could dominate; the RMS form checks that guard and
this switching law with one comparison, see there). ``update_many`` is the same law for a whole
recorded stream at once (offline replay), vectorized: the spreads after each row come from
``RollingSpread.push_many`` and the hysteresis law becomes a per-joint forward fill of the
"clearly better" events.

A sample whose errors are absurdly large (root-sum-square of its 2n errors above ``MAX_ERROR_NORM``
= 1e100; no torque is that large, and squares would overflow the sums) is rejected like one with a
non-finite value (which always makes an error non-finite); one dot product checks both. (numpy may
emit a RuntimeWarning for such a sample, e.g. for Inf - Inf; it is still only rejected and counted.)

Pure numpy; ``n_joints`` is at most 7.

This module is the one owner of the switching rule, in every form the pipeline uses (``update``
/ ``select`` per sample, ``choose`` on the fast path, ``select_from``, ``update_many`` /
``select_many`` for replay and trajectories); the windowed statistics it decides on, with their
two exactness tricks, are ``rolling_spread``'s.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from invdyn_ros.errors import ConfigError
from invdyn_ros.stages.rolling_spread import RollingSpread

__all__ = ['DualIdentifier', 'IdentifierOutput', 'IdentifierTrace', 'MAX_ERROR_NORM']

#: A sample whose 2n identification errors have a root-sum-square above this is rejected, like a
#: non-finite one. Squared errors then stay below 1e200, far from float64 overflow even summed over
#: any window that fits in memory.
MAX_ERROR_NORM = 1e100
_MAX_SUMSQ = MAX_ERROR_NORM ** 2

# uses -> needed (the networks a prediction needs under the current choice)
_NEEDED = {(True, True): (0, 1), (True, False): (0,), (False, True): (1,), (False, False): (0,)}

# update_many works on at most this many rows at a time (memory: RollingSpread.push_many's few
# arrays of 2 x (rows + 2 window) x n float64).
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
        # The rolling error spreads (_std: their (2, n) view, read only). The switching law is two
        # comparisons, std_b < coef[0] * std_a (b clearly better) and std_a < coef[1] * std_b (a
        # clearly better), coef being the spreads' watch coefficients: keep = 1 - hysteresis where
        # that would be a switch and the law applies, else 0 (std >= 0 is never < 0); see
        # _set_masks. RollingSpread.push checks them in the same comparison as its drift guard
        # and returns False when none holds, so a sample without a switch costs nothing more here.
        n = self.n_joints
        self._spreads = RollingSpread(n, self.window, self.centered)
        self._std, self._coef = self._spreads.spread, self._spreads.watch
        self._std_ba = self._std[::-1]
        self._rhs = np.zeros((2, n))
        self._better = np.zeros((2, n), dtype=bool)
        # The law applies to a decision once min_samples errors are in the window; the
        # coefficients are set for the next push's decision, so they turn on when the window
        # holds min_samples - 1 (see _set_masks).
        self._arm_at = self.min_samples - 1
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
        return self._spreads.count

    def reset(self) -> None:
        """Forget all errors and go back to network 0 on every joint (counters are kept)."""
        self._spreads.reset()
        self._active[:] = 0
        self._set_masks()

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
        statistics are then left untouched. O(1): ``RollingSpread.push``.
        """
        a, b, tau = self._as_vector(pred_a), self._as_vector(pred_b), self._as_vector(tau_measured)
        if a is None or b is None or tau is None:
            self.counters['rejected'] += 1
            return False
        np.subtract(tau, a, out=self._e0)     # self._e (2, n): errors of network a and b
        np.subtract(tau, b, out=self._e1)
        # One check for NaN, Inf and absurd magnitudes: any non-finite input makes an error
        # non-finite, and then the sum of squares is NaN (compares False) or Inf.
        if not np.dot(self._eflat, self._eflat) <= _MAX_SUMSQ:
            self.counters['rejected'] += 1
            return False
        self.counters['updates'] += 1
        spreads = self._spreads
        if spreads.push(self._e):             # False: checked, no joint has a clearly better one
            self._decide()
        if spreads.count == self._arm_at:
            self._set_masks()                 # the switching law applies from the next sample on
        return True

    def _decide(self) -> None:
        """The switching law: leave the active network only for a clearly better one.

        The comparison described in __init__ (the coefficients make it a no-op before
        ``min_samples`` and where the clearly better network is already active).
        """
        rhs = np.multiply(self._coef, self._std, out=self._rhs)
        better = np.less(self._std_ba, rhs, out=self._better)
        if np.count_nonzero(better):
            self._switch(better[0] | better[1])

    def _switch(self, switch: np.ndarray) -> None:
        self._active[switch] = 1 - self._active[switch]
        self.switches_per_joint += switch
        self.counters['switches'] += int(np.count_nonzero(switch))
        self._set_masks()

    def _set_masks(self) -> None:
        """Coefficients of the comparison after a change of the choice or of the sample count.

        They serve the next decision, made after the next push: the law applies when that push
        leaves ``min_samples`` or more errors in the window, i.e. when ``count >= min_samples - 1``
        now (``update_many`` decides by its own rule, ``_decide_many``).
        """
        law = self._keep if self._spreads.count >= self._arm_at else 0.0
        self._coef[0] = np.where(self._active == 0, law, 0.0)   # b clearly better: switch to b
        self._coef[1] = np.where(self._active == 1, law, 0.0)   # a clearly better: switch to a
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
            count0 = self._spreads.count
            std_acc = self._spreads.push_many(new)              # (2, m, n)
            act_acc = self._decide_many(std_acc, active0, count0)   # (m, n)
            self._active[...] = act_acc[-1]
            self._set_masks()
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

    def _decide_many(self, std_acc: np.ndarray, active0: np.ndarray, count0: int) -> np.ndarray:
        """The switching law over accepted rows: a per-joint forward fill of "clearly better"
        events.

        After a row with at least ``min_samples`` errors in its window, "to network 1" fires when
        ``std_b < (1 - h) std_a`` and "to network 0" when ``std_a < (1 - h) std_b`` (never both);
        otherwise the choice is kept, so the choice after row i is the one of the last event at or
        before i, or the choice before the batch (``active0``, with ``count0`` errors in the
        window). Returns the choices (m, n).
        """
        m = std_acc.shape[1]
        sa, sb = std_acc[0], std_acc[1]
        to_b = sb < self._keep * sa
        event = to_b | (sa < self._keep * sb)
        first_eligible = max(self.min_samples - count0 - 1, 0)   # rows before: too few errors
        event[:first_eligible] = False
        rows = np.where(event, np.arange(m)[:, None], -1)
        np.maximum.accumulate(rows, axis=0, out=rows)
        return np.where(rows >= 0, np.take_along_axis(to_b, np.maximum(rows, 0), axis=0),
                        active0[None]).astype(np.int64)

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
        if not (fa.all() and fb.all()):
            active[~fa & fb] = 1
            active[fa & ~fb] = 0
        use_b = active == 1
        torque = np.where(use_b, b, a)
        std_active = np.where(use_b, self._std[1], self._std[0])
        with np.errstate(invalid='ignore'):
            diff = np.abs(a - b)
        if not np.isfinite(diff).all():
            # A non-finite partner says nothing about the disagreement: the error spread.
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
