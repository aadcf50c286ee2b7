"""Why is the LSTM not better than the MLP on the real arms? A small experiment grid (issue 14).

Each variant is one :func:`invdyn_ros.offline.evaluation.evaluate` run (the node's own pipeline, split
protocol: learn on the first 80 % of the samples in time, then ``epochs`` extra passes over the
replay buffer, then score the last 20 % with learning off) on UR10 and Baxter from
``../shared/datasets``. Base settings are ``bench/accuracy.py``'s (Butterworth order 2 at 10 Hz,
Adam lr 1e-2, window 10, 2 x 64 units, batch 128) with 10 extra epochs; a variant changes one
thing:

- ``mlp`` / ``lstm`` at seeds 0, 1, 2: how much of the gap is seed variance;
- ``lstm w1``: window 1 (the newest row only, the MLP's input): is the window the problem?
- ``lstm w25``: a longer window;
- ``lstm e0`` / ``lstm e30``: extra passes (one online pass only / 3x more): the schedule;
- ``lstm lr1e-3``: the node's default learning rate;
- ``lstm ema``: ``weight_ema_decay`` 0.999 (prediction with averaged weights);
- ``lstm h32x1``: one layer of 32 units (capacity / overfitting);
- ``lstm 5Hz`` / ``mlp 5Hz``: a 5 Hz cutoff, less q-dot-dot noise in the input. The label goes
  through the same filter, so these two are comparable with each other, not with the 10 Hz rows.

Variants run in order, each on every dataset, results saved after every run
(``bench/results/<save>.json``), ``--resume`` skips what is there; ``--budget-min`` stops between
runs. Prints the average nMSE per variant and dataset, the per-joint nMSE, and machine info::

    INVDYN_DATASETS=../shared/datasets nice -n 10 .venv/bin/python bench/lstm_real_arms.py \\
        [--datasets ur10,baxter] [--variants 'mlp s0,lstm s0,...'] [--budget-min 40] [--resume]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from common import (DATASET_PARAMS, Recorder, format_machine, format_table, machine_info,
                    require_datasets_dir, results_dir, save_results)
from invdyn_ros.offline.datasets import load_baxter, load_ur10
from invdyn_ros.offline.evaluation import evaluate, jsonable

BASE_EPOCHS = 10

#: name -> (model, parameter overrides, epochs, seed)
VARIANTS: dict[str, tuple[str, dict, int, int]] = {
    'mlp s0': ('mlp', {}, BASE_EPOCHS, 0),
    'lstm s0': ('lstm', {}, BASE_EPOCHS, 0),
    'lstm w1': ('lstm', {'window': 1}, BASE_EPOCHS, 0),
    'lstm e30': ('lstm', {}, 30, 0),
    'lstm lr1e-3': ('lstm', {'learning_rate': 1e-3}, BASE_EPOCHS, 0),
    'mlp s1': ('mlp', {}, BASE_EPOCHS, 1),
    'lstm s1': ('lstm', {}, BASE_EPOCHS, 1),
    'lstm 5Hz': ('lstm', {'filter_cutoff_hz': 5.0}, BASE_EPOCHS, 0),
    'mlp 5Hz': ('mlp', {'filter_cutoff_hz': 5.0}, BASE_EPOCHS, 0),
    'lstm e0': ('lstm', {}, 0, 0),
    'lstm ema': ('lstm', {'weight_ema_decay': 0.999}, BASE_EPOCHS, 0),
    'lstm h32x1': ('lstm', {'hidden_size': 32, 'num_layers': 1}, BASE_EPOCHS, 0),
    'lstm w25': ('lstm', {'window': 25}, BASE_EPOCHS, 0),
    'mlp s2': ('mlp', {}, BASE_EPOCHS, 2),
    'lstm s2': ('lstm', {}, BASE_EPOCHS, 2),
}


def load(name: str, data_dir):
    if name == 'ur10':
        return load_ur10(data_dir)
    if name == 'baxter':
        return load_baxter(data_dir)
    raise SystemExit(f'unknown dataset {name!r} (ur10, baxter)')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--datasets', default='ur10,baxter')
    ap.add_argument('--variants', default=','.join(VARIANTS))
    ap.add_argument('--budget-min', type=float, default=60.0)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--resume', action='store_true')
    ap.add_argument('--save', default='lstm_real_arms')
    args = ap.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    data_dir = require_datasets_dir()
    datasets = args.datasets.split(',')
    variants = [v.strip() for v in args.variants.split(',') if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f'unknown variant {v!r}; known: {", ".join(VARIANTS)}')
    path = results_dir() / f'{args.save}.json'
    runs: dict[str, dict] = {}
    if args.resume and path.exists():
        runs = json.loads(path.read_text()).get('runs', {})
    recs = {d: load(d, data_dir) for d in datasets}
    out = Recorder()
    out(format_machine(machine_info()))
    out(f'base settings {DATASET_PARAMS}, {BASE_EPOCHS} extra epochs, split 80/20; '
        f'datasets {datasets}')
    t_start = time.perf_counter()
    skipped = []
    for v in variants:
        model, over, epochs, seed = VARIANTS[v]
        for d in datasets:
            key = f'{d}/{v}'
            if key in runs:
                continue
            if (time.perf_counter() - t_start) / 60.0 > args.budget_min:
                skipped.append(key)
                continue
            t0 = time.perf_counter()
            report = evaluate(recs[d], [model], protocol='split', train_fraction=0.8,
                              params={**DATASET_PARAMS, **over}, seed=seed, epochs=epochs)
            r = report.results[0]
            runs[key] = {'dataset': d, 'variant': v, 'model': model, 'overrides': over,
                         'epochs': epochs, 'seed': seed, 'nmse': list(map(float, r.nmse)),
                         'nmse_mean': float(r.nmse_mean), 'train_seconds': r.train_seconds,
                         'wall_seconds': time.perf_counter() - t0,
                         'load': os.getloadavg()[0],
                         'steps': r.details.get('extra_steps'),
                         'learner': jsonable(r.details.get('learner'))}
            out(f'  {key}: avg nMSE {r.nmse_mean:.4f} (train {r.train_seconds:.0f} s, '
                f'wall {runs[key]["wall_seconds"]:.0f} s, load {runs[key]["load"]:.2f})')
            path.write_text(json.dumps({'machine': machine_info(), 'args': vars(args),
                                        'runs': runs}, indent=1))
    # --- tables
    rows = []
    for v in VARIANTS:
        cells = [runs.get(f'{d}/{v}', {}).get('nmse_mean') for d in datasets]
        if any(c is not None for c in cells):
            rows.append([v] + [c if c is not None else '-' for c in cells])
    out('\naverage nMSE over joints (split 80/20, vs the filtered measured torque)')
    out(format_table(['variant'] + datasets, rows))
    for d in datasets:
        names = recs[d].joint_names
        rows = [[v] + runs[f'{d}/{v}']['nmse'] + [runs[f'{d}/{v}']['nmse_mean'],
                                                   runs[f'{d}/{v}']['train_seconds']]
                for v in VARIANTS if f'{d}/{v}' in runs]
        if not rows:
            continue
        out(f'\n{d}: nMSE per joint')
        out(format_table(['variant'] + [f'j{i + 1}' for i in range(len(names))] +
                         ['avg', 'train s'], rows))
        seeds = {m: [runs[f'{d}/{m} s{s}']['nmse_mean'] for s in range(3)
                     if f'{d}/{m} s{s}' in runs] for m in ('mlp', 'lstm')}
        out(f'{d}: seeds ' + '; '.join(
            f'{m} {np.round(x, 4).tolist()} mean {np.mean(x):.4f}' for m, x in seeds.items()
            if x))
    if skipped:
        out(f'not run (budget): {", ".join(skipped)}')
    out(f'total {(time.perf_counter() - t_start) / 60:.1f} min; load average now '
        f'{[round(x, 2) for x in os.getloadavg()]}')
    save_results(args.save, out.text, {'machine': machine_info(), 'args': vars(args),
                                       'runs': runs})


if __name__ == '__main__':
    main()
