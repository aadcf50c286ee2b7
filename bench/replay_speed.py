#!/usr/bin/env python3
"""Replay speed of ``invdyn_eval``: inference-only throughput as a multiple of real time (target >= 100x).

What a user runs, end to end: the KUKA-I recording (20,068 samples at 100 Hz, 10 trajectories,
~204 s of stream) is written as a rosbag2 bag of ``sensor_msgs/JointState`` with
``invdyn_ros.offline.bag.write_joint_states`` into a temporary folder, and the installed console script
``invdyn_eval`` (or ``python -m invdyn_ros.cli.invdyn_eval`` when the script is not on PATH) is run
on it as a subprocess, with ``--no-plots``.

Learning off: ``invdyn_eval`` has no switch for that, but ``--protocol split`` streams the part
after ``--train-fraction`` with the trainer gated off (the predictors keep their weights; see
:mod:`invdyn_ros.offline.evaluation`). With ``--train-fraction 0.01 --epochs 0`` learning runs only over the
first 1 % (200 samples, a handful of Adam steps) and the other 99 % is an inference-only replay.
``invdyn_eval`` replays that part with ``Pipeline.process_batch``: the estimator, the identifier
and the readiness score per sample as the node runs them, the networks batched over the stream
(outputs identical to per-sample processing; the node itself runs the O(1) streaming predictors per
sample). Inference speed does not depend on the weights, so the untrained networks are timed as
well as trained ones would be.

Numbers:

- ``x realtime (predict)`` = ``test_stream_seconds / predict_seconds`` from metrics.json
  (``realtime_factor``): the replayed stream time of the learning-off part over the wall time of
  that part's replay, per model (one run with every network model).
- ``x realtime (end to end)`` = ``stream_seconds`` (the whole bag) / the wall time of the whole
  ``invdyn_eval`` process (interpreter start, imports, reading the bag, the estimator reference
  pass, the 1 % learning part, the replay, writing metrics.json and predictions.npz), one process
  per model; ``wall_seconds`` of metrics.json (everything except interpreter start and imports) is
  shown too.

torch runs with ``--threads`` threads in the subprocess (``OMP_NUM_THREADS``; default 1, as the
node's control loop). The machine is shared: the load average is printed beside every number.

Usage::

    python bench/replay_speed.py                    # all network models + end-to-end lstm / dual
    python bench/replay_speed.py --models lstm --end-to-end lstm --no-save
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the checkout, not an installed copy

from bench.common import (REPO, Recorder, format_machine, format_table, machine_info,  # noqa: E402
                          require_datasets_dir, save_results)

TARGET_X = 100.0
NETWORKS = ('lstm', 'gru', 'mlp', 'va_sta_reslstm', 'dual')


def eval_command() -> list[str]:
    """The installed ``invdyn_eval`` next to this interpreter, else the module form."""
    script = Path(sys.executable).parent / 'invdyn_eval'
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    found = shutil.which('invdyn_eval')
    return [found] if found else [sys.executable, '-m', 'invdyn_ros.cli.invdyn_eval']


def run_eval(bag: Path, out_dir: Path, models: str, train_fraction: float, threads: int,
             extra: list[str] | None = None) -> tuple[dict[str, Any], float, list[float]]:
    """Run invdyn_eval once; (metrics.json, process wall seconds, load average before)."""
    env = dict(os.environ)
    for var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
        env[var] = str(threads)
    env['PYTHONPATH'] = str(REPO) + os.pathsep + env.get('PYTHONPATH', '')   # this checkout
    cmd = eval_command() + [str(bag), '--models', models, '--protocol', 'split',
                            '--train-fraction', str(train_fraction), '--epochs', '0',
                            '--no-plots', '--output', str(out_dir)] + (extra or [])
    load = [round(v, 2) for v in os.getloadavg()]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f'invdyn_eval failed ({proc.returncode}): {" ".join(cmd)}\n{proc.stderr}')
    return json.loads((out_dir / 'metrics.json').read_text()), wall, load


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', default=','.join(NETWORKS),
                   help='models timed in one run (default %(default)s)')
    p.add_argument('--end-to-end', default='lstm,dual',
                   help='models timed end to end, one process each (default %(default)s)')
    p.add_argument('--train-fraction', type=float, default=0.01)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--storage', choices=('sqlite3', 'mcap'), default='sqlite3')
    p.add_argument('--datasets', metavar='DIR')
    p.add_argument('--no-save', action='store_true')
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from invdyn_ros.offline.bag import write_joint_states
    from invdyn_ros.offline.datasets import load_kuka

    out = Recorder()
    info = machine_info()
    out('Replay speed of invdyn_eval (inference only, learning off) on the KUKA-I bag')
    out(format_machine(info))
    out('command: python bench/replay_speed.py ' + ' '.join(argv if argv is not None
                                                            else sys.argv[1:]))
    rec = load_kuka(require_datasets_dir(args.datasets))
    tmp = Path(tempfile.mkdtemp(prefix='invdyn_replay_'))
    results: dict[str, Any] = {}
    try:
        bag = tmp / 'kuka_bag'
        t0 = time.perf_counter()
        write_joint_states(bag, rec, storage=args.storage)
        out(f'bag: {len(rec.t)} JointState messages, {rec.t[-1] - rec.t[0]:.1f} s of stream, '
            f'{args.storage}, written in {time.perf_counter() - t0:.1f} s; invdyn_eval = '
            f'{" ".join(eval_command())}; torch threads {args.threads}; learning on for the first '
            f'{args.train_fraction:.0%} only (--train-fraction {args.train_fraction} --epochs 0)')

        rows = []
        if args.models:
            m, wall, load = run_eval(bag, tmp / 'all', args.models, args.train_fraction,
                                     args.threads)
            results['per_model'] = {'metrics': m, 'process_wall_s': wall, 'load_before': load}
            for r in m['results']:
                rows.append([r['model'], f"{m['test_stream_seconds']:.1f}",
                             f"{r['predict_seconds']:.2f}",
                             f"{1e6 * r['predict_seconds'] / max(m['test_samples'], 1):.0f}",
                             f"{r['realtime_factor']:.0f}" if r['realtime_factor'] else None,
                             'yes' if (r['realtime_factor'] or 0) >= TARGET_X else 'NO', str(load)])
            out()
            out(f'inference-only replay, one invdyn_eval run with --models {args.models} '
                f'({m["test_samples"]} scored samples):')
            out(format_table(['model', 'stream s', 'predict s', 'us/sample', 'x realtime (predict)',
                              f'>= {TARGET_X:.0f}x', 'load before'], rows))

        e2e_rows = []
        results['end_to_end'] = {}
        for model in [x.strip() for x in args.end_to_end.split(',') if x.strip()]:
            m, wall, load = run_eval(bag, tmp / f'e2e_{model}', model, args.train_fraction,
                                     args.threads)
            r = m['results'][0]
            results['end_to_end'][model] = {'metrics': m, 'process_wall_s': wall,
                                            'load_before': load}
            e2e_rows.append([model, f"{m['stream_seconds']:.1f}", f'{wall:.1f}',
                             f"{m['wall_seconds']:.1f}", f"{m['stream_seconds'] / wall:.0f}",
                             f"{r['realtime_factor']:.0f}" if r['realtime_factor'] else None,
                             str(load)])
        if e2e_rows:
            out()
            out('end to end, one invdyn_eval process per model (whole bag; x realtime = stream s / '
                'process wall s):')
            out(format_table(['model', 'stream s', 'process wall s', 'metrics wall_seconds',
                              'x realtime (end to end)', 'x realtime (predict)', 'load before'],
                             e2e_rows))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out(f'load average now {machine_info()["load_average_1_5_15min"]}')
    if not args.no_save:
        for p in save_results('replay_speed', out.text,
                              {'machine': info, 'argv': argv if argv is not None else sys.argv[1:],
                               'target_x_realtime': TARGET_X, 'results': results}):
            print(f'wrote {p}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
