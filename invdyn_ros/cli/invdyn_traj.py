"""invdyn_traj: annotate a planned trajectory offline with the learned feedforward (point efforts).

    invdyn_traj INPUT --checkpoint PREFIX --config node_params.yaml -o OUT.csv
                [--topic /trajectory] [--message K] [--rate HZ] [--max-std 3.0]
                [--max-point-dt S]

INPUT is a CSV trajectory (columns ``time`` (s, time_from_start), ``q_<joint>`` for every joint,
optionally ``qd_<joint>`` and ``qdd_<joint>`` for all of them) or a rosbag2 bag (folder, .db3 or
.mcap) holding ``trajectory_msgs/msg/JointTrajectory`` messages on ``--topic`` (``--message K``:
the K-th, 0-based). The checkpoint (``<PREFIX>.<network>.pt``, what ``invdyn_node`` writes at its
``checkpoint_path``) and the node's parameter file define the networks; the resampling rate is
``--rate``, else the config's ``rate_hz``. Efforts are computed exactly as the node's
``~/trajectory_out`` does (:mod:`invdyn_ros.pipeline.trajectory_feedforward`) except that offline
there is no readiness and no identifier history: with two networks the first (``model``) is used for
every joint.

Writes OUT (CSV): ``time``, the input's ``q_`` / ``qd_`` / ``qdd_`` columns (a bag's velocities /
accelerations when it has them), ``effort_<joint>`` for every joint of the trajectory and
``outside`` (1: outside the trained region, effort zero); with ``--max-point-dt`` the rows of
the points inserted on the trajectory's spline are among them (the node's
``trajectory_max_point_dt``). Prints a one-line summary. Exit status:
0; 2 on a user error (missing file, bad CSV, missing checkpoint, joints missing), one line on
stderr. Pure Python: needs no ROS installation.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from invdyn_ros.atomic import atomic_write_text
from invdyn_ros.errors import InvdynError

EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED = 0, 2, 130


class UserError(InvdynError):
    """A bad input the user can fix (one line on stderr, exit 2)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='invdyn_traj',
        description='Fill the effort of every point of a planned trajectory with the learned '
                    'feedforward (for joint_trajectory_controller with an effort interface).')
    p.add_argument('input', help='trajectory CSV, or a rosbag2 bag with JointTrajectory messages')
    p.add_argument('--checkpoint', required=True,
                   help='checkpoint prefix (files <prefix>.<network>.pt), the node\'s '
                        'checkpoint_path')
    p.add_argument('--config', required=True, help='node parameter YAML (joint_names, networks)')
    p.add_argument('--output', '-o', required=True, help='annotated trajectory CSV to write')
    p.add_argument('--topic', default='/trajectory',
                   help='JointTrajectory topic of a bag (default %(default)s)')
    p.add_argument('--message', type=int, default=0,
                   help='which trajectory of the bag topic, 0-based (default %(default)s)')
    p.add_argument('--rate', type=float, default=None,
                   help='resampling rate (Hz) = the rate the networks were trained at '
                        '(default: the config\'s rate_hz)')
    p.add_argument('--max-std', type=float, default=None,
                   help='trained-region bound in input-scaler standard deviations '
                        '(default: trajectory_feedforward.DEFAULT_MAX_STD)')
    p.add_argument('--max-point-dt', type=float, default=0.0,
                   help='insert points on the trajectory\'s spline where points are further '
                        'apart than this (s), as the node\'s trajectory_max_point_dt '
                        '(default 0: the points as given)')
    return p


def read_csv(path: Path) -> dict[str, Any]:
    """``annotate_trajectory``'s arguments from a CSV (module docstring)."""
    try:
        with open(path, newline='') as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise UserError(f'{path}: {exc.strerror or exc}') from None
    if len(rows) < 2:
        raise UserError(f'{path}: needs a header and at least one row')
    header = [h.strip() for h in rows[0]]
    if 'time' not in header:
        raise UserError(f'{path}: no "time" column')
    joints = [h[2:] for h in header if h.startswith('q_')]
    if not joints:
        raise UserError(f'{path}: no q_<joint> columns')
    try:
        data = np.array([[float(x) for x in r] for r in rows[1:] if r], dtype=np.float64)
    except ValueError as exc:
        raise UserError(f'{path}: not a number: {exc}') from None
    if data.ndim != 2 or data.shape[1] != len(header):
        raise UserError(f'{path}: every row needs {len(header)} values')
    col = {h: data[:, i] for i, h in enumerate(header)}

    def block(prefix: str) -> np.ndarray | None:
        have = [f'{prefix}{j}' in col for j in joints]
        if not any(have):
            return None
        if not all(have):
            raise UserError(f'{path}: {prefix}<joint> columns must be given for all joints or none')
        return np.column_stack([col[f'{prefix}{j}'] for j in joints])

    return {'joint_names': joints, 'times': col['time'], 'positions': block('q_'),
            'velocities': block('qd_'), 'accelerations': block('qdd_')}


