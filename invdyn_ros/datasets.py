"""Recorded robot data as one type, :class:`Recording`, and readers for the files we use.

Every reader returns a :class:`Recording`: joint-ordered arrays on one continuous time axis plus the
index ranges of its trajectories (``segments``). Windows and filters must never cross a segment
boundary (the end of one trajectory and the start of the next are unrelated states), so the time
axis also has a gap of :data:`SEGMENT_GAP_S` between trajectories: a streaming estimator that sees the
samples in order resets at every boundary on its own (its ``max_gap_s`` is far below one second).

Readers
-------
- Polydoros et al. ``.mat`` files (no time column; the period is ``1 / rate``):
  :func:`load_kuka` (``kukatraj1..10``, N x 35, 100 Hz), :func:`load_baxter` (``baxtertraj1..10``, same
  layout), :func:`load_ur10` (``urPicknPlace``, N x 24 with qdd, 125 Hz), and :func:`load_mat`, which
  picks the layout from the variable names.
- Our own column format, the same in CSV and NPZ (:func:`load_csv`, :func:`load_npz`,
  :func:`save_csv`, :func:`save_npz`). Column names:

  ===================  ========================================================================
  ``time``             optional, seconds, strictly increasing; without it ``rate_hz`` is required
  ``q_<joint>``        required, joint position [rad or m]; the order of these columns is the
                       joint order unless ``joint_names`` is given
  ``qd_<joint>``       optional (all joints or none), velocity
  ``qdd_<joint>``      optional (all joints or none), acceleration
  ``tau_<joint>``      required, joint torque / effort [Nm or N]
  ``segment``          optional integer trajectory id; a change of value starts a new segment
  ===================  ========================================================================

  A CSV file has one header line with these names and comma-separated numbers below. An NPZ file
  holds one 1-D array per column under the same names, plus an optional scalar ``rate_hz``.

The KUKA-I split of Huang et al. 2024 (trajectories 1-8 train, 9-10 test) is :func:`kuka_split`.
"""
from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import scipy.io

from invdyn_ros.errors import DatasetError

__all__ = [
    'BAXTER_JOINTS',
    'KUKA_JOINTS',
    'Recording',
    'SEGMENT_GAP_S',
    'UR10_JOINTS',
    'find_datasets_dir',
    'kuka_split',
    'load_baxter',
    'load_csv',
    'load_kuka',
    'load_mat',
    'load_npz',
    'load_ur10',
    'make_time_axis',
    'save_csv',
    'save_npz',
]

#: Joint names of the KUKA LBR in lbr_fri_ros2_stack.
KUKA_JOINTS: tuple[str, ...] = tuple(f'lbr_A{i}' for i in range(1, 8))
#: Joint names of Baxter's left arm (the recorded arm is not documented; the names only need to be
#: stable and realistic).
BAXTER_JOINTS: tuple[str, ...] = (
    'left_s0', 'left_s1', 'left_e0', 'left_e1', 'left_w0', 'left_w1', 'left_w2')
#: Joint names of ur_robot_driver.
UR10_JOINTS: tuple[str, ...] = (
    'shoulder_pan_joint', 'shoulder_lift_joint', 'elbow_joint',
    'wrist_1_joint', 'wrist_2_joint', 'wrist_3_joint')

#: Time inserted between consecutive trajectories [s]; far above any estimator's max_gap_s.
SEGMENT_GAP_S = 1.0

DATASET_FOLDERS = {
    'kuka': ('kuka_lwr_polydoros2016', 'KukaDirectDynamics.mat'),
    'baxter': ('baxter_polydoros2016', 'BaxterDirectDynamics.mat'),
    'ur10': ('ur10_polydoros2015', 'URpickNplace.mat'),
}


@dataclass(frozen=True)
class _MatLayout:
    """Where the columns of one ``.mat`` layout are. Slices are column ranges of the N x C arrays."""

    kind: str
    prefix: str          # variable name, or prefix followed by a trajectory number
    numbered: bool       # kukatraj1..10 (True) or one array (False)
    columns: int
    q: slice
    qd: slice
    qdd: slice | None
    tau: slice
    rate_hz: float
    joints: tuple[str, ...]


