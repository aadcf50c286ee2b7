"""Recorded robot data as one type: :class:`Recording`, and :func:`make_time_axis`.

Joint-ordered arrays on one continuous time axis plus the index ranges of its trajectories
(``segments``); consecutive trajectories are :data:`SEGMENT_GAP_S` apart on the time axis, so a
streaming estimator resets at every boundary on its own (see :mod:`invdyn_ros.offline.datasets`).
Re-exported by :mod:`invdyn_ros.offline.datasets`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from invdyn_ros.errors import DatasetError

__all__ = ['Recording', 'SEGMENT_GAP_S', 'make_time_axis']

#: Time inserted between consecutive trajectories [s]; far above any estimator's max_gap_s.
SEGMENT_GAP_S = 1.0


@dataclass(frozen=True, eq=False)
class Recording:
    """Joint-space samples of one or more trajectories on one time axis.

    Arrays are float64 with shape (N, n) in ``joint_names`` order, ``t`` is (N,) seconds, strictly
    increasing. ``qd`` / ``qdd`` are None when the source has none (differentiate instead); ``qd``
    may hold NaN where a sample's velocity is unknown (a message without one, as in a bag), never
    Inf; ``tau`` may hold all-NaN rows for samples without effort (a bag's messages without one:
    predicted, never learned from or scored).
    ``segments`` are ``(start, stop)`` row ranges (stop exclusive) of the trajectories, in order,
    covering every row exactly once; ``segment_labels`` names them (e.g. ``'kukatraj3'``).
    ``rate_hz`` is the nominal sample rate. ``meta`` holds provenance (source file, skipped-sample
    counts of a bag, ...). Construction validates everything and raises :class:`DatasetError`.
    """

    name: str
    joint_names: tuple[str, ...]
    rate_hz: float
    t: np.ndarray
    q: np.ndarray
    qd: np.ndarray | None
    qdd: np.ndarray | None
    tau: np.ndarray
    segments: tuple[tuple[int, int], ...] = ()
    segment_labels: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        names = tuple(str(j) for j in self.joint_names)
        set_(self, 'joint_names', names)
        n = len(names)
        if n == 0 or len(set(names)) != n:
            raise DatasetError(f'{self.name}: joint_names must be non-empty and unique, got {names}')
        try:
            rate = float(self.rate_hz)
        except (TypeError, ValueError):
            raise DatasetError(f'{self.name}: rate_hz must be a number, got {self.rate_hz!r}') from None
        if not np.isfinite(rate) or rate <= 0:
            raise DatasetError(f'{self.name}: rate_hz must be positive and finite, got {rate}')
        set_(self, 'rate_hz', rate)
        t = _as_float_array(self.name, 't', self.t, ndim=1)
        N = t.shape[0]
        if N == 0:
            raise DatasetError(f'{self.name}: recording has no samples')
        if N > 1 and not np.all(np.diff(t) > 0):
            raise DatasetError(f'{self.name}: time stamps are not strictly increasing')
        set_(self, 't', t)
        for key in ('q', 'qd', 'qdd', 'tau'):
            value = getattr(self, key)
            if value is None:
                if key in ('q', 'tau'):
                    raise DatasetError(f'{self.name}: {key} is required')
                continue
            arr = _as_float_array(self.name, key, value, ndim=2, allow_nan=key in ('qd', 'tau'))
            if key == 'tau' and arr.ndim == 2 and (np.isnan(arr).any(axis=1)
                                                   != np.isnan(arr).all(axis=1)).any():
                raise DatasetError(f'{self.name}: tau has NaN in part of a row (a sample has '
                                   'an effort for every joint or none)')
            if arr.shape != (N, n):
                raise DatasetError(
                    f'{self.name}: {key} has shape {arr.shape}, expected ({N}, {n}) '
                    f'({N} samples, {n} joints)')
            set_(self, key, arr)
        segments = tuple((int(a), int(b)) for a, b in self.segments) if len(self.segments) else ((0, N),)
        expected_start = 0
        for a, b in segments:
            if a != expected_start or b <= a:
                raise DatasetError(
                    f'{self.name}: segments {segments} must be consecutive, non-empty ranges '
                    f'covering rows 0..{N}')
            expected_start = b
        if expected_start != N:
            raise DatasetError(f'{self.name}: segments {segments} do not cover rows 0..{N}')
        set_(self, 'segments', segments)
        labels = tuple(str(s) for s in self.segment_labels)
        if labels and len(labels) != len(segments):
            raise DatasetError(
                f'{self.name}: {len(labels)} segment_labels for {len(segments)} segments')
        set_(self, 'segment_labels', labels or tuple(str(i + 1) for i in range(len(segments))))
        set_(self, 'meta', dict(self.meta))

    # ------------------------------------------------------------------ properties
    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    @property
    def n_samples(self) -> int:
        return int(self.t.shape[0])

    def __len__(self) -> int:
        return self.n_samples

    @property
    def duration(self) -> float:
        """Last minus first stamp [s] (includes the gaps between segments)."""
        return float(self.t[-1] - self.t[0])

    def __repr__(self) -> str:
        return (f'Recording({self.name!r}, {self.n_samples} samples, {self.n_joints} joints, '
                f'{len(self.segments)} segments, {self.rate_hz:g} Hz, '
                f'qd={"yes" if self.qd is not None else "no"}, '
                f'qdd={"yes" if self.qdd is not None else "no"})')

    # ------------------------------------------------------------------ selection
    def segment(self, index: int) -> 'Recording':
        """One trajectory as its own Recording (original time stamps kept)."""
        return self.select_segments([index])

    def select_segments(self, indices: Iterable[int], name: str | None = None) -> 'Recording':
        """The given segments (0-based, in the given order) as a new Recording.

        The original time stamps are kept, so the order must keep time increasing (ascending
        indices do); the gaps between the chosen segments stay at least :data:`SEGMENT_GAP_S`.
        """
        idx = [int(i) for i in indices]
        if not idx:
            raise DatasetError(f'{self.name}: no segments selected')
        for i in idx:
            if not 0 <= i < len(self.segments):
                raise DatasetError(
                    f'{self.name}: segment index {i} out of range (0..{len(self.segments) - 1})')
        rows = np.concatenate([np.arange(*self.segments[i]) for i in idx])
        lengths = [self.segments[i][1] - self.segments[i][0] for i in idx]
        stops = np.cumsum(lengths)
        segs = tuple((int(s - n), int(s)) for s, n in zip(stops, lengths))

        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[rows]

        return Recording(
            name=name or self.name, joint_names=self.joint_names, rate_hz=self.rate_hz,
            t=self.t[rows], q=take(self.q), qd=take(self.qd), qdd=take(self.qdd), tau=take(self.tau),
            segments=segs, segment_labels=tuple(self.segment_labels[i] for i in idx),
            meta=dict(self.meta))

    def select_joints(self, joint_names: Sequence[str]) -> 'Recording':
        """The given joints, in the given order (a subset or a reordering)."""
        names = tuple(joint_names)
        missing = [j for j in names if j not in self.joint_names]
        if missing:
            raise DatasetError(
                f'{self.name}: joints {missing} not in the recording (it has {list(self.joint_names)})')
        cols = [self.joint_names.index(j) for j in names]

        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[:, cols]

        return replace(self, joint_names=names, q=take(self.q), qd=take(self.qd),
                       qdd=take(self.qdd), tau=take(self.tau))

    def with_joint_names(self, joint_names: Sequence[str]) -> 'Recording':
        """The same data under other joint names (e.g. the names of your robot's driver)."""
        names = tuple(joint_names)
        if len(names) != self.n_joints:
            raise DatasetError(
                f'{self.name}: {len(names)} joint names given for {self.n_joints} joints')
        return replace(self, joint_names=names)


def _as_float_array(name: str, key: str, value: Any, ndim: int,
                    allow_nan: bool = False) -> np.ndarray:
    try:
        arr = np.array(value, dtype=np.float64)  # a copy: a Recording never aliases caller data
    except (TypeError, ValueError) as err:
        raise DatasetError(f'{name}: {key} is not numeric ({err})') from None
    if arr.ndim != ndim:
        raise DatasetError(f'{name}: {key} must be {ndim}-D, got shape {arr.shape}')
    bad = np.isinf(arr) if allow_nan else ~np.isfinite(arr)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise DatasetError(
            f'{name}: {key} has {int(bad.sum())} NaN/Inf values (first in row {row})')
    arr.setflags(write=False)
    return arr


def make_time_axis(lengths: Sequence[int], rate_hz: float,
                   gap_s: float = SEGMENT_GAP_S) -> tuple[np.ndarray, tuple[tuple[int, int], ...]]:
    """Stamps for consecutive trajectories sampled at ``rate_hz`` without a time column.

    Within a trajectory ``t = t0 + k / rate`` (computed from k, not accumulated, so it does not
    drift); the next trajectory starts ``gap_s`` after the previous one's last sample.
    Returns ``(t (N,), segments)``.
    """
    parts, segments = [], []
    t0, start = 0.0, 0
    for n in lengths:
        parts.append(t0 + np.arange(n, dtype=np.float64) / rate_hz)
        segments.append((start, start + n))
        start += n
        t0 = float(parts[-1][-1]) + gap_s
    t = np.concatenate(parts) if parts else np.zeros(0)
    return t, tuple(segments)

