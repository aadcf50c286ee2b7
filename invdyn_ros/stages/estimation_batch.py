"""The many-sample form of the estimation stage (replay): :meth:`StreamingEstimator.update_many
<invdyn_ros.stages.estimation.StreamingEstimator.update_many>` and its result, :class:`StateBatch`.

It gives exactly (bit for bit) the States, counters and final estimator state that ``update``
gives sample by sample, ~25x faster on clean data.

Why it is exact: between rejects, gaps, priming and warm-up every accepted sample runs the same
elementwise operations on values that only depend on the previous accepted sample, and the
compiled sosfilt kernel filters each channel sample after sample. So a maximal run of clean
samples is processed as one (5n, T) channel matrix and one kernel call with the carried filter
state -- the same floating-point operations in the same order as T calls of ``update``
(bit-identical results). Everything else (the first samples, rate warm-up, rejected samples,
resets, the first efforts after a reset, runs shorter than ``MIN_BATCH_RUN``) goes through
``update`` itself, the ground truth.

Why a module of its own, and why it owns no rule: the one-sample form
(:mod:`invdyn_ros.stages.estimation`) holds the rules -- the stamp checks and resets, priming, the
rate monitor's re-designs, label limits -- and this form only finds the stretches where none of them
acts, works on the estimator's own state (its filter design, filter state and previous sample),
runs the filter with the same :func:`~invdyn_ros.stages.filters.filter_inplace` and leaves the state
the ``update`` calls would have left; the rate monitor is ``RateEstimator.feed``. The checks that do
not depend on earlier samples are ``update``'s (same limits from the same ``FilterConfig``), run
on all rows at once so that a row that fails them is handed to ``update`` to count. A change to
a rule in ``update`` makes the bit-for-bit tests of test_estimation_batch fail until this form
follows. ``StreamingEstimator.update_many`` imports this module when first called (it builds on
``update`` and ``State``, so it sits above :mod:`invdyn_ros.stages.estimation`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from invdyn_ros.stages import filters
from invdyn_ros.stages.estimation import State, StreamingEstimator

__all__ = ['StateBatch', 'update_many', 'MIN_BATCH_RUN', 'MAX_BATCH_RUN']

#: Clean runs shorter than this go through ``update`` (setting up the vectorized form costs
#: about as much as a few per-sample calls; both give identical results).
MIN_BATCH_RUN = 8
#: The longest run filtered by one kernel call; bounds the (5n, T) scratch matrix (the filter
#: state carries over exactly, so splitting a run changes nothing).
MAX_BATCH_RUN = 8192


@dataclass(frozen=True, eq=False)
class StateBatch:
    """The States :meth:`StreamingEstimator.update_many` produced, stacked (m of N input samples).

    index (m,) int64: the input sample each State came from (increasing). stamp (m,); q, qd, qdd,
    tau (m, n) float64, tau NaN in rows whose sample had no efforts (``has_tau`` False).
    resets (N,) int64: ``counters['resets']`` right after each *input* sample, so a change between
    samples i-1 and i marks a stream boundary (gap or clock jump) at sample i.
    """

    index: np.ndarray
    stamp: np.ndarray
    q: np.ndarray
    qd: np.ndarray
    qdd: np.ndarray
    tau: np.ndarray
    has_tau: np.ndarray
    resets: np.ndarray

    def __len__(self) -> int:
        return int(self.index.shape[0])

    def state(self, j: int) -> State:
        """The j-th State exactly as ``update`` returned it (copies; tau None without efforts)."""
        return State(stamp=float(self.stamp[j]), q=self.q[j].copy(), qd=self.qd[j].copy(),
                     qdd=self.qdd[j].copy(),
                     tau=self.tau[j].copy() if self.has_tau[j] else None)


class _BatchRows(NamedTuple):
    """``update_many``'s input as arrays, plus the checks that do not depend on earlier samples."""

    t: np.ndarray            # (N,) stamps, NaN where not convertible
    q: np.ndarray            # (N, n), NaN rows where malformed
    qd: np.ndarray           # (N, n), NaN rows where absent or malformed
    qd_finite: np.ndarray    # (N, n) bool: the driver's velocity is used (else position difference)
    need_diff: np.ndarray    # (N,) bool: some velocity comes from positions
    tau: np.ndarray          # (N, n)
    tau_present: np.ndarray  # (N,) bool (False where the effort is beyond the label limits)
    row_ok: np.ndarray       # (N,) bool: passes update()'s checks but stamp order and dq/dt
    label_bad: np.ndarray    # (N,) bool: effort dropped (beyond effort_limits, see update())