_POLYDOROS_7DOF = dict(columns=35, q=slice(0, 7), qd=slice(7, 14), qdd=None, tau=slice(14, 21),
                       numbered=True, rate_hz=100.0)
MAT_LAYOUTS: dict[str, _MatLayout] = {
    'kuka': _MatLayout(kind='kuka', prefix='kukatraj', joints=KUKA_JOINTS, **_POLYDOROS_7DOF),
    'baxter': _MatLayout(kind='baxter', prefix='baxtertraj', joints=BAXTER_JOINTS, **_POLYDOROS_7DOF),
    'ur10': _MatLayout(kind='ur10', prefix='urPicknPlace', numbered=False, columns=24,
                       q=slice(0, 6), qd=slice(6, 12), qdd=slice(12, 18), tau=slice(18, 24),
                       rate_hz=125.0, joints=UR10_JOINTS),
}


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


# ---------------------------------------------------------------------- helpers
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


def find_datasets_dir() -> Path | None:
    """The shared real-robot datasets folder: ``$INVDYN_DATASETS``, else ``<repo>/../shared/datasets``.

    Returns None when neither exists (e.g. an installed package without the shared checkout).
    """
    env = os.environ.get('INVDYN_DATASETS')
    if env:
        path = Path(env).expanduser()
        return path if path.is_dir() else None
    path = Path(__file__).resolve().parents[1].parent / 'shared' / 'datasets'
    return path if path.is_dir() else None


def _resolve_mat(kind: str, path_or_dir: str | os.PathLike | None) -> Path:
    """The .mat file of a dataset from a file, its folder, the datasets root, or None (auto)."""
    folder, filename = DATASET_FOLDERS[kind]
    if path_or_dir is None:
        root = find_datasets_dir()
        if root is None:
            raise DatasetError(
                f'{kind}: no path given and no datasets folder found (set INVDYN_DATASETS or '
                f'place shared/datasets beside the repository)')
        path_or_dir = root
    path = Path(path_or_dir).expanduser()
    if path.is_dir():
        for candidate in (path / filename, path / folder / filename):
            if candidate.is_file():
                return candidate
        raise DatasetError(f'{path}: no {filename} in this folder or in {folder}/')
    if not path.is_file():
        raise DatasetError(f'{path}: no such file')
    return path


def _loadmat(path: Path) -> dict[str, Any]:
    try:
        data = scipy.io.loadmat(str(path))
    except FileNotFoundError:
        raise DatasetError(f'{path}: no such file') from None
    except NotImplementedError as err:  # MATLAB v7.3 (HDF5) files
        raise DatasetError(f'{path}: unsupported .mat version ({err}); save with -v7') from None
    except Exception as err:  # scipy raises ValueError/TypeError/OSError/... for garbage files
        raise DatasetError(f'{path}: not a readable .mat file ({type(err).__name__}: {err})') from None
    return {k: v for k, v in data.items() if not k.startswith('__')}


def _numbered_variables(data: Mapping[str, Any], prefix: str) -> dict[int, str]:
    pattern = re.compile(re.escape(prefix) + r'(\d+)$')
    return {int(m.group(1)): k for k in data if (m := pattern.match(k))}


def _detect_layout(path: Path, data: Mapping[str, Any]) -> _MatLayout:
    for layout in MAT_LAYOUTS.values():
        if layout.numbered and _numbered_variables(data, layout.prefix):
            return layout
        if not layout.numbered and layout.prefix in data:
            return layout
    raise DatasetError(
        f'{path}: unknown .mat layout: variables {sorted(data)}; expected kukatraj<k>, '
        f'baxtertraj<k> or urPicknPlace')


