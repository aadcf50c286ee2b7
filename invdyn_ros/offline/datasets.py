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
  :func:`save_csv`, :func:`save_npz`; the column names are in
  :mod:`invdyn_ros.offline.column_files`).

The KUKA-I split of Huang et al. 2024 (trajectories 1-8 train, 9-10 test) is :func:`kuka_split`.

The code is in three modules, every public name re-exported here:
:mod:`invdyn_ros.offline.recording` (the :class:`Recording` type, :func:`make_time_axis`),
:mod:`invdyn_ros.offline.mat_datasets` (the ``.mat`` readers, :func:`find_datasets_dir`,
:func:`kuka_split`) and :mod:`invdyn_ros.offline.column_files` (CSV / NPZ).
"""
from __future__ import annotations

from invdyn_ros.offline.column_files import load_csv, load_npz, save_csv, save_npz
from invdyn_ros.offline.mat_datasets import (BAXTER_JOINTS, DATASET_FOLDERS,  # noqa: F401
                                             KUKA_JOINTS, MAT_LAYOUTS, UR10_JOINTS,
                                             find_datasets_dir, kuka_split, load_baxter, load_kuka,
                                             load_mat, load_ur10)
from invdyn_ros.offline.recording import SEGMENT_GAP_S, Recording, make_time_axis

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