def update_many(est: StreamingEstimator, stamps: object, q: object, qd: object = None,
                tau: object = None) -> StateBatch:
    """``est.update_many(stamps, q, qd, tau)`` (:meth:`StreamingEstimator.update_many
    <invdyn_ros.stages.estimation.StreamingEstimator.update_many>`): the same States, counters and
    final state as N calls of ``est.update``. Clean runs (``_starts_run``, cut by ``_cut_run``, at
    least ``MIN_BATCH_RUN`` long) go through ``_update_run``; every other sample through
    ``est.update``.
    """
    N = len(stamps)  # type: ignore[arg-type]
    lengths = {'q': q, 'qd': qd, 'tau': tau}
    for name, seq in lengths.items():
        if (seq is not None or name == 'q') and len(seq) != N:  # type: ignore[arg-type]
            raise ValueError(f'update_many: {name} has {len(seq)} entries, '  # type: ignore
                             f'stamps {N}')
    n = est.n
    out = np.empty((N, 4 * n))                 # columns [q, qd, tau, qdd] (the filter order)
    produced = np.zeros(N, dtype=bool)
    has_tau = np.zeros(N, dtype=bool)
    resets = np.empty(N, dtype=np.int64)
    out_t = np.empty(N)
    if N:
        rows = _batch_rows(est, stamps, q, qd, tau, N)
        cfg = est.config
        with np.errstate(all='ignore'):
            # Continuation checks of row k against row k-1: valid inside a run, where row k-1
            # was accepted and is therefore the estimator's previous sample (update's checks).
            dt = np.empty(N)
            dt[0] = np.nan
            np.subtract(rows.t[1:], rows.t[:-1], out=dt[1:])
            v_max = np.zeros(N)
            v_diff = rows.q[1:] - rows.q[:-1]
            v_diff /= dt[1:, None]
            np.abs(v_diff).max(axis=1, initial=0.0, out=v_max[1:])
            cont = rows.row_ok & (dt > 0.0) & (dt <= cfg.max_gap_s)
            cont &= ~(rows.need_diff & (v_max > cfg.max_abs_velocity))
        breaks = np.flatnonzero(~cont)            # cont[0] is False (dt NaN)
        tau_rows = np.flatnonzero(rows.tau_present)
        i = 0
        while i < N:
            end = i + 1
            if est._primed and rows.row_ok[i] and _starts_run(est, rows, i):
                end = min(N, i + MAX_BATCH_RUN)
                b = np.searchsorted(breaks, i, side='right')
                if b < len(breaks):
                    end = min(end, int(breaks[b]))
                if not est._tau_seen:            # the first efforts since a reset prime
                    b = np.searchsorted(tau_rows, i)
                    if b < len(tau_rows):
                        end = min(end, int(tau_rows[b]))
                end = _cut_run(est, rows, i, end)
                if end - i >= MIN_BATCH_RUN and _update_run(est, rows, i, end, out):
                    produced[i:end] = True
                    has_tau[i:end] = rows.tau_present[i:end]
                    resets[i:end] = est.counters['resets']
                    out_t[i:end] = rows.t[i:end]
                    i = end
                    continue
            end = max(end, i + 1)
            for k in range(i, end):               # the ground truth, sample by sample
                state = est.update(stamps[k], q[k],  # type: ignore[index]
                                    None if qd is None else qd[k],  # type: ignore[index]
                                    None if tau is None else tau[k])  # type: ignore[index]
                resets[k] = est.counters['resets']
                if state is not None:
                    produced[k] = True
                    out_t[k] = state.stamp
                    out[k, :n] = state.q
                    out[k, n:2 * n] = state.qd
                    out[k, 3 * n:] = state.qdd
                    if state.tau is not None:
                        has_tau[k] = True
                        out[k, 2 * n:3 * n] = state.tau
            i = end
    index = np.flatnonzero(produced).astype(np.int64)
    sel = out[index]
    tau_out = sel[:, 2 * n:3 * n].copy()
    ht = has_tau[index]
    tau_out[~ht] = np.nan
    return StateBatch(index=index, stamp=out_t[index], q=sel[:, :n].copy(),
                      qd=sel[:, n:2 * n].copy(), qdd=sel[:, 3 * n:].copy(), tau=tau_out,
                      has_tau=ht, resets=resets)


