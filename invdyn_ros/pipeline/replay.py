"""The pipeline's batch form: many recorded samples at once, learning off (offline replay).

:func:`replay` composes the many-sample forms of the pipeline's stages in the order of
``Pipeline.process`` + ``finish``, so the outputs are the streaming chain's:

1. estimation: ``StreamingEstimator.update_many`` (the same rejections, gaps -> stream boundaries,
   bit-identical states);
2. the networks: ``Predictor.predict_many`` over all windows of every continuous segment
   (:data:`BATCH_CHUNK` windows per call) instead of one cell step per sample; the physics prior
   through ``PhysicsStage.predict_many`` / ``combine_many``;
3. the switching rule: ``DualIdentifier.select_many`` (each row selected with the statistics of
   the rows before it, then the row's errors pushed);
4. the clamp to ``torque_limits``;
5. readiness: ``Readiness.update_many`` (each output sees the scores of the rows before it).

What differs from calling ``process`` per sample, and why:

* **Nothing reaches the trainer** (no ``submit``, no ``poll``), so the weights are fixed for the
  whole batch; that is what makes batching exact. Weights already queued for loading are loaded
  into every predictor before the batch (``process`` would spread them over the next samples).
* The first segment continues the current stream (its last L-1 rows are taken from the window
  buffer), so a batch right after ``process`` calls predicts what ``process`` would; the first
  L-1 rows after a gap have no prediction (``warming_up``), like the streaming predictor.
* Results equal ``process``'s up to float32 rounding of the networks (full-window forward vs.
  streamed cells) and float64 rounding of the rolling statistics (a switching decision exactly at
  its threshold could differ).
* Afterwards the streaming predictors and the window buffer are reset: a following ``process``
  call starts a fresh window (its first L-1 samples warm up), as after a gap. The estimator keeps
  its state.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from invdyn_ros.learning.predictor import Predictor
from invdyn_ros.stages.outputs import BatchOutput
from invdyn_ros.stages.windows import make_windows

if TYPE_CHECKING:                    # pipeline imports this module
    from invdyn_ros.pipeline.pipeline import Pipeline

__all__ = ['replay', 'predict_windows', 'predict_segments', 'BATCH_CHUNK']

#: Windows per ``Predictor.predict_many`` call: bounds the memory of one call (4096 x L x 3n
#: float64, ~7 MB for 7 joints and L = 10) while keeping the per-call overhead negligible.
BATCH_CHUNK = 4096


def predict_windows(predictor: Predictor, windows: np.ndarray) -> np.ndarray:
    """``predictor.predict_many`` that never raises on data: a value beyond float32 (which
    ``predict_many`` rejects as non-finite after its cast) is clipped to the float32 range
    first; after input scaling it is clipped to ``±input_clip`` anyway, as ``push`` does."""
    try:
        return predictor.predict_many(windows)
    except ValueError:
        big = float(np.finfo(np.float32).max)
        return predictor.predict_many(np.clip(windows, -big, big))


def predict_segments(predictors: dict[str, Predictor], rows: np.ndarray, segment: np.ndarray,
                     prefix: np.ndarray, window: int, chunk: int = BATCH_CHUNK
                     ) -> dict[str, np.ndarray]:
    """Every predictor on the window ending at every row: ``{name: (m, n)}``, NaN where a row has
    no full window in its segment (or a prediction is not finite: the whole row).

    ``rows`` (m, 3n) feature rows, ``segment`` (m,) their continuous segment (non-decreasing);
    ``prefix`` (< L, 3n): the rows before segment 0 of the same stream (the window buffer)."""
    m, L = rows.shape[0], window
    out = {name: np.full((m, p.n_joints), np.nan) for name, p in predictors.items()}
    cuts = np.flatnonzero(np.diff(segment)) + 1 if m else np.zeros(0, dtype=np.int64)
    for k, (lo, hi) in enumerate(zip(np.r_[0, cuts], np.r_[cuts, m])):
        if hi <= lo:
            continue
        head = prefix if (k == 0 and segment[0] == 0) else rows[:0]
        R = np.concatenate((head, rows[lo:hi])) if len(head) else rows[lo:hi]
        if len(R) < L:
            continue
        state_of_row = np.full(R.shape[0], -1)
        state_of_row[len(head):] = np.arange(lo, hi)
        for s0 in range(0, R.shape[0] - L + 1, chunk):
            W = make_windows(R[s0:s0 + chunk + L - 1], L)
            target = state_of_row[s0 + L - 1:s0 + L - 1 + W.shape[0]]
            keep = target >= 0
            for name, p in predictors.items():
                out[name][target[keep]] = predict_windows(p, W)[keep]
    for name, p in predictors.items():
        y = out[name]
        finite = np.isfinite(y).all(axis=1)
        p.counters['nonfinite_outputs'] += int(np.count_nonzero(~finite & ~np.isnan(y).all(axis=1)))
        y[~finite] = np.nan
    return out


def _scaled_efforts(pipe: 'Pipeline', tau: Any, N: int) -> Any:
    """``effort_scale`` applied to every entry (regular (N, n) efforts at once)."""
    if tau is None or pipe._scale is None:
        return tau
    try:
        arr = np.asarray(tau, dtype=np.float64)
    except (TypeError, ValueError):       # None entries, ragged rows: one by one
        arr = None
    if arr is not None and arr.shape == (N, pipe.n):
        return arr * pipe._scale
    return [pipe._scaled_effort(t) for t in tau]


def replay(pipe: 'Pipeline', stamps: Sequence[float], q: Any, qd: Any = None, tau: Any = None
           ) -> 'BatchOutput':
    """``Pipeline.process`` over recorded samples with learning off, vectorized (module
    docstring); the result as arrays.

    ``stamps``, ``q`` and (if given) ``qd`` / ``tau`` have one entry per sample, each entry what
    ``process`` would take (an ``(n,)`` array, or None for a sample without velocity / effort; a
    row with NaN is passed on as it is, i.e. rejected by the estimator like in ``process``);
    ``(N, n)`` float arrays are the fast form. Mismatched lengths raise ValueError; bad samples
    never raise. Counters advance as ``process`` would advance them.
    """
    N = len(stamps)
    if len(q) != N or (qd is not None and len(qd) != N) or (tau is not None and len(tau) != N):
        raise ValueError(f'process_batch: stamps, q, qd and tau need one entry per sample '
                         f'({N} stamps, {len(q)} q, {None if qd is None else len(qd)} qd, '
                         f'{None if tau is None else len(tau)} tau)')
    pipe.begin_batch()
    c = pipe.counters
    n, names, dual = pipe.n, pipe.names, pipe.dual
    c['samples'] += N

    # (1) the estimator; stream boundaries where its reset count moves
    sb = pipe.estimator.update_many(stamps, q, qd, _scaled_efforts(pipe, tau, N))
    m = len(sb)
    segment_of_sample = np.zeros(0, dtype=np.int64)
    if N:
        boundary = np.diff(np.concatenate(([pipe._resets_seen], sb.resets))) != 0
        c['stream_resets'] += int(np.count_nonzero(boundary))
        pipe._resets_seen = int(sb.resets[-1])
        segment_of_sample = np.cumsum(boundary)
    S = sb.index

    # (2) every network on all windows of every segment; the prior + trusted residual
    rows = np.concatenate((sb.q, sb.qd, sb.qdd), axis=1) if m else np.empty((0, 3 * n))
    L = pipe.window
    prefix = pipe.windows.window()[-(L - 1):] if L > 1 and len(pipe.windows) else rows[:0]
    preds = predict_segments(pipe.predictors, rows, segment_of_sample[S], prefix, L,
                             pipe.BATCH_CHUNK)
    prior_unc = None
    if pipe.residual is not None and m:
        tp, trust, prior_rms = pipe.physics.predict_many(sb.q, sb.qd, sb.qdd)
        comb = pipe.physics.combine_many(tp, trust, preds[pipe.residual])
        comb[~np.isfinite(comb).all(axis=1)] = np.nan
        preds[pipe.residual] = comb
        prior_unc = (1.0 - trust)[:, None] * prior_rms[None, :]
    PA = preds[names[0]]
    have = np.isfinite(PA).all(axis=1)
    if dual:
        have |= np.isfinite(preds[names[1]]).all(axis=1)

    # (3) the switching rule: each row with the statistics before it, then its errors
    sel = pipe.identifier.select_many(PA, preds[names[1]] if dual else None,
                                      np.where(sb.has_tau[:, None], sb.tau, np.nan))
    unc = sel.uncertainty
    if prior_unc is not None:
        np.maximum(unc, prior_unc, out=unc)
    c['warming_up'] += int(np.count_nonzero(~have))

    # (4) the clamp
    torque = np.clip(sel.torque, -pipe._limits, pipe._limits)
    out_ok = have & np.isfinite(torque).all(axis=1)
    c['dropped_nonfinite'] += int(np.count_nonzero(have & ~out_ok))
    c['outputs'] += int(np.count_nonzero(out_ok))

    # (5) readiness: scored rows in order, each output row sees the scores of rows before it
    readiness = pipe.readiness
    scored = np.flatnonzero(out_ok & sb.has_tau)
    nmse0, ready0 = readiness.nmse, readiness.ready
    nmse_after, ready_after = readiness.update_many(torque[scored], sb.tau[scored],
                                                  sb.stamp[scored])
    before = np.searchsorted(scored, np.arange(m), side='left')
    nmse_rows = np.concatenate(([nmse0], nmse_after))[before]
    ready_rows = np.concatenate(([ready0], ready_after))[before]

    pipe.end_batch()

    def spread(x: np.ndarray, fill: Any) -> np.ndarray:
        full = np.full((N,) + x.shape[1:], fill, dtype=x.dtype)
        full[S[out_ok]] = x[out_ok]
        return full

    valid = np.zeros(N, dtype=bool)
    valid[S[out_ok]] = True
    return BatchOutput(
        valid=valid, stamp=spread(sb.stamp, np.nan), q=spread(sb.q, np.nan),
        qd=spread(sb.qd, np.nan), qdd=spread(sb.qdd, np.nan), tau=spread(sb.tau, np.nan),
        has_tau=spread(sb.has_tau, False), torque=spread(torque, np.nan),
        predictions={name: spread(preds[name], np.nan) for name in names},
        active=spread(sel.active.astype(np.int64), -1), std_a=spread(sel.std_a, np.nan),
        std_b=spread(sel.std_b, np.nan), uncertainty=spread(unc, np.nan),
        ready=spread(ready_rows.astype(bool), False), recent_nmse=spread(nmse_rows, np.nan))
