"""Readers of the Polydoros et al. ``.mat`` datasets (KUKA-I, Baxter, UR10) and the KUKA-I split.

No time column: the period is ``1 / rate``. :func:`load_kuka` (``kukatraj1..10``, N x 35,
100 Hz), :func:`load_baxter` (``baxtertraj1..10``, same layout), :func:`load_ur10`
(``urPicknPlace``, N x 24 with qdd, 125 Hz), :func:`load_mat` (the layout from the variable
names); :func:`find_datasets_dir` locates the shared datasets folder; :func:`kuka_split` is the
KUKA-I split of Huang et al. 2024. Re-exported by :mod:`invdyn_ros.offline.datasets`.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import scipy.io

from invdyn_ros.errors import DatasetError
from invdyn_ros.offline.recording import Recording, make_time_axis

__all__ = ['KUKA_JOINTS', 'BAXTER_JOINTS', 'UR10_JOINTS', 'DATASET_FOLDERS', 'MAT_LAYOUTS',
           'find_datasets_dir', 'load_mat', 'load_kuka', 'load_baxter', 'load_ur10', 'kuka_split']

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



def find_datasets_dir() -> Path | None:
    """The shared real-robot datasets folder: ``$INVDYN_DATASETS``, else ``<repo>/../shared/datasets``.

    Returns None when neither exists (e.g. an installed package without the shared checkout).
    """
    env = os.environ.get('INVDYN_DATASETS')
    if env:
        path = Path(env).expanduser()
        return path if path.is_dir() else None
    # <repo>/invdyn_ros/offline/mat_datasets.py: parents[2] is <repo>.
    path = Path(__file__).resolve().parents[2].parent / 'shared' / 'datasets'
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

