"""The demo's metrics: tracking RMS over whole periods, prediction nMSE, the payload change's
jump and recovery, the time the node was not ready, how far the unseen reference is from the
primary one, and the runs of steps that applied the same feedforward (definitions:
:mod:`invdyn_ros.sim.demo`). Pure functions of recorded arrays in motion-time seconds. ROS-free.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from invdyn_ros import metrics
from invdyn_ros.sim.demo_schedule import DemoError
from invdyn_ros.stages.readiness import window_nmse, window_sums

__all__ = ['tracking_rms', 'prediction_nmse', 'rolling_nmse', 'payload_change_metrics',
           'not_ready_seconds', 'reference_distance', 'MIN_TORQUE_STD', 'rolling_rms',
           'holds_from', 'error_recovery', 'RECOVERY_WINDOW_S', 'RECOVERY_LEVEL_S',
           'RECOVERY_SKIP_S', 'repeated_runs']

#: Floor of a torque std used to normalise errors (N m): a joint that barely moves must not turn
#: a microscopic error into a huge nMSE.
MIN_TORQUE_STD = 1e-3

#: The payload change's error recovery in N m (:func:`error_recovery`, also what
#: ``bench/prior_payload.py`` reports): a rolling RMS over this many seconds, ...
RECOVERY_WINDOW_S = 1.0
#: ... its level before the change: the mean of that rolling RMS over this many seconds ...
RECOVERY_LEVEL_S = 5.0
#: ... and "first back within" counts from this long after the change (the window that ends
#: right after the change still holds the samples before it).
RECOVERY_SKIP_S = 0.5


def _window(t: np.ndarray, t0: float, t1: float) -> np.ndarray:
    return (t >= t0) & (t < t1)


def tracking_rms(t: np.ndarray, err: np.ndarray, t0: float, t1: float) -> np.ndarray:
    """Per-joint RMS of ``err`` over ``t0 <= t < t1`` (rad); ``DemoError`` for an empty window."""
    sel = _window(np.asarray(t), t0, t1)
    if not np.any(sel):
        raise DemoError(f'no tracking samples between t={t0:g} s and t={t1:g} s')
    return np.sqrt(np.mean(np.square(np.asarray(err)[sel]), axis=0))


def prediction_nmse(applied: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Per-joint nMSE of ``predicted`` against ``applied`` normalised by ``applied``'s own std over
    the same samples (floored at ``MIN_TORQUE_STD``); see the module docstring."""
    applied, predicted = np.asarray(applied, float), np.asarray(predicted, float)
    if applied.ndim != 2 or len(applied) < 2:
        raise DemoError('prediction_nmse: fewer than 2 matched predictions')
    std = np.maximum(applied.std(axis=0), MIN_TORQUE_STD)
    return metrics.nmse(applied, predicted, applied.mean(axis=0), std)


def rolling_nmse(t: np.ndarray, applied: np.ndarray, predicted: np.ndarray, std: np.ndarray,
                 window_s: float) -> np.ndarray:
    """At each sample, the nMSE (mean over joints, normalised by ``std``) of the samples of the
    preceding ``window_s`` seconds (``(t - window_s, t]``; ``readiness.window_nmse``).
    Time-based (``searchsorted``), so a missing sample does not stretch the window."""
    t = np.asarray(t, float)
    if len(t) == 0:
        return np.zeros(0)
    lo = np.searchsorted(t, t - window_s, side='right')
    hi = np.arange(1, len(t) + 1)
    return window_nmse(np.asarray(predicted, float) - np.asarray(applied, float),
                       np.square(np.maximum(np.asarray(std, float), MIN_TORQUE_STD)), lo, hi)


def _nmse_over(t: np.ndarray, applied: np.ndarray, predicted: np.ndarray, std: np.ndarray,
               t0: float, t1: float) -> float:
    sel = _window(t, t0, t1)
    if not np.any(sel):
        return float('nan')
    return float(np.mean(np.square((predicted[sel] - applied[sel]) / std)))