def _parse_trajectories(trajectories: Iterable[int] | str | None) -> list[int] | None:
    if trajectories is None:
        return None
    if isinstance(trajectories, str):
        try:
            return [int(x) for x in trajectories.replace(' ', '').split(',') if x]
        except ValueError:
            raise DatasetError(
                f'trajectories must be comma-separated integers, got {trajectories!r}') from None
    return [int(x) for x in trajectories]


def _recording_from_mat(path: Path, data: Mapping[str, Any], layout: _MatLayout,
                        trajectories: Iterable[int] | str | None,
                        joint_names: Sequence[str] | None,
                        rate_hz: float | None) -> Recording:
    if layout.numbered:
        available = _numbered_variables(data, layout.prefix)
        if not available:
            raise DatasetError(f'{path}: no {layout.prefix}<k> variables (a {layout.kind} file?)')
    else:
        if layout.prefix not in data:
            raise DatasetError(f'{path}: no {layout.prefix} variable (a {layout.kind} file?)')
        available = {1: layout.prefix}
    wanted = _parse_trajectories(trajectories)
    numbers = sorted(available) if wanted is None else wanted
    missing = [k for k in numbers if k not in available]
    if missing or not numbers:
        raise DatasetError(
            f'{path}: trajectories {missing or numbers} not in the file (it has {sorted(available)})')
    blocks, labels = [], []
    for k in numbers:
        var = available[k]
        arr = np.asarray(data[var])
        if arr.ndim != 2 or arr.shape[1] != layout.columns:
            raise DatasetError(
                f'{path}: {var} has shape {arr.shape}, expected (N, {layout.columns}) for the '
                f'{layout.kind} layout')
        if arr.shape[0] == 0:
            raise DatasetError(f'{path}: {var} has no rows')
        if not np.issubdtype(arr.dtype, np.number):
            raise DatasetError(f'{path}: {var} is not numeric (dtype {arr.dtype})')
        arr = arr.astype(np.float64)
        bad = ~np.isfinite(arr)
        if bad.any():
            row, col = (int(x) for x in np.argwhere(bad)[0])
            raise DatasetError(
                f'{path}: {var} has {int(bad.sum())} NaN/Inf values (first at row {row}, column {col})')
        blocks.append(arr)
        labels.append(var)
    rate = float(rate_hz) if rate_hz is not None else layout.rate_hz
    if not np.isfinite(rate) or rate <= 0:
        raise DatasetError(f'{path}: rate_hz must be positive, got {rate_hz}')
    t, segments = make_time_axis([b.shape[0] for b in blocks], rate)
    allrows = np.concatenate(blocks, axis=0)
    names = tuple(joint_names) if joint_names is not None else layout.joints
    n = layout.q.stop - layout.q.start
    if len(names) != n:
        raise DatasetError(f'{path}: {len(names)} joint names given for {n} joints: {list(names)}')
    return Recording(
        name=layout.kind, joint_names=names, rate_hz=rate, t=t,
        q=allrows[:, layout.q], qd=allrows[:, layout.qd],
        qdd=allrows[:, layout.qdd] if layout.qdd is not None else None,
        tau=allrows[:, layout.tau], segments=segments, segment_labels=tuple(labels),
        meta={'source': str(path), 'layout': layout.kind, 'trajectories': tuple(numbers)})


