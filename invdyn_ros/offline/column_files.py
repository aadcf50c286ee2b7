"""The column file format of recordings, the same in CSV and NPZ: read and write.

:func:`load_csv`, :func:`load_npz`, :func:`save_csv`, :func:`save_npz`. Column names:

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

Re-exported by :mod:`invdyn_ros.offline.datasets`.
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from invdyn_ros.errors import DatasetError
from invdyn_ros.offline.recording import Recording, make_time_axis

__all__ = ['load_csv', 'load_npz', 'save_csv', 'save_npz']

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

