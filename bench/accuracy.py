#!/usr/bin/env python3
"""Accuracy on the real-robot datasets: every model, per-joint nMSE, both protocols, via invdyn_eval.

Exactly what a user gets: each dataset is written as a rosbag2 bag of ``sensor_msgs/JointState``
(``invdyn_ros.offline.bag.write_joint_states``, trajectories one after another with the 1 s gaps of the
dataset loader's time axis, so the estimator resets between them as it would on a robot that stopped
publishing) into a temporary folder, and evaluated by the ``invdyn_eval`` command line
(``invdyn_ros.cli.invdyn_eval.main``, in process) with a parameter file (``--config``) holding the
settings below. Its metrics.json is the source of every number here.

Datasets and splits (``--datasets``):

- ``kuka``: KUKA-I, Huang et al. 2024's split: trajectories 1-8 train (16,052 samples), 9-10 test
  (4,016). ``--train-fraction`` is set so that ``floor(fraction * 20,068) = 16,052``: the split
  falls exactly on the boundary of trajectories 8 and 9.
- ``baxter``, ``ur10``: the first 80 % of the samples (in time) train, the rest test.

Protocols (``--protocols``; see :mod:`invdyn_ros.offline.evaluation`): ``split`` (stream the training part
with learning on, then ``--epochs`` passes over the replay buffer, then the test part with learning
off, scored) and ``prequential`` (every sample predicted before it is learned, all scored).

Models (``--models``): lstm, gru, mlp, va_sta_reslstm, gp, naive, dual. One ``invdyn_eval`` run per
(dataset, protocol, model), protocols outermost (split first), then datasets, then models in
``RUN_ORDER`` (naive, lstm, gru, dual, mlp, gp, va_sta_reslstm), so a budget can stop between runs,
cutting the least important ones, and partial results are kept; every
run scores the samples where that model had a prediction (the networks skip the first
``window - 1`` samples after each estimator reset; gp and naive do not, a difference of < 1 % of
the scored samples).

nMSE: per joint, the MSE of the torques standardized with the mean/std of the *filtered* torques
of the training part, against the *filtered* measured torque (the pipeline's label; the same
Butterworth filter on every channel). Huang et al. score against the raw measured torque: on
KUKA-I the raw-vs-filtered difference (sensor noise) adds ~0.01-0.02 to every model's nMSE (see
bench/results/kuka_core.txt for both columns with the offline KUKA benchmark).

Settings (``common.DATASET_PARAMS``, node parameter names): Butterworth order 2 at 10 Hz (these sets
are 100-125 Hz; the node's default 30 Hz is for 500 Hz-1 kHz arms), Adam learning rate 1e-2, 20
extra epochs (both as chosen for bench/kuka_core.py on a validation split inside KUKA trajectories
1-8), everything else the node's defaults (window 10, batch 128, 2 x 64 units, buffer 20,000, 0.1
updates per sample online, dual identifier window 200, hysteresis 0.1). GP: 1,000 training points
(hyperparameters on 300), refit every 500 samples in prequential. Seed 0.

Budget: ``--budget-min`` (default 25): a run is not started once the elapsed time is above it;
what was not run is listed. Results are saved after every run (``bench/results/accuracy.json``) and
``--resume`` skips runs already there with the same settings.

Usage::

    python bench/accuracy.py                                   # everything within 25 min
    python bench/accuracy.py --datasets kuka --protocols split --models lstm,gru,naive
    python bench/accuracy.py --budget-min 120 --resume         # continue a cut-off run
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the checkout, not an installed copy

import torch  # noqa: E402
import yaml  # noqa: E402

from bench.common import (DATASET_PARAMS, Recorder, format_machine, format_table,  # noqa: E402
                          machine_info, require_datasets_dir, results_dir, save_results)

#: Huang et al. 2024, Table 4: average nMSE over the 7 joints on KUKA-I (trajectories 9-10).
HUANG_TABLE4 = {'lstm': 0.1283, 'gru': 0.0613, 'rnn': 0.1810, 'mlp': 0.1281, 'transformer': 0.1035,
                'va_sta_reslstm': 0.0489}
DATASETS = ('kuka', 'baxter', 'ur10')
MODELS = ('lstm', 'gru', 'mlp', 'va_sta_reslstm', 'gp', 'naive', 'dual')
PROTOCOLS = ('split', 'prequential')
#: Execution order (most important and cheapest first, so a budget cuts the least useful runs).
RUN_ORDER = ('naive', 'lstm', 'gru', 'dual', 'mlp', 'gp', 'va_sta_reslstm')
KUKA_TRAIN_SAMPLES = 16052
DEFAULT_EPOCHS = 20


def load_dataset(name: str, root: Path):
    from invdyn_ros.offline.datasets import load_baxter, load_kuka, load_ur10

    return {'kuka': load_kuka, 'baxter': load_baxter, 'ur10': load_ur10}[name](root)


def train_fraction_for(name: str, n_samples: int) -> float:
    """KUKA: the fraction whose floor lands on the trajectory 8/9 boundary; others 0.8."""
    if name != 'kuka':
        return 0.8
    f = (KUKA_TRAIN_SAMPLES + 0.5) / n_samples
    if math.floor(f * n_samples) != KUKA_TRAIN_SAMPLES:
        raise RuntimeError('cannot place the KUKA split on the trajectory boundary')
    return f


def run_one(bag: Path, out_dir: Path, config: Path, model: str, protocol: str,
            train_fraction: float, epochs: int, seed: int) -> tuple[dict[str, Any], str, float]:
    """One ``invdyn_eval`` run in process: (metrics.json, its stdout, wall seconds)."""
    from invdyn_ros.cli import invdyn_eval

    argv = [str(bag), '--models', model, '--protocol', protocol, '--train-fraction',
            repr(train_fraction), '--epochs', str(epochs), '--config', str(config), '--seed',
            str(seed), '--no-plots', '--output', str(out_dir)]
    buf = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(buf):
        rc = invdyn_eval.main(argv)
    wall = time.perf_counter() - t0
    if rc != 0:
        raise RuntimeError(f'invdyn_eval {" ".join(argv)} exited {rc}')
    return json.loads((out_dir / 'metrics.json').read_text()), buf.getvalue(), wall


def key_of(dataset: str, protocol: str, model: str) -> str:
    return f'{dataset}/{protocol}/{model}'


def parse_list(text: str, allowed: tuple[str, ...], what: str,
               p: argparse.ArgumentParser) -> list[str]:
    items = [x.strip() for x in text.split(',') if x.strip()]
    bad = [x for x in items if x not in allowed]
    if bad or not items:
        p.error(f'--{what}: unknown {bad}; choose from {", ".join(allowed)}')
    return items


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--datasets', default=','.join(DATASETS))
    p.add_argument('--models', default=','.join(MODELS))
    p.add_argument('--protocols', default=','.join(PROTOCOLS))
    p.add_argument('--epochs', type=int, default=DEFAULT_EPOCHS,
                   help='split: extra passes over the replay buffer (default %(default)s)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--budget-min', type=float, default=25.0,
                   help='do not start a run after this many minutes (default %(default)s)')
    p.add_argument('--threads', type=int, default=1, help='torch threads (default 1)')
    p.add_argument('--data-dir', metavar='DIR', help='the shared datasets folder (default: auto)')
    p.add_argument('--resume', action='store_true',
                   help='keep the runs of bench/results/accuracy.json made with the same settings')
    p.add_argument('--no-save', action='store_true')
    args = p.parse_args(argv)
    args.dataset_list = parse_list(args.datasets, DATASETS, 'datasets', p)
    args.model_list = parse_list(args.models, MODELS, 'models', p)
    args.protocol_list = parse_list(args.protocols, PROTOCOLS, 'protocols', p)
    if args.epochs < 0 or args.threads < 1:
        p.error('--epochs must be >= 0, --threads >= 1')
    return args


def summarize(metrics: dict[str, Any], wall: float) -> dict[str, Any]:
    r = metrics['results'][0]
    return {'nmse': r['nmse'], 'nmse_mean': r['nmse_mean'], 'train_seconds': r['train_seconds'],
            'predict_seconds': r['predict_seconds'], 'realtime_factor': r['realtime_factor'],
            'scored_samples': r['scored_samples'], 'train_samples': metrics['train_samples'],
            'test_samples': metrics['test_samples'], 'wall_seconds': wall,
            'joint_names': metrics['joint_names'], 'details': r.get('details', {})}


def tables(runs: dict[str, Any], datasets: list[str], protocols: list[str],
           models: list[str]) -> list[str]:
    """Per (dataset, protocol): per-joint nMSE rows; then the average-nMSE overview."""
    lines = []
    for ds in datasets:
        for proto in protocols:
            done = [m for m in models if key_of(ds, proto, m) in runs]
            if not done:
                continue
            first = runs[key_of(ds, proto, done[0])]
            n = len(first['nmse'])
            rows = []
            for m in done:
                r = runs[key_of(ds, proto, m)]
                row = [m, *r['nmse'], r['nmse_mean']]
                if ds == 'kuka':
                    row.append(HUANG_TABLE4.get(m))
                row += [f"{r['train_seconds']:.0f}",
                        f"{r['realtime_factor']:.0f}" if r['realtime_factor'] else None]
                rows.append(row)
            header = ['model', *[f'j{j + 1}' for j in range(n)], 'avg']
            if ds == 'kuka':
                header.append('Huang T4 avg')
            header += ['train s', 'x realtime']
            lines.append('')
            lines.append(f'{ds} / {proto}: nMSE per joint ({first["train_samples"]} training '
                         f'samples, {first["scored_samples"]} scored)')
            lines.append(format_table(header, rows))
    cols = [(ds, proto) for ds in datasets for proto in protocols]
    rows = []
    for m in models:
        vals = [runs.get(key_of(ds, proto, m), {}).get('nmse_mean') for ds, proto in cols]
        if any(v is not None for v in vals):
            rows.append([m, *vals, HUANG_TABLE4.get(m) if 'kuka' in datasets else None])
    for extra in ('rnn', 'transformer'):
        if 'kuka' in datasets:
            rows.append([f'({extra}, Huang)', *([None] * len(cols)), HUANG_TABLE4[extra]])
    lines.append('')
    lines.append('average nMSE over joints (standardized with the training part\'s filtered torque '
                 'mean/std, vs the filtered measured torque)')
    lines.append(format_table(['model', *[f'{ds} {proto}' for ds, proto in cols],
                               'Huang T4 (KUKA)'], rows))
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from invdyn_ros.offline.bag import write_joint_states

    out = Recorder()
    info = machine_info()
    out('Accuracy of every model on the real-robot datasets, via invdyn_eval')
    out(format_machine(info))
    out('command: python bench/accuracy.py ' + ' '.join(argv if argv is not None
                                                        else sys.argv[1:]))
    root = require_datasets_dir(args.data_dir)
    params = dict(DATASET_PARAMS)
    settings = {'params': params, 'epochs': args.epochs, 'seed': args.seed}
    out(f'invdyn_eval settings: --epochs {args.epochs} --seed {args.seed} --config with {params} '
        f'(other parameters: the node defaults)')
    json_path = results_dir() / 'accuracy.json'
    runs: dict[str, Any] = {}
    if args.resume and json_path.is_file():
        old = json.loads(json_path.read_text())
        if old.get('settings') == settings:
            runs = old.get('runs', {})
            out(f'resumed {len(runs)} runs from {json_path}')
        else:
            out(f'not resuming: {json_path} was made with other settings')
    skipped: list[str] = []
    t_start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix='invdyn_accuracy_'))
    try:
        config = tmp / 'params.yaml'
        config.write_text(yaml.safe_dump({'invdyn_node': {'ros__parameters': params}}))
        bags, fracs = {}, {}
        for ds in args.dataset_list:
            rec = load_dataset(ds, root)
            bags[ds] = tmp / f'{ds}_bag'
            write_joint_states(bags[ds], rec)
            fracs[ds] = frac = train_fraction_for(ds, len(rec.t))
            out(f'{ds}: {len(rec.t)} samples, {len(rec.segments)} trajectories, '
                f'{rec.rate_hz:g} Hz, train fraction {frac:.6f} -> '
                f'{math.floor(frac * len(rec.t))} training samples')
        # most important first: the split protocol (KUKA = Huang's table), the cheap and the
        # headline models before the slow ones
        order = [m for m in RUN_ORDER if m in args.model_list]
        for proto in args.protocol_list:
            for ds in args.dataset_list:
                for m in order:
                    key = key_of(ds, proto, m)
                    if key in runs:
                        continue
                    elapsed = (time.perf_counter() - t_start) / 60.0
                    if elapsed > args.budget_min:
                        skipped.append(key)
                        continue
                    metrics, _, wall = run_one(bags[ds], tmp / key.replace('/', '_'), config, m,
                                               proto, fracs[ds], args.epochs, args.seed)
                    runs[key] = summarize(metrics, wall)
                    r = runs[key]
                    out(f'  {key}: avg nMSE {r["nmse_mean"]:.4f} (train {r["train_seconds"]:.0f} s, '
                        f'run {wall:.0f} s, load {machine_info()["load_average_1_5_15min"][0]})')
                    if not args.no_save:
                        json_path.write_text(json.dumps(
                            {'machine': info, 'settings': settings, 'huang_table4': HUANG_TABLE4,
                             'runs': runs}, indent=1, allow_nan=False) + '\n')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for line in tables(runs, args.dataset_list, args.protocol_list, args.model_list):
        out(line)
    out('')
    out('Huang et al. 2024 Table 4 (KUKA-I, avg nMSE vs the raw measured torque): ' + ', '.join(
        f'{k} {v:.4f}' for k, v in HUANG_TABLE4.items()))
    if skipped:
        out(f'NOT RUN (budget of {args.budget_min:g} min spent): {", ".join(skipped)}')
    out(f'total {(time.perf_counter() - t_start) / 60:.1f} min; load average now '
        f'{machine_info()["load_average_1_5_15min"]}')
    if not args.no_save:
        data = {'machine': info, 'settings': settings, 'huang_table4': HUANG_TABLE4, 'runs': runs,
                'not_run': skipped, 'argv': argv if argv is not None else sys.argv[1:]}
        for p in save_results('accuracy', out.text, data):
            print(f'wrote {p}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