# ---------------------------------------------------------------------- .mat readers
def load_mat(path: str | os.PathLike, trajectories: Iterable[int] | str | None = None,
             joint_names: Sequence[str] | None = None, rate_hz: float | None = None) -> Recording:
    """Read a Polydoros ``.mat`` file, choosing the layout from its variable names.

    ``trajectories``: 1-based trajectory numbers (``kukatraj3`` is 3) to keep, in that order;
    default all, in numeric order. ``joint_names`` renames the joints (same count), ``rate_hz``
    overrides the documented rate (the files have no time column).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f'{path}: no such file')
    data = _loadmat(path)
    return _recording_from_mat(path, data, _detect_layout(path, data), trajectories, joint_names,
                               rate_hz)


def _load_kind(kind: str, path_or_dir: str | os.PathLike | None,
               trajectories: Iterable[int] | str | None, joint_names: Sequence[str] | None,
               rate_hz: float | None) -> Recording:
    path = _resolve_mat(kind, path_or_dir)
    return _recording_from_mat(path, _loadmat(path), MAT_LAYOUTS[kind], trajectories, joint_names,
                               rate_hz)


def load_kuka(path_or_dir: str | os.PathLike | None = None,
              trajectories: Iterable[int] | str | None = None,
              joint_names: Sequence[str] | None = None, rate_hz: float | None = None) -> Recording:
    """KUKA-I (Polydoros 2016): ``kukatraj1..10``, q/qd/tau, 100 Hz, no qdd.

    ``path_or_dir``: the ``.mat`` file, its folder, the datasets root, or None for
    :func:`find_datasets_dir`. The real file has 20,068 samples in 10 trajectories.
    """
    return _load_kind('kuka', path_or_dir, trajectories, joint_names, rate_hz)


def load_baxter(path_or_dir: str | os.PathLike | None = None,
                trajectories: Iterable[int] | str | None = None,
                joint_names: Sequence[str] | None = None, rate_hz: float | None = None) -> Recording:
    """Baxter (Polydoros 2016): ``baxtertraj1..10``, same layout as KUKA; 19,295 samples."""
    return _load_kind('baxter', path_or_dir, trajectories, joint_names, rate_hz)


def load_ur10(path_or_dir: str | os.PathLike | None = None,
              trajectories: Iterable[int] | str | None = None,
              joint_names: Sequence[str] | None = None, rate_hz: float | None = None) -> Recording:
    """UR10 pick-and-place (Polydoros 2015): ``urPicknPlace`` N x 24 with qdd, 125 Hz.

    One segment of 12,349 samples: the file concatenates its trajectories without marking the
    boundaries. ``urPicknPlaceHyper`` (a subset of the same rows) is ignored.
    """
    return _load_kind('ur10', path_or_dir, trajectories, joint_names, rate_hz)


def kuka_split(rec: Recording) -> tuple[Recording, Recording]:
    """(train, test) of KUKA-I as in Huang et al. 2024: trajectories 1-8 / 9-10 (16,052 / 4,016).

    Segments are found by label (``kukatraj<k>``); a recording without those labels must have
    exactly 10 segments, taken in order. Original time stamps are kept.
    """
    by_number = {}
    for i, label in enumerate(rec.segment_labels):
        m = re.fullmatch(r'kukatraj(\d+)', label)
        if m:
            by_number[int(m.group(1))] = i
    if not by_number and len(rec.segments) == 10:
        by_number = {i + 1: i for i in range(10)}
    missing = [k for k in range(1, 11) if k not in by_number]
    if missing:
        raise DatasetError(
            f'{rec.name}: KUKA split needs trajectories 1-10; missing {missing} '
            f'(segments: {list(rec.segment_labels)})')
    train = rec.select_segments([by_number[k] for k in range(1, 9)], name=f'{rec.name}[train]')
    test = rec.select_segments([by_number[k] for k in (9, 10)], name=f'{rec.name}[test]')
    return train, test


# ---------------------------------------------------------------------- column format (CSV / NPZ)
_PREFIXES = ('q', 'qd', 'qdd', 'tau')
_COLUMN = re.compile(r'(q|qd|qdd|tau)_(.+)$')


def _recording_from_columns(path: Path, columns: Mapping[str, np.ndarray],
                            joint_names: Sequence[str] | None, rate_hz: float | None,
                            name: str) -> Recording:
    """Build a Recording from named 1-D columns (the scheme in the module docstring)."""
    by_kind: dict[str, dict[str, np.ndarray]] = {k: {} for k in _PREFIXES}
    order: list[str] = []
    unknown = []
    for key, col in columns.items():
        m = _COLUMN.match(key)
        if m:
            by_kind[m.group(1)][m.group(2)] = col
            if m.group(1) == 'q':
                order.append(m.group(2))
        elif key not in ('time', 'segment', 'rate_hz'):
            unknown.append(key)
    if not order:
        raise DatasetError(
            f'{path}: no q_<joint> columns (columns: {list(columns)}); expected time, q_<joint>, '
            f'qd_<joint>, qdd_<joint>, tau_<joint>, segment')
    names = tuple(joint_names) if joint_names is not None else tuple(order)
    arrays: dict[str, np.ndarray | None] = {}
    for kind in _PREFIXES:
        present = [j for j in names if j in by_kind[kind]]
        if kind in ('q', 'tau') or present:
            missing = [f'{kind}_{j}' for j in names if j not in by_kind[kind]]
            if missing:
                raise DatasetError(f'{path}: missing columns {missing}')
            arrays[kind] = np.column_stack([by_kind[kind][j] for j in names])
        else:
            arrays[kind] = None
    N = arrays['q'].shape[0]
    if 'segment' in columns:
        seg = np.asarray(columns['segment'])
        if seg.shape != (N,) or not np.all(np.isfinite(seg.astype(np.float64))):
            raise DatasetError(f'{path}: segment column must be finite with {N} rows')
        change = np.flatnonzero(seg[1:] != seg[:-1]) + 1
        bounds = [0, *change.tolist(), N]
        lengths = np.diff(bounds).tolist()
        labels = tuple(_label(seg[b]) for b in bounds[:-1])
    else:
        lengths, labels = [N], ()
    if 'time' in columns:
        t = np.asarray(columns['time'], dtype=np.float64)
        segments = tuple((int(sum(lengths[:i])), int(sum(lengths[:i + 1])))
                         for i in range(len(lengths)))
        if rate_hz is None:
            dts = np.concatenate([np.diff(t[a:b]) for a, b in segments]) if N > 1 else np.zeros(0)
            dts = dts[np.isfinite(dts) & (dts > 0)]
            if dts.size == 0:
                raise DatasetError(f'{path}: cannot infer the rate from the time column; give rate_hz')
            rate_hz = 1.0 / float(np.median(dts))
    else:
        if rate_hz is None:
            raise DatasetError(f'{path}: no time column; the sample rate (rate_hz / --rate) is required')
        t, segments = make_time_axis(lengths, float(rate_hz))
    return Recording(name=name, joint_names=names, rate_hz=float(rate_hz), t=t, q=arrays['q'],
                     qd=arrays['qd'], qdd=arrays['qdd'], tau=arrays['tau'], segments=segments,
                     segment_labels=labels, meta={'source': str(path), 'layout': 'columns',
                                                  'ignored_columns': tuple(unknown)})


def _label(value: Any) -> str:
    f = float(value)
    return str(int(f)) if f.is_integer() else str(value)


def load_csv(path: str | os.PathLike, joint_names: Sequence[str] | None = None,
             rate_hz: float | None = None) -> Recording:
    """Read a CSV file in the column scheme of this module (see the module docstring).

    ``joint_names`` selects and orders the joints (default: the order of the ``q_`` columns).
    ``rate_hz`` is required when there is no ``time`` column and otherwise overrides the nominal
    rate (the median stamp difference). Blank or non-numeric cells, NaN/Inf, or rows of the wrong
    length raise :class:`DatasetError` naming the file.
    """
    path = Path(path).expanduser()
    try:
        with open(path, newline='') as f:
            header = next(csv.reader(f), None)
            if not header:
                raise DatasetError(f'{path}: empty file (expected a header line)')
            header = [h.strip() for h in header]
            if len(set(header)) != len(header):
                raise DatasetError(f'{path}: duplicate column names in the header')
            rows = list(csv.reader(f))
    except FileNotFoundError:
        raise DatasetError(f'{path}: no such file') from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(f'{path}: cannot read ({err})') from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise DatasetError(f'{path}: no data rows')
    for i, r in enumerate(rows):
        if len(r) != len(header):
            raise DatasetError(
                f'{path}: line {i + 2} has {len(r)} columns, the header has {len(header)}')
    try:
        data = np.array(rows, dtype=np.float64)
    except ValueError as err:
        raise DatasetError(f'{path}: non-numeric cell ({err})') from None
    bad = ~np.isfinite(data)
    if bad.any():
        r, c = (int(x) for x in np.argwhere(bad)[0])
        raise DatasetError(f'{path}: NaN/Inf in line {r + 2}, column {header[c]!r}')
    columns = {h: data[:, i] for i, h in enumerate(header)}
    return _recording_from_columns(path, columns, joint_names, rate_hz, name=path.stem)


def load_npz(path: str | os.PathLike, joint_names: Sequence[str] | None = None,
             rate_hz: float | None = None) -> Recording:
    """Read an NPZ file holding one 1-D array per column (names as for CSV), plus optional ``rate_hz``.

    Loaded with ``allow_pickle=False``: an NPZ file cannot run code.
    """
    path = Path(path).expanduser()
    try:
        with np.load(path, allow_pickle=False) as npz:
            columns = {k: np.asarray(npz[k]) for k in npz.files}
    except FileNotFoundError:
        raise DatasetError(f'{path}: no such file') from None
    except Exception as err:  # BadZipFile, ValueError (pickled objects), OSError, ...
        raise DatasetError(f'{path}: not a readable .npz file ({type(err).__name__}: {err})') from None
    if 'rate_hz' in columns:
        stored = columns.pop('rate_hz')
        if rate_hz is None:
            try:
                rate_hz = float(stored)
            except (TypeError, ValueError):
                raise DatasetError(f'{path}: rate_hz must be a scalar') from None
    lengths = {k: v.shape for k, v in columns.items()}
    for k, v in columns.items():
        if v.ndim != 1:
            raise DatasetError(f'{path}: column {k!r} must be 1-D, got shape {v.shape}')
        if not np.issubdtype(v.dtype, np.number) and not np.issubdtype(v.dtype, np.bool_):
            raise DatasetError(f'{path}: column {k!r} is not numeric (dtype {v.dtype})')
    if len({s for s in lengths.values()}) > 1:
        raise DatasetError(f'{path}: columns have different lengths: {lengths}')
    for k, v in columns.items():
        if k != 'segment' and not np.all(np.isfinite(v.astype(np.float64))):
            raise DatasetError(f'{path}: NaN/Inf in column {k!r}')
    return _recording_from_columns(path, columns, joint_names, rate_hz, name=path.stem)


def _columns_of(rec: Recording) -> dict[str, np.ndarray]:
    cols: dict[str, np.ndarray] = {'time': rec.t}
    for kind in _PREFIXES:
        arr = getattr(rec, kind)
        if arr is not None:
            for j, joint in enumerate(rec.joint_names):
                cols[f'{kind}_{joint}'] = arr[:, j]
    seg = np.empty(rec.n_samples, dtype=np.int64)
    for i, (a, b) in enumerate(rec.segments):
        seg[a:b] = i + 1
    cols['segment'] = seg
    return cols


def save_csv(path: str | os.PathLike, rec: Recording) -> Path:
    """Write ``rec`` in the column scheme (``repr`` precision: reading it back is exact)."""
    path = Path(path)
    cols = _columns_of(rec)
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(list(cols))
        keys = list(cols)
        for i in range(rec.n_samples):
            writer.writerow([repr(int(cols[k][i])) if k == 'segment' else repr(float(cols[k][i]))
                             for k in keys])
    return path


def save_npz(path: str | os.PathLike, rec: Recording) -> Path:
    """Write ``rec`` in the column scheme as an uncompressed NPZ file, with ``rate_hz``."""
    path = Path(path)
    if path.suffix != '.npz':
        path = path.with_name(path.name + '.npz')  # numpy would append it silently otherwise
    np.savez(path, rate_hz=np.float64(rec.rate_hz), **_columns_of(rec))
    return path
