"""invdyn_bag: convert recorded joint data (.mat / CSV / NPZ) into a rosbag2 bag of JointStates.

    invdyn_bag INPUT -o OUT_BAG [--format kuka|baxter|ur10|csv|npz|auto] [--joints a,b,c]
               [--rate HZ] [--storage sqlite3|mcap] [--topic /joint_states]
               [--trajectories 1,2] [--start-time-ns NS] [--rosbag-version 8|9] [--force]

Stamps: ``header.stamp`` (and the log time) of sample t is ``--start-time-ns + t``; by default the
recording's own time where it has one (a bag, or a CSV time column in epoch seconds), else
1.7e9 s (2023-11-14), never 0 (ROS reads a zero stamp as unset and invdyn_node rejects it).
Format: rosbag2 version 8 by default, read by ``ros2 bag`` of Humble, Iron, Jazzy and newer;
``--rosbag-version 9`` for Jazzy and newer only.

The bag can be replayed with ``invdyn_replay`` or ``ros2 bag play`` to feed the live node exactly
what a real arm would have published. Exit status: 0 on success, 2 on a user error (unreadable
input, existing output without --force, bad option), with one line on stderr and no traceback.
Pure Python (rosbags): needs no ROS installation.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Sequence

from invdyn_ros.errors import BagError, DatasetError
from invdyn_ros.offline import bag as bagmod
from invdyn_ros.offline import datasets

FORMATS = ('auto', 'kuka', 'baxter', 'ur10', 'mat', 'csv', 'npz')
EXIT_OK, EXIT_USAGE = 0, 2


class UserError(Exception):
    """A problem with the user's input or options: reported in one line, exit 2."""


def _csv_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(',') if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='invdyn_bag',
        description='Convert recorded joint data into a rosbag2 bag of sensor_msgs/JointState.',
        epilog='CSV/NPZ columns: time (optional), q_<joint>, qd_<joint>, qdd_<joint>, tau_<joint>, '
               'segment (optional). See invdyn_ros.offline.datasets.')
    p.add_argument('input', help='.mat file (or dataset folder with --format kuka|baxter|ur10), '
                                 '.csv or .npz file')
    p.add_argument('-o', '--output', required=True, help='bag directory to create')
    p.add_argument('--format', choices=FORMATS, default='auto',
                   help='input layout; auto: by file suffix and .mat variable names')
    p.add_argument('--joints', type=_csv_list, default=None,
                   help='comma-separated joint names: renames the joints of a .mat dataset (same '
                        'count), selects/reorders the joints of CSV/NPZ')
    p.add_argument('--rate', type=float, default=None,
                   help='sample rate [Hz]: overrides the dataset rate; required for CSV/NPZ '
                        'without a time column')
    p.add_argument('--storage', choices=bagmod.STORAGES, default='sqlite3')
    p.add_argument('--topic', default='/joint_states')
    p.add_argument('--trajectories', type=str, default=None,
                   help='comma-separated 1-based trajectory numbers to keep (e.g. 9,10)')
    p.add_argument('--start-time-ns', type=int, default=None,
                   help='header stamp of t = 0 in nanoseconds (default: the recording\'s own '
                        'epoch time if it has one, else %d = 1.7e9 s; a first stamp of 0 is '
                        'refused)' % bagmod.DEFAULT_START_TIME_NS)
    p.add_argument('--rosbag-version', type=int, choices=bagmod.ROSBAG_VERSIONS,
                   default=bagmod.DEFAULT_ROSBAG_VERSION,
                   help='rosbag2 format version: 8 (default) is read by ros2 bag of Humble and '
                        'newer, 9 only by Jazzy and newer')
    p.add_argument('--force', action='store_true',
                   help='replace OUTPUT if it is an existing bag (or an empty directory)')
    return p


def _format_of(path: Path, fmt: str) -> str:
    if fmt != 'auto':
        return fmt
    suffix = path.suffix.lower()
    if suffix == '.mat':
        return 'mat'
    if suffix in ('.csv', '.npz'):
        return suffix[1:]
    raise UserError(f'{path}: cannot tell the format from the suffix {suffix!r}; use --format')


def load_input(args: argparse.Namespace) -> datasets.Recording:
    """The Recording the options describe (trajectory selection and joint names applied)."""
    path = Path(args.input).expanduser()
    if not path.exists():
        raise UserError(f'{path}: no such file or directory')
    fmt = _format_of(path, args.format)
    if args.rate is not None and not (args.rate > 0 and args.rate != float('inf')):
        raise UserError(f'--rate must be a positive number, got {args.rate}')
    if fmt in ('kuka', 'baxter', 'ur10', 'mat'):
        loader = {'kuka': datasets.load_kuka, 'baxter': datasets.load_baxter,
                  'ur10': datasets.load_ur10, 'mat': datasets.load_mat}[fmt]
        return loader(path, trajectories=args.trajectories, joint_names=args.joints,
                      rate_hz=args.rate)
    loader = datasets.load_csv if fmt == 'csv' else datasets.load_npz
    rec = loader(path, joint_names=args.joints, rate_hz=args.rate)
    if args.trajectories is not None:
        try:
            numbers = [int(x) for x in _csv_list(args.trajectories)]
        except ValueError:
            raise UserError(f'--trajectories must be comma-separated integers, '
                            f'got {args.trajectories!r}') from None
        bad = [k for k in numbers if not 1 <= k <= len(rec.segments)]
        if bad or not numbers:
            raise UserError(f'--trajectories {bad or numbers}: the input has segments '
                            f'1..{len(rec.segments)}')
        rec = rec.select_segments([k - 1 for k in numbers])
    return rec


def _prepare_output(out: Path, force: bool) -> None:
    """Refuse to overwrite unless --force, and then only a bag or an empty directory.

    --force never deletes a directory that does not look like a bag: a typo in -o must not
    remove someone's data.
    """
    if not out.exists() and not out.is_symlink():
        return
    if not force:
        raise UserError(f'{out}: exists already (use --force to replace a bag)')
    if out.is_dir() and not out.is_symlink():
        entries = list(out.iterdir())
        if entries and not (out / 'metadata.yaml').is_file():
            raise UserError(f'{out}: exists and is not a rosbag2 bag; not removing it')
        shutil.rmtree(out)
        return
    raise UserError(f'{out}: exists and is not a directory; not replacing it')


def run(args: argparse.Namespace) -> str:
    """Do the conversion; return the summary line."""
    rec = load_input(args)
    out = Path(args.output).expanduser()
    _prepare_output(out, args.force)
    info = bagmod.write_joint_states(out, rec, topic=args.topic, storage=args.storage,
                                     start_time_ns=args.start_time_ns,
                                     version=args.rosbag_version)
    count = info.topics[args.topic].count
    return (f'wrote {count} JointState messages ({rec.n_joints} joints, {len(rec.segments)} '
            f'segments, {info.duration_s:.2f} s) on {args.topic} to {out} ({args.storage}, '
            f'rosbag2 version {args.rosbag_version})')


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed usage and the error (or --help)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    try:
        print(run(args))
    except (UserError, DatasetError, BagError) as err:
        print(f'invdyn_bag: error: {err}', file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:  # permissions, disk full, ...
        print(f'invdyn_bag: error: {err}', file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


if __name__ == '__main__':
    sys.exit(main())