def rolling_rms(t: np.ndarray, diff: np.ndarray, window_s: float) -> np.ndarray:
    """At each sample, the RMS of ``diff`` (N, n) over joints and over the samples of the
    preceding ``window_s`` seconds (``(t - window_s, t]``, time-based like :func:`rolling_nmse`).
    Rows with a non-finite value are left out; NaN where a window holds none."""
    t = np.asarray(t, float)
    d = np.asarray(diff, float).reshape(len(t), -1)
    ok = np.isfinite(d).all(axis=1)
    sq = np.mean(np.square(np.where(ok[:, None], d, 0.0)), axis=1)
    lo = np.searchsorted(t, t - window_s, side='right')
    sums, n = window_sums(np.stack((sq, ok), axis=1), lo, np.arange(1, len(t) + 1)).T
    return np.where(n > 0, np.sqrt(np.maximum(sums, 0.0) / np.maximum(n, 1)), np.nan)


def holds_from(ok: np.ndarray) -> int | None:
    """The first index of ``ok`` from which it holds to the end (0: everywhere); None if its last
    element fails (or it is empty)."""
    ok = np.asarray(ok, bool)
    if not ok.size or not ok[-1]:
        return None
    bad = np.flatnonzero(~ok)
    return 0 if not bad.size else int(bad[-1]) + 1


def error_recovery(t: np.ndarray, roll: np.ndarray, t_change: float, within: float = 1.5
                   ) -> dict[str, Any]:
    """How fast a rolling error ``roll`` (e.g. :func:`rolling_rms` over ``RECOVERY_WINDOW_S``)
    comes back after a change at ``t_change``, against its level before: the mean of ``roll``
    over the ``RECOVERY_LEVEL_S`` before the change.

    ``first_within_s``: the first time, at least ``RECOVERY_SKIP_S`` after the change, that
    ``roll`` is within ``within`` x that level; ``stays_within_s``: the time from which it stays
    there to the end of the data; ``peak``: its largest value after the change. Times in seconds
    after the change, None when never."""
    t, roll = np.asarray(t, float), np.asarray(roll, float)
    before = (t >= t_change - RECOVERY_LEVEL_S) & (t < t_change)
    level = float(np.nanmean(roll[before])) if np.isfinite(roll[before]).any() else math.nan
    after = t >= t_change
    ta, ra = t[after], roll[after]
    with np.errstate(invalid='ignore'):
        ok = ra <= within * level                      # NaN compares False
    first = np.flatnonzero(ok & (ta >= t_change + RECOVERY_SKIP_S))
    stays = holds_from(ok)
    return {'level': level,
            'first_within_s': float(ta[first[0]] - t_change) if first.size else None,
            'stays_within_s': None if stays is None else float(ta[stays] - t_change),
            'peak': float(np.nanmax(ra)) if np.isfinite(ra).any() else math.nan}