def _batch_rows(est: StreamingEstimator, stamps: object, q: object, qd: object, tau: object,
                N: int) -> _BatchRows:
    """Convert the inputs and run ``update``'s sample-local checks on all rows at once."""
    n, cfg = est.n, est.config
    if isinstance(stamps, np.ndarray) and stamps.shape == (N,) and stamps.dtype.kind in 'fiub':
        t = stamps.astype(np.float64)             # the value float() gives each element
    else:                                         # update()'s own conversion, entry by entry
        t = np.full(N, np.nan)                    # NaN: not in a run; update() decides
        for k in range(N):
            try:
                t[k] = float(stamps[k])  # type: ignore[index]
            except Exception:  # noqa: BLE001
                pass
    q_arr, q_present, _ = _batch_vectors(est, q, N, optional=False)
    qd_arr, qd_present, qd_bad = _batch_vectors(est, qd, N, optional=True)
    tau_arr, tau_present, tau_bad = _batch_vectors(est, tau, N, optional=True)
    with np.errstate(invalid='ignore'):
        qd_finite = np.isfinite(qd_arr)
        qd_finite &= qd_present[:, None]
        row_ok = np.isfinite(t) & q_present & ~qd_bad & ~tau_bad
        # |x| <= limit is False for NaN, Inf and absurd values alike, as in update()
        row_ok &= (np.abs(q_arr) <= cfg.max_abs_position).all(axis=1)
        row_ok &= ~(qd_finite & ~(np.abs(qd_arr) <= cfg.max_abs_velocity)).any(axis=1)
        tau_abs = np.abs(tau_arr)
        row_ok &= ~tau_present | (tau_abs <= cfg.max_abs_effort).all(axis=1)
        label_bad = np.zeros(N, dtype=bool)
        if est._label_limits is not None:      # update(): the effort goes, the sample stays
            label_bad = tau_present & (tau_abs <= cfg.max_abs_effort).all(axis=1) \
                & ~(tau_abs <= est._label_limits).all(axis=1)
            tau_present = tau_present & ~label_bad
    return _BatchRows(t=t, q=q_arr, qd=qd_arr, qd_finite=qd_finite,
                      need_diff=~qd_finite.all(axis=1), tau=tau_arr, tau_present=tau_present,
                      row_ok=row_ok, label_bad=label_bad)


