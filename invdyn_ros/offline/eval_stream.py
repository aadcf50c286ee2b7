"""The evaluator's input: a recorded joint stream (:class:`Stream`) and its reference states.

:class:`Stream` holds the samples as the node would receive them (:func:`as_stream` builds one
from a :class:`~invdyn_ros.offline.datasets.Recording` or ``(stamp, q, qd, tau)`` tuples);
:func:`reference_states` runs the pipeline's estimator over them: the labels every model is
scored against and the features of the baselines. ROS-free; re-exported by
:mod:`invdyn_ros.offline.evaluation`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from invdyn_ros.errors import DatasetError

__all__ = ['Stream', 'as_stream', 'ReferenceStates', 'reference_states']


# =========================================================================== the input stream
@dataclass(frozen=True)
class Stream:
    """Samples as the node would receive them, joint-ordered, in stamp order.

    ``stamps`` (N,) seconds; ``q`` (N, n); ``qd`` (N, n) with NaN where a message had no velocity
    (the estimator then differentiates positions) or None when no sample has one; ``tau`` (N, n)
    with NaN rows for samples without effort (never learned from or scored).
    """

    joint_names: tuple[str, ...]
    stamps: np.ndarray
    q: np.ndarray
    qd: np.ndarray | None
    tau: np.ndarray
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.stamps.shape[0])

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    @property
    def duration(self) -> float:
        return float(self.stamps[-1] - self.stamps[0]) if len(self) else 0.0

    # What a row means: a velocity row that is all NaN = the message had none; an effort row
    # with any NaN = the sample has no effort (never learned from or scored).
    @staticmethod
    def _no_velocity(qd: np.ndarray) -> np.ndarray:
        return np.isnan(qd).all(axis=-1)

    @staticmethod
    def _no_effort(tau: np.ndarray) -> np.ndarray:
        return np.isnan(tau).any(axis=-1)

    def sample(self, i: int) -> tuple[float, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """``(stamp, q, qd or None, tau or None)`` of row i, as ``Pipeline.process`` takes them."""
        qd = None
        if self.qd is not None and not self._no_velocity(self.qd[i]):
            qd = self.qd[i]
        tau = None if self._no_effort(self.tau[i]) else self.tau[i]
        return float(self.stamps[i]), self.q[i], qd, tau

    def columns(self, start: int, stop: int) -> tuple[Any, Any, Any, Any]:
        """Rows ``start:stop`` as ``Pipeline.process_arrays`` takes them, meaning exactly what
        :meth:`sample` passes to ``process`` per row: (N, n) arrays where every row is a full
        sample, lists with None where a row has no velocity or no effort."""
        sl = slice(start, stop)
        qd = self.qd[sl] if self.qd is not None else None
        if qd is not None:
            missing = self._no_velocity(qd)
            if missing.any():
                qd = [None if m else row for m, row in zip(missing, qd)]
        tau = self.tau[sl]
        no_tau = self._no_effort(tau)
        if no_tau.any():
            tau = [None if m else row for m, row in zip(no_tau, tau)]
        return self.stamps[sl], self.q[sl], qd, tau


def as_stream(samples_or_recording: Any, joint_names: Sequence[str] | None = None) -> Stream:
    """A :class:`Stream` from a :class:`~invdyn_ros.offline.datasets.Recording`, a :class:`Stream`,
    or an iterable of ``(stamp, q, qd, tau)`` tuples (qd / tau may be None).

    Rows are kept in the given order (a recording's stamps are strictly increasing already; the
    estimator drops out-of-order stamps, as it would live). ``joint_names`` names the joints of
    tuples; for a Recording it selects and orders its joints (as the node orders by name). Raises
    :class:`DatasetError` for an empty or ragged input or a joint the recording lacks.
    """
    obj = samples_or_recording
    if isinstance(obj, Stream):
        return obj
    if hasattr(obj, 't') and hasattr(obj, 'q') and hasattr(obj, 'tau') \
            and hasattr(obj, 'joint_names'):
        if joint_names is not None and tuple(joint_names) != tuple(obj.joint_names) \
                and hasattr(obj, 'select_joints'):
            obj = obj.select_joints(tuple(joint_names))
        names = tuple(obj.joint_names)
        qd = None if obj.qd is None else np.asarray(obj.qd, dtype=np.float64)
        meta = dict(getattr(obj, 'meta', {}) or {})
        meta.setdefault('name', getattr(obj, 'name', ''))
        meta.setdefault('rate_hz', getattr(obj, 'rate_hz', None))
        stream = Stream(names, np.asarray(obj.t, dtype=np.float64),
                        np.asarray(obj.q, dtype=np.float64), qd,
                        np.asarray(obj.tau, dtype=np.float64), meta)
    else:
        rows = list(obj)
        if not rows:
            raise DatasetError('no samples to evaluate')
        try:
            n = len(np.asarray(rows[0][1]).ravel())
            stamps = np.array([float(r[0]) for r in rows])
            q = np.stack([np.asarray(r[1], dtype=np.float64).reshape(n) for r in rows])
            qd = np.full((len(rows), n), np.nan)
            tau = np.full((len(rows), n), np.nan)
            for i, r in enumerate(rows):
                if r[2] is not None and np.size(r[2]):
                    qd[i] = np.asarray(r[2], dtype=np.float64).reshape(n)
                if r[3] is not None and np.size(r[3]):
                    tau[i] = np.asarray(r[3], dtype=np.float64).reshape(n)
        except (TypeError, ValueError, IndexError) as err:
            raise DatasetError(f'samples must be (stamp, q, qd, tau) with equal joint counts: '
                               f'{err}') from None
        names = tuple(joint_names) if joint_names is not None else tuple(f'joint{i + 1}'
                                                                          for i in range(n))
        if len(names) != n:
            raise DatasetError(f'{len(names)} joint names for {n} joints')
        stream = Stream(names, stamps, q, None if np.isnan(qd).all() else qd, tau, {})
    n = stream.n_joints
    if len(stream) == 0:
        raise DatasetError('no samples to evaluate')
    for key in ('q', 'tau'):
        if getattr(stream, key).shape != (len(stream), n):
            raise DatasetError(f'{key} has shape {getattr(stream, key).shape}, expected '
                               f'({len(stream)}, {n})')
    if stream.qd is not None and stream.qd.shape != (len(stream), n):
        raise DatasetError(f'qd has shape {stream.qd.shape}, expected ({len(stream)}, {n})')
    return stream



# =========================================================================== reference states
@dataclass(frozen=True)
class ReferenceStates:
    """The estimator's output for a stream: one row per sample (NaN where no State came out).

    ``valid`` (N,) bool: a State was emitted; ``labeled``: and it had a torque. ``X`` (N, 3n) the
    newest window row ``[q, qd, qdd]``; ``tau`` (N, n) the filtered (and effort-scaled) torque.
    """

    t: np.ndarray
    X: np.ndarray
    tau: np.ndarray
    valid: np.ndarray
    labeled: np.ndarray
    counters: dict


def reference_states(stream: Stream, filter_config: Any,
                     effort_scale: Sequence[float] | None = None) -> ReferenceStates:
    """Run a :class:`~invdyn_ros.stages.estimation.StreamingEstimator` over the stream like the
    pipeline.

    ``effort_scale`` multiplies the efforts before they enter the estimator, as the pipeline does
    with its ``effort_scale`` (filtering is linear, so before or after is the same number).
    """
    from invdyn_ros.stages.estimation import StreamingEstimator

    n = stream.n_joints
    N = len(stream)
    est = StreamingEstimator(n, filter_config)
    scale = None if effort_scale is None else np.asarray(effort_scale, dtype=np.float64)
    X = np.full((N, 3 * n), np.nan)
    tau = np.full((N, n), np.nan)
    valid = np.zeros(N, dtype=bool)
    for i in range(N):
        stamp, q, qd, ti = stream.sample(i)
        if ti is not None and scale is not None:
            ti = ti * scale
        state = est.update(stamp, q, qd, ti)
        if state is None:
            continue
        valid[i] = True
        X[i, :n], X[i, n:2 * n], X[i, 2 * n:] = state.q, state.qd, state.qdd
        if state.tau is not None:
            tau[i] = state.tau
    labeled = valid & np.isfinite(tau).all(axis=1) & np.isfinite(X).all(axis=1)
    return ReferenceStates(stream.stamps.copy(), X, tau, valid, labeled, dict(est.counters))

