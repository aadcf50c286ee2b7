"""The zero-phase form of the estimation chain for recorded arrays: :func:`estimate_offline`.

Training data from files (bench, datasets) is filtered forward and backward (``sosfiltfilt``):
no delay to compensate, the magnitude response of :mod:`invdyn_ros.stages.estimation`'s two causal
stages. It shares the filter design (:mod:`invdyn_ros.stages.filters`) and the gap rule (a stamp
difference over ``max_gap_s`` starts a new segment) with the streaming form and nothing else: it
keeps no state and rejects bad arrays as a whole (``DatasetError``) instead of sample by sample.
``invdyn_ros.stages.estimation`` re-exports it.
"""
from __future__ import annotations

import numpy as np
import scipy.signal

from invdyn_ros.errors import DatasetError
from invdyn_ros.stages.filters import FilterConfig, design_filter

__all__ = ['estimate_offline']


def _segments(t: np.ndarray, max_gap_s: float) -> list[slice]:
    breaks = np.flatnonzero(np.diff(t) > max_gap_s) + 1
    edges = np.concatenate(([0], breaks, [len(t)]))
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _filtfilt(sos: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Zero-phase filter along axis 0; short segments use a shorter padding (or none)."""
    default_pad = 3 * (2 * len(sos) + 1 - min((sos[:, 2] == 0).sum(), (sos[:, 5] == 0).sum()))
    if len(x) < 2:
        return x.copy()
    return scipy.signal.sosfiltfilt(sos, x, axis=0, padlen=min(default_pad, len(x) - 1))


def _gradient(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    if len(t) < 2:
        return np.zeros_like(x)
    return np.gradient(x, t, axis=0)


def estimate_offline(t: object, q: object, qd: object = None, tau: object = None,
                     config: FilterConfig | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Zero-phase (``sosfiltfilt``) estimate for recorded arrays: returns (q, qd, qdd, tau).

    t: (N,) strictly increasing seconds; q, qd, tau: (N, n). Velocity is the recorded one where
    finite, else ``np.gradient(q, t)`` (exact secants of the raw samples); qdd is ``np.gradient`` of
    the filtered velocity against the equally filtered real t (chain rule in sample index, see
    :mod:`invdyn_ros.stages.estimation`; equal to t for regular stamps). Each channel is filtered
    once forward and once backward: the magnitude response of the two causal stages of
    :class:`~invdyn_ros.stages.estimation.StreamingEstimator` without their delay (the half-sample
    mean / difference are replaced by central differences). Segments separated by more than
    ``max_gap_s`` are processed independently. Raises
    :class:`DatasetError` for malformed or non-finite arrays (drop duplicate stamps first).
    """
    cfg = (config if config is not None else FilterConfig()).validate()
    t_arr = np.asarray(t, dtype=np.float64)
    q_arr = np.asarray(q, dtype=np.float64)
    if t_arr.ndim != 1 or q_arr.ndim != 2 or q_arr.shape[0] != t_arr.shape[0] or len(t_arr) == 0:
        raise DatasetError(f'expected t (N,) and q (N, n) with N > 0, got {t_arr.shape} and '
                           f'{q_arr.shape}')
    shape = q_arr.shape

    def optional(name: str, value: object) -> np.ndarray | None:
        if value is None:
            return None
        arr = np.asarray(value, dtype=np.float64)
        if arr.size == 0:
            return None
        if arr.shape != shape:
            raise DatasetError(f'{name} must have shape {shape}, got {arr.shape}')
        return arr

    qd_arr = optional('qd', qd)
    tau_arr = optional('tau', tau)
    if not np.isfinite(t_arr).all() or not np.isfinite(q_arr).all() \
            or (tau_arr is not None and not np.isfinite(tau_arr).all()):
        raise DatasetError('t, q and tau must be finite')
    dts = np.diff(t_arr)
    if (dts <= 0).any():
        raise DatasetError('t must be strictly increasing (drop duplicate stamps first)')
    if cfg.rate_hz is not None:
        rate = float(cfg.rate_hz)
    elif len(dts):
        rate = 1.0 / float(np.median(dts))
    else:
        rate = 2.5 * cfg.cutoff_hz    # one sample: nothing to filter, any valid design will do
    sos, _ = design_filter(cfg, rate)

    q_out = np.empty_like(q_arr)
    qd_out = np.empty_like(q_arr)
    qdd_out = np.empty_like(q_arr)
    tau_out = np.empty_like(q_arr) if tau_arr is not None else None
    for seg in _segments(t_arr, cfg.max_gap_s):
        ts = t_arr[seg]
        v = _gradient(q_arr[seg], ts)
        if qd_arr is not None:
            v = np.where(np.isfinite(qd_arr[seg]), qd_arr[seg], v)
        q_out[seg] = _filtfilt(sos, q_arr[seg])
        qd_out[seg] = _filtfilt(sos, v)
        # Chain rule in sample index, as in the causal chain: the filtered velocity describes the
        # equally filtered time, so differentiate against that (identical to ts for regular
        # stamps; with jitter, dividing by the raw neighbours' dt would add ~jitter-sized errors).
        ts_f = _filtfilt(sos, ts)
        if not (np.diff(ts_f) > 0).all():
            ts_f = ts
        qdd_out[seg] = _gradient(qd_out[seg], ts_f)
        if tau_out is not None:
            tau_out[seg] = _filtfilt(sos, tau_arr[seg])  # type: ignore[index]
    return q_out, qd_out, qdd_out, tau_out