def _batch_vectors(est: StreamingEstimator, seq: object, N: int,
                   optional: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values (N, n), present (N,), malformed (N,)) for N entries as ``_vector`` sees them.

    A sequence numpy converts to (N, n) floats in one go has N well-formed entries (each entry
    converts to its row); anything else is converted entry by entry with ``_vector`` itself.
    """
    n = est.n
    present = np.zeros(N, dtype=bool)
    malformed = np.zeros(N, dtype=bool)
    if seq is None:
        return np.full((N, n), np.nan), present, malformed
    try:
        arr = np.asarray(seq, dtype=np.float64)
        if arr.shape == (N, n):
            present.fill(True)
            return arr, present, malformed
    except Exception:  # noqa: BLE001 - irregular: entry by entry
        pass
    arr = np.full((N, n), np.nan)
    for k in range(N):
        try:
            v = est._vector(seq[k], optional)  # type: ignore[index]
        except Exception:  # noqa: BLE001 - update() will meet (and decide) it itself
            v = False
        if v is None:
            continue
        if v is False:
            malformed[k] = True
        else:
            arr[k] = v
            present[k] = True
    return arr, present, malformed


def _starts_run(est: StreamingEstimator, rows: _BatchRows, i: int) -> bool:
    """Whether ``update`` would accept row i as a plain steady-state sample (no reset/prime)."""
    dt = rows.t[i] - est._t_prev
    if not 0.0 < dt <= est._fast_dt or est._held_t is not None:
        return False
    if rows.tau_present[i] and not est._tau_seen:
        return False
    if rows.need_diff[i]:
        v_diff = rows.q[i] - est._q_prev
        v_diff /= dt
        if np.abs(v_diff).max() > est.config.max_abs_velocity:
            return False
    return True


def _cut_run(est: StreamingEstimator, rows: _BatchRows, i: int, end: int) -> int:
    """The end of a clean run from row i (row i starts one) before anything that depends on
    the current rate: a stamp jump (``_check_stamp``) or a block that re-estimates it."""
    ts = rows.t[i:end]
    d = np.empty(end - i)
    d[0] = ts[0] - est._t_prev
    np.subtract(ts[1:], ts[:-1], out=d[1:])
    jumps = np.flatnonzero(d > est._fast_dt)
    if len(jumps):
        end = i + int(jumps[0])
        d = d[:end - i]
    if est._measure:
        k = est._rate.feed(d, commit=False)
        if k is not None:
            end = i + k
    return end


def _update_run(est: StreamingEstimator, rows: _BatchRows, i: int, end: int,
                out: np.ndarray) -> bool:
    """Rows i..end-1 (all accepted, steady state) in one kernel call; False changes nothing.

    Every expression is ``update``'s, applied to all rows at once: [q, v, tau] rows with the
    previous accepted row before them, the two-tap means and differences, then the filter.
    """
    n, T = est.n, end - i
    ts = rows.t[i:end]
    qs = rows.q[i:end]
    t_prev = np.empty(T)
    t_prev[0] = est._t_prev
    t_prev[1:] = ts[:-1]
    dt = ts - t_prev
    q_prev = np.empty((T, n))
    q_prev[0] = est._q_prev
    q_prev[1:] = qs[:-1]
    fin = rows.qd_finite[i:end]
    raw = np.empty((T + 1, 3 * n))               # row 0: the previous accepted sample
    raw[0] = est._raw_prev
    cur = raw[1:]
    cur[:, :n] = qs
    with np.errstate(all='ignore'):
        v_diff = qs - q_prev
        v_diff /= dt[:, None]
    np.copyto(cur[:, n:2 * n], np.where(fin, rows.qd[i:end], v_diff))
    tv = np.empty((T + 1, n))
    tv[0] = est._tv_prev
    np.copyto(tv[1:], np.where(fin, ts[:, None], (ts - 0.5 * dt)[:, None]))
    present = rows.tau_present[i:end]
    if present.any():                             # efforts held while a sample has none
        src = np.where(present, np.arange(1, T + 1), 0)
        np.maximum.accumulate(src, out=src)
        taus = np.empty((T + 1, n))
        taus[0] = est._tau_hold
        taus[1:] = rows.tau[i:end]
        cur[:, 2 * n:] = taus[src]
    else:
        cur[:, 2 * n:] = est._tau_hold
    prev = raw[:-1]
    x = np.empty((5 * n, T))                      # the kernel's (channels, time) layout
    xt = x.T
    np.add(cur, prev, out=xt[:, :3 * n])
    xt[:, :3 * n] *= 0.5
    np.subtract(cur[:, n:2 * n], prev[:, n:2 * n], out=xt[:, 3 * n:4 * n])
    np.subtract(tv[1:], tv[:-1], out=xt[:, 4 * n:])
    zi_before = est._zi.copy()
    filters.filter_inplace(est._sos2, x, est._zi)
    res = out[i:end]
    res[:] = xt[:, :4 * n]
    np.divide(res[:, 3 * n:], np.maximum(xt[:, 4 * n:], est._den_floor), out=res[:, 3 * n:])
    if not np.isfinite(res).all():                # impossible for bounded inputs: let
        est._zi[...] = zi_before                 # update() handle (count, reset) it
        return False
    # ---- commit: the state T update() calls would have left
    counters = est.counters
    counters['accepted'] += T
    counters['velocity_from_positions'] += int(rows.need_diff[i:end].sum())
    counters['rejected_labels'] += int(rows.label_bad[i:end].sum())
    if est._measure:
        est._rate.feed(dt, commit=True)
    est._t_prev = float(ts[-1])
    est._q_prev[:] = qs[-1]
    est._tau_hold[:] = cur[-1, 2 * n:]
    est._raw_prev[:] = cur[-1]
    est._raw[:] = cur[-1]
    est._tv_prev[:] = tv[-1]
    est._tv[:] = tv[-1]
    est._x[:, 0] = x[:, -1]
    return True