def read_bag(path: Path, topic: str, index: int) -> dict[str, Any]:
    from invdyn_ros.offline.bag import BagReader
    from invdyn_ros.ros.trajectory_msgs_io import trajectory_arrays

    with BagReader(path) as bag:
        for k, (_, msg) in enumerate(bag.messages(topic, 'trajectory_msgs/msg/JointTrajectory')):
            if k == index:
                return trajectory_arrays(msg)
    raise UserError(f'{path}: topic {topic} has no trajectory number {index} (0-based)')


def write_csv(path: Path, traj: dict[str, Any], res: Any) -> None:
    names = list(res.joint_names)
    cols: list[tuple[str, np.ndarray]] = [('time', res.times)]
    if res.points is not None:                          # points were inserted: all of them
        traj = dict(zip(('positions', 'velocities', 'accelerations'), res.points[:3]))
    for key, prefix in (('positions', 'q_'), ('velocities', 'qd_'), ('accelerations', 'qdd_')):
        if traj.get(key) is not None:
            cols += [(f'{prefix}{j}', traj[key][:, i]) for i, j in enumerate(names)]
    cols += [(f'effort_{j}', res.efforts[:, i]) for i, j in enumerate(names)]
    cols.append(('outside', res.outside.astype(int)))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator='\n')
    w.writerow([c for c, _ in cols])
    for i in range(len(res.times)):
        w.writerow([repr(float(v[i])) if v.dtype.kind == 'f' else int(v[i]) for _, v in cols])
    atomic_write_text(path, buf.getvalue())


def run(args: argparse.Namespace) -> int:
    from invdyn_ros.cli.invdyn_eval import load_params
    from invdyn_ros.pipeline.pipeline import (Pipeline, PipelineConfig, checkpoint_files,
                                              make_trainer)
    from invdyn_ros.pipeline.trajectory_feedforward import DEFAULT_MAX_STD, annotate_trajectory

    params = load_params(args.config)
    config = PipelineConfig.from_params(params)
    files = checkpoint_files(config, args.checkpoint)
    missing = [f for f in files.values() if not os.path.isfile(f)]
    if missing:
        raise UserError(f'checkpoint file(s) {missing} not found (--checkpoint is the prefix '
                        'the node writes <prefix>.<network>.pt to)')
    src = Path(args.input).expanduser()
    if not src.exists():
        raise UserError(f'{src}: no such file or directory')
    traj = read_csv(src) if src.is_file() and src.suffix.lower() == '.csv' else \
        read_bag(src, args.topic, args.message)
    start = time.perf_counter()
    pipeline = Pipeline(config, make_trainer(config, 'inline', checkpoint=args.checkpoint))
    try:
        res = annotate_trajectory(pipeline, traj['joint_names'], traj['times'],
                                  traj['positions'], traj.get('velocities'),
                                  traj.get('accelerations'), traj.get('efforts'),
                                  rate_hz=args.rate, require_ready=False,
                                  max_std=DEFAULT_MAX_STD if args.max_std is None
                                  else args.max_std, max_point_dt=args.max_point_dt)
    finally:
        pipeline.close()
    if not res.annotated:
        raise UserError(f'not annotated: {res.reason} (pass --rate)')
    if res.warning:
        print(f'invdyn_traj: warning: {res.warning}', file=sys.stderr)
    write_csv(Path(args.output).expanduser(), traj, res)
    added = f' ({res.inserted} inserted)' if res.inserted else ''
    print(f'invdyn_traj: {len(res.times)} points{added}, {len(res.joint_names)} joints, rate '
          f'{res.rate_hz:g} Hz, {res.n_outside} outside the trained region, '
          f'{time.perf_counter() - start:.2f} s -> {args.output}')
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return run(args)
    except (InvdynError, OSError) as err:   # TrajectoryError is an InvdynError
        print(f'invdyn_traj: error: {err}', file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print('invdyn_traj: interrupted', file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == '__main__':
    sys.exit(main())