def payload_change_metrics(t: np.ndarray, applied: np.ndarray, predicted: np.ndarray,
                           t_change: float, period_s: float, *, threshold: float = 1.5,
                           jump_window_s: float = 2.0) -> dict[str, Any]:
    """The prediction error's jump at a payload change and how long the learner takes to recover.

    All nMSEs are normalised by the per-joint torque std of the period before the change (the same
    scale before and after) and averaged over joints. Why whole periods: along the periodic
    reference the error varies by orders of magnitude from one part of the motion to another, so
    only like-for-like windows can be compared.

    ``pre_change_nmse``: over the reference period before the change. ``jump``: the nMSE of the
    first ``jump_window_s`` after the change over that of the same part of the motion one period
    earlier. ``recovery_s``: the time from the change until the nMSE over the trailing period
    (``rolling_nmse`` with a period-long window, all samples after the change) is back below
    ``threshold`` x the pre-change level; None when not within the run (``recovered`` says which).
    Its resolution is one period: it is never below ``period_s``.

    The same change measured as ``bench/prior_payload.py`` does (:func:`error_recovery` of the
    :func:`rolling_rms` over ``RECOVERY_WINDOW_S``, in N m, the same ``threshold``):
    ``error_rms_before``, ``error_rms_peak``, ``error_rms_first_within_s``,
    ``error_rms_stays_within_s``.
    """
    t = np.asarray(t, float)
    applied, predicted = np.asarray(applied, float), np.asarray(predicted, float)
    pre = _window(t, t_change - period_s, t_change)
    post = t >= t_change
    if np.count_nonzero(pre) < 10 or np.count_nonzero(post) < 10:
        raise DemoError('payload change: too few matched predictions around the change')
    std = np.maximum(applied[pre].std(axis=0), MIN_TORQUE_STD)
    pre_level = _nmse_over(t, applied, predicted, std, t_change - period_s, t_change)
    before = _nmse_over(t, applied, predicted, std, t_change - period_s,
                        t_change - period_s + jump_window_s)
    after = _nmse_over(t, applied, predicted, std, t_change, t_change + jump_window_s)
    roll = rolling_nmse(t, applied, predicted, std, period_s)
    cand = np.flatnonzero(post & (t >= t_change + period_s - 1e-9))
    ok = cand[roll[cand] < threshold * max(pre_level, 1e-12)]
    recovery = float(t[ok[0]] - t_change) if len(ok) else None
    post_idx = np.flatnonzero(post)
    rms = error_recovery(t, rolling_rms(t, predicted - applied, RECOVERY_WINDOW_S), t_change,
                         threshold)
    return {
        'time_s': float(t_change),
        'pre_change_nmse': pre_level,
        'nmse_after_change': after,
        'nmse_same_motion_before': before,
        'jump': float(after / before) if math.isfinite(before) and before > 0 else 0.0,
        'peak_period_nmse': float(np.max(roll[cand])) if len(cand) else after,
        'threshold': float(threshold),
        'recovered': recovery is not None,
        'recovery_s': recovery,
        'final_period_nmse': float(roll[post_idx[-1]]),
        'period_s': float(period_s),
        'error_rms_window_s': RECOVERY_WINDOW_S,
        'error_rms_before': rms['level'],
        'error_rms_peak': rms['peak'],
        'error_rms_first_within_s': rms['first_within_s'],
        'error_rms_stays_within_s': rms['stays_within_s'],
    }


def repeated_runs(ff: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Lengths (steps, each >= 2) of the runs of consecutive control steps that applied the same
    feedforward: ``ff`` (N, n) per step, ``present`` (N,) whether the step had one. A run of k
    steps applied its feedforward k - 1 times after the step it came for (the answer to a
    reference comes one period ahead; when none newer has arrived, the controller applies the one
    it has again), so ``sum(runs - 1)`` is the number of repeated steps."""
    present = np.asarray(present, dtype=bool)
    if len(ff) < 2:
        return np.zeros(0, dtype=int)
    same = np.all(ff[1:] == ff[:-1], axis=1) & present[1:] & present[:-1]
    edges = np.diff(np.concatenate([[0], same.astype(np.int8), [0]]))
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1) + 1


def not_ready_seconds(events: Sequence[tuple[float, bool]], t0: float, t1: float) -> float:
    """Seconds of ``[t0, t1)`` during which the node's newest report (``events``: (time, ready) at
    every change, in order) said not ready; before its first report it counts as not ready."""
    total, state, since = 0.0, False, t0
    for t, ready in events:
        if t >= t1:
            break
        if t > since:
            if not state:
                total += t - since
            since = t
        state = bool(ready)
    if not state:
        total += max(0.0, t1 - since)
    return float(total)


def reference_distance(primary_q: np.ndarray, unseen_q: np.ndarray) -> dict[str, float]:
    """How far the unseen reference's poses are from the primary one's (rad, joint space): for each
    unseen sample the distance to the nearest primary sample; its median and maximum, and the
    same figure for the primary against itself (half a sample apart: what "on the learned
    motion" means at this sampling). Pass one period of each, densely sampled."""
    primary_q, unseen_q = np.asarray(primary_q, float), np.asarray(unseen_q, float)

    def nearest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.sqrt(np.min(np.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1), axis=1))

    d = nearest(unseen_q, primary_q[::2])
    own = nearest(primary_q[1::2], primary_q[::2])
    return {'median_rad': float(np.median(d)), 'max_rad': float(np.max(d)),
            'primary_self_median_rad': float(np.median(own))}
