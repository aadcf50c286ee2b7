#!/usr/bin/env python3
"""KUKA-I core benchmark: per-joint nMSE of the project's networks on Huang et al.'s split.

Huang et al. 2024 (Front. Neurorobot. 18:1353879, Table 4) train on KUKA-I trajectories 1-8 and test
on 9-10, and report the per-joint normalized MSE (torques standardized with the *training* mean and
std), averaged over the 7 joints. This script reproduces that protocol with the project's own code
paths, nothing hand-rolled:

1. ``datasets.load_kuka`` / ``kuka_split`` (100 Hz, q, qd, tau; no accelerations).
2. ``estimation.estimate_offline`` *per trajectory* (zero-phase Butterworth, qdd by differentiating
   the filtered velocity): a filter never runs across the boundary of two unrelated trajectories.
3. ``windows.make_windows`` per trajectory (a window never spans two trajectories); the label of a
   window is the (equally filtered) torque of its newest row.
4. ``learner.OnlineLearner`` per network: ``fit_scalers`` on the training windows, ``learn_many`` puts
   every training window into the replay buffer (capacity = the training set, no FIFO part, so the
   reservoir holds all of it; ``updates_per_sample=0`` so loading does not train), then ``epochs``
   times ``ceil(N / batch_size)`` calls of ``OnlineLearner.step()`` - each one Adam update on a batch
   of 128 drawn uniformly from the buffer, with the learner's gradient clipping, plateau decay and
   divergence guard. One "epoch" therefore sees N windows in expectation (drawn with replacement).
5. ``OnlineLearner.predict_many`` on the test windows, ``metrics.nmse`` against the *raw measured*
   test torques (the number comparable with Table 4; the filter removes sensor noise from the
   labels but the test target is what the robot measured) and, as a second column, against the
   filtered torques (the pipeline's own label, which excludes the sensor-noise floor).
6. Seed ensembles (``--members K``): the LSTM and the GRU are each trained K times, member k with
   seed ``seed + k`` (member 0 is the single network of the ``lstm``/``gru`` rows), and the rows
   ``lstm_ens``/``gru_ens`` average the K members' predictions. Averaging independently initialised
   networks cancels part of each one's seed-dependent error (H's seed-to-seed spread was +-0.005 on
   the validation trajectory, comparable with the differences between hyper-parameters).
7. The dual identifier: ``identifier.DualIdentifier`` over the test stream with the trained LSTM and
   GRU (the K-member ensembles when ``--members`` > 1), prequentially as the live node runs it: for each sample the published torque is selected
   with the statistics of the *previous* samples, then the identifier is updated with this sample's
   measured (filtered) torque.

Hyper-parameters (``BENCH_CONFIGS``) were chosen on a validation split *inside* the training
trajectories (``--validate``: train on 1-6 and 8, validate on 7), never on 9-10; see
bench/results/kuka_core.txt for the numbers and the tuning table.

Usage::

    python bench/kuka_core.py                       # all models, the tuned settings, seed 0
    python bench/kuka_core.py --models lstm,gru,dual --epochs 30 --json /tmp/kuka.json
    python bench/kuka_core.py --validate            # the tuning split (trajectory 7 held out)
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))   # the checkout, not an installed copy

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import (format_machine, format_table, machine_info,  # noqa: E402
                          require_datasets_dir)
from invdyn_ros import metrics  # noqa: E402
from invdyn_ros.learning.learner import LearnerConfig, OnlineLearner  # noqa: E402
from invdyn_ros.offline.datasets import Recording, kuka_split, load_kuka  # noqa: E402
from invdyn_ros.stages.estimation import FilterConfig, estimate_offline  # noqa: E402
from invdyn_ros.stages.identifier import DualIdentifier  # noqa: E402
from invdyn_ros.stages.windows import make_windows  # noqa: E402

#: Huang et al. 2024, Table 4: average nMSE over 7 joints on KUKA-I (trajectories 9-10).
HUANG_TABLE4 = {'lstm': 0.1283, 'gru': 0.0613, 'rnn': 0.1810, 'mlp': 0.1281, 'transformer': 0.1035,
                'va_sta_reslstm': 0.0489}
NETWORKS = ('lstm', 'gru', 'mlp', 'va_sta_reslstm')
#: Rows computed from other rows: the seed ensembles (K members each), the dual identifier over
#: lstm(_ens) + gru(_ens), and the plain average of every LSTM and GRU member.
COMBINED = ('lstm_ens', 'gru_ens', 'dual', 'ensemble')
ALL_ROWS = NETWORKS + COMBINED


@dataclass(frozen=True)
class BenchConfig:
    """Per-network training settings (chosen on the validation split, see the module docstring)."""

    model_options: dict
    learning_rate: float
    epochs: int
    weight_decay: float = 0.0


#: Shared settings: window length (samples at 100 Hz) and filter cutoff of the estimator.
WINDOW = 10
CUTOFF_HZ = 10.0
FILTER_ORDER = 2
BENCH_CONFIGS: dict[str, BenchConfig] = {
    'lstm': BenchConfig({'hidden_size': 64, 'num_layers': 2}, 1e-2, 20, weight_decay=1e-4),
    'gru': BenchConfig({'hidden_size': 64, 'num_layers': 2}, 1e-2, 20),
    'mlp': BenchConfig({'hidden_size': 128}, 1e-2, 20),
    'va_sta_reslstm': BenchConfig({'hidden_size': 64, 'num_layers': 2, 'attention_size': 32}, 1e-2, 20),
}
#: Huang et al.'s batch size, also the learner's default.
BATCH_SIZE = 128
#: Plateau patience of the learner's scheduler, in steps (one epoch is ~125 steps here).
PLATEAU_PATIENCE = 200
#: Dual identifier settings: the pipeline's defaults.
DUAL_WINDOW = 200
DUAL_HYSTERESIS = 0.1
#: Seed-ensemble size for the LSTM and the GRU (chosen on the validation split, see kuka_core.txt).
MEMBERS = 3


# ------------------------------------------------------------------------------------------ data
@dataclass
class Split:
    """Windows and labels of one side of the split; rows of all trajectories, never mixed."""

    name: str
    windows: np.ndarray       # (M, L, 3n)
    tau_filtered: np.ndarray  # (M, n) label: filtered torque of each window's newest row
    tau_raw: np.ndarray       # (M, n) the measured torque of the same rows
    segment_lengths: list[int]


def prepare(rec: Recording, window: int, fcfg: FilterConfig) -> Split:
    """Per trajectory: zero-phase filter + differentiate, then windows. Drops each trajectory's first
    ``window - 1`` rows (no full window yet), exactly as a live stream does after a reset."""
    W, Tf, Tr, lengths = [], [], [], []
    for start, stop in rec.segments:
        t = rec.t[start:stop]
        q, qd, qdd, tau = estimate_offline(t, rec.q[start:stop], rec.qd[start:stop] if rec.qd is not None
                                           else None, rec.tau[start:stop], fcfg)
        feats = np.hstack([q, qd, qdd])
        w = make_windows(feats, window)
        W.append(w)
        Tf.append(tau[window - 1:])
        Tr.append(rec.tau[start + window - 1:stop])
        lengths.append(len(w))
    return Split(rec.name, np.concatenate(W), np.concatenate(Tf), np.concatenate(Tr), lengths)


# ------------------------------------------------------------------------------------------ training
def train_network(kind: str, cfg: BenchConfig, train: Split, window: int, seed: int,
                  epochs: int) -> tuple[OnlineLearner, float, dict[str, Any]]:
    """Train one network through OnlineLearner; returns (learner, training seconds, info)."""
    n = train.tau_filtered.shape[1]
    lcfg = LearnerConfig(
        model=kind, model_options=dict(cfg.model_options), window=window, batch_size=BATCH_SIZE,
        buffer_capacity=len(train.windows), recent_capacity=0, recent_fraction=0.0,
        learning_rate=cfg.learning_rate, weight_decay=cfg.weight_decay,
        plateau_patience=PLATEAU_PATIENCE, min_learning_rate=min(1e-5, cfg.learning_rate),
        updates_per_sample=0.0, seed=seed)
    torch.manual_seed(seed)   # dropout and anything else drawing from torch's global generator
    t0 = time.perf_counter()
    learner = OnlineLearner(n, lcfg)
    learner.fit_scalers(train.windows, train.tau_filtered)
    accepted = learner.learn_many(train.windows, train.tau_filtered)
    if accepted != len(train.windows) or learner.stats()['buffer'] != len(train.windows):
        raise RuntimeError(f'{kind}: buffer holds {learner.stats()["buffer"]} of '
                           f'{len(train.windows)} windows')
    steps_per_epoch = math.ceil(len(train.windows) / BATCH_SIZE)
    losses = []
    for _ in range(epochs):
        ep = [v for v in (learner.step() for _ in range(steps_per_epoch)) if v is not None]
        losses.append(float(np.mean(ep)) if ep else float('nan'))
    seconds = time.perf_counter() - t0
    stats = learner.stats()
    info = {'steps': stats['steps'], 'final_lr': stats['lr'], 'rollbacks': stats['rollbacks'],
            'epoch_loss': [round(v, 5) for v in losses],
            'parameters': sum(v.numel() for v in learner.export_weights()['model'].values()),
            'learner_config': lcfg.to_dict()}
    return learner, seconds, info


def run_dual(pred_a: np.ndarray, pred_b: np.ndarray, tau_measured: np.ndarray
             ) -> tuple[np.ndarray, dict[str, Any]]:
    """The dual identifier over a stream, prequentially: select with the past, then update."""
    n = pred_a.shape[1]
    ident = DualIdentifier(n, window=DUAL_WINDOW, hysteresis=DUAL_HYSTERESIS, names=('lstm', 'gru'))
    out = np.empty_like(pred_a)
    active_b = np.zeros(n)
    for k in range(len(pred_a)):
        sel = ident.select(pred_a[k], pred_b[k])
        out[k] = sel.torque
        active_b += sel.active
        ident.update(pred_a[k], pred_b[k], tau_measured[k])
    info = {'switches': int(ident.counters['switches']),
            'fraction_gru_per_joint': np.round(active_b / len(pred_a), 3).tolist()}
    return out, info


# ------------------------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', default=','.join(ALL_ROWS),
                   help=f'comma-separated rows out of {", ".join(ALL_ROWS)} (dual and ensemble '
                        f'train lstm and gru if needed); default: all')
    p.add_argument('--epochs', type=int, default=None,
                   help='epochs for every network (default: the tuned per-network value)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--threads', type=int, default=1,
                   help='torch intra-op threads (default 1: these nets are small, and on a shared '
                        '2-core machine 2 threads measured ~20x slower per epoch than 1)')
    p.add_argument('--json', metavar='OUT', help='also write every number to this JSON file')
    p.add_argument('--datasets', metavar='DIR', help='the shared datasets folder (default: auto)')
    p.add_argument('--window', type=int, default=WINDOW, help=f'window length (default {WINDOW})')
    p.add_argument('--cutoff', type=float, default=CUTOFF_HZ,
                   help=f'Butterworth cutoff [Hz] of the estimator (default {CUTOFF_HZ})')
    p.add_argument('--lr', type=float, default=None, help='learning rate for every network')
    p.add_argument('--velocity-sign-gain', type=float, default=0.0, metavar='G',
                   help='velocity_sign_gain of the lstm / gru networks (default 0: off)')
    p.add_argument('--members', type=int, default=MEMBERS,
                   help=f'seed-ensemble size K of the LSTM and the GRU: member k uses seed + k '
                        f'(default {MEMBERS}; 1 = single networks, no *_ens rows)')
    p.add_argument('--validate', action='store_true',
                   help='tuning mode: train on trajectories 1-6 and 8, evaluate on 7 (never on 9-10)')
    args = p.parse_args(argv)
    rows = [m.strip() for m in args.models.split(',') if m.strip()]
    bad = [m for m in rows if m not in ALL_ROWS]
    if bad or not rows:
        p.error(f'unknown model(s) {bad}; choose from {", ".join(ALL_ROWS)}')
    args.rows = rows
    if args.epochs is not None and args.epochs < 1:
        p.error('--epochs must be >= 1')
    if args.threads < 1 or args.window < 1 or args.members < 1:
        p.error('--threads, --window and --members must be >= 1')
    if args.members == 1:   # the *_ens rows would repeat the single-network rows
        args.rows = [r for r in rows if r not in ('lstm_ens', 'gru_ens')]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    info = machine_info()
    print('KUKA-I core benchmark (Huang et al. 2024 protocol)')
    print(format_machine(info))
    print('command: ' + ' '.join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])))

    rec = load_kuka(require_datasets_dir(args.datasets))
    train_rec, test_rec = kuka_split(rec)
    if args.validate:   # hold trajectory 7 out of the training trajectories; 9-10 are never read
        train_rec, test_rec = (train_rec.select_segments([0, 1, 2, 3, 4, 5, 7], name='kuka[1-6,8]'),
                               train_rec.select_segments([6], name='kuka[7]'))
    fcfg = FilterConfig(order=FILTER_ORDER, cutoff_hz=args.cutoff, rate_hz=rec.rate_hz)
    train = prepare(train_rec, args.window, fcfg)
    test = prepare(test_rec, args.window, fcfg)
    # Huang et al.: standardize with the *training* set's statistics (all training rows, raw).
    train_mean, train_std = train_rec.tau.mean(axis=0), train_rec.tau.std(axis=0)
    split_name = 'validation (train 1-6,8 / validate 7)' if args.validate else 'test (train 1-8 / test 9-10)'
    print(f'split: {split_name}: {len(train.windows)} training windows, {len(test.windows)} '
          f'evaluation windows; window {args.window} samples, Butterworth order {FILTER_ORDER} '
          f'{args.cutoff:g} Hz zero-phase per trajectory, batch {BATCH_SIZE}, seed {args.seed}, '
          f'{args.members} seed member(s) per lstm/gru ensemble')

    needed = [m for m in NETWORKS if m in args.rows]
    if any(r in args.rows for r in COMBINED):
        needed += [m for m in ('lstm', 'gru') if m not in needed]
    combined = [r for r in COMBINED if r in args.rows]
    k_members = args.members if combined else 1   # extra members only feed the combined rows
    preds: dict[str, np.ndarray] = {}
    results: dict[str, dict[str, Any]] = {}
    members: dict[str, list[np.ndarray]] = {}
    member_seconds: dict[str, float] = {}
    for kind in needed:
        base = BENCH_CONFIGS[kind]
        options = dict(base.model_options)
        if args.velocity_sign_gain > 0 and kind in ('lstm', 'gru'):
            options['velocity_sign_gain'] = args.velocity_sign_gain
        cfg = BenchConfig(options, args.lr if args.lr is not None else base.learning_rate,
                          args.epochs if args.epochs is not None else base.epochs, base.weight_decay)
        n_members = k_members if kind in ('lstm', 'gru') else 1
        members[kind], member_seconds[kind] = [], 0.0
        for k in range(n_members):
            learner, seconds, tinfo = train_network(kind, cfg, train, args.window, args.seed + k,
                                                    cfg.epochs)
            members[kind].append(learner.predict_many(test.windows))
            member_seconds[kind] += seconds
            label = kind if n_members == 1 else f'{kind}[seed {args.seed + k}]'
            print(f'  trained {label:22s} {seconds:7.1f} s  ({tinfo["steps"]} steps, '
                  f'{tinfo["parameters"]} parameters, final lr {tinfo["final_lr"]:.2g}, '
                  f'rollbacks {tinfo["rollbacks"]})', flush=True)
            if k == 0:   # member 0 is the single-network row (seed = --seed, as without --members)
                preds[kind] = members[kind][0]
                results[kind] = {'train_seconds': round(seconds, 1), 'epochs': cfg.epochs,
                                 'learning_rate': cfg.learning_rate,
                                 'model_options': cfg.model_options, **tinfo}
    for kind in ('lstm', 'gru'):
        if f'{kind}_ens' in args.rows:
            preds[f'{kind}_ens'] = np.mean(members[kind], axis=0)
            results[f'{kind}_ens'] = {'members': len(members[kind]),
                                      'seeds': [args.seed + k for k in range(len(members[kind]))],
                                      'train_seconds': round(member_seconds[kind], 1)}
    both_seconds = round(member_seconds.get('lstm', 0.0) + member_seconds.get('gru', 0.0), 1)
    if 'dual' in args.rows:   # over the ensembles when there are several members
        a, b = (np.mean(members[k], axis=0) for k in ('lstm', 'gru'))
        preds['dual'], results['dual'] = run_dual(a, b, test.tau_filtered)
        results['dual'].update(train_seconds=both_seconds, members=k_members)
    if 'ensemble' in args.rows:   # every LSTM and GRU member, equally weighted
        preds['ensemble'] = np.mean(members['lstm'] + members['gru'], axis=0)
        results['ensemble'] = {'train_seconds': both_seconds, 'members': 2 * k_members}

    rows = [r for r in ALL_ROWS if r in args.rows]
    n = test.tau_raw.shape[1]
    table = []
    for r in rows:
        if not np.isfinite(preds[r]).all():
            raise RuntimeError(f'{r}: non-finite predictions')
        raw = metrics.nmse(test.tau_raw, preds[r], train_mean, train_std)
        filt = metrics.nmse(test.tau_filtered, preds[r], train_mean, train_std)
        results[r].update(nmse=raw.tolist(), nmse_mean=float(raw.mean()),
                          nmse_filtered=filt.tolist(), nmse_filtered_mean=float(filt.mean()))
        table.append([r, *raw.tolist(), float(raw.mean()), float(filt.mean()),
                      HUANG_TABLE4.get(r, None) if not args.validate else None,
                      f"{results[r]['train_seconds']:.1f}"])
    # The noise floor: the filtered measurement itself scored against the raw one.
    floor = metrics.nmse(test.tau_raw, test.tau_filtered, train_mean, train_std)
    table.append(['(filtered tau)', *floor.tolist(), float(floor.mean()), 0.0, None, None])
    header = ['model', *[f'j{j + 1}' for j in range(n)], 'avg', 'avg(filt)', 'Huang T4', 'train s']
    print()
    print('per-joint nMSE vs the measured torque (standardized with the training mean/std); '
          'avg(filt): vs the filtered torque')
    print(format_table(header, table))
    if not args.validate:
        print('Huang et al. 2024 Table 4 (avg nMSE): ' + ', '.join(
            f'{k} {v:.4f}' for k, v in HUANG_TABLE4.items()))
    best = min(rows, key=lambda r: results[r]['nmse_mean'])
    print(f'best: {best} {results[best]["nmse_mean"]:.4f} (target <= 0.045)')
    if 'dual' in results:
        print(f'dual identifier: {results["dual"]["switches"]} switches, fraction of samples on gru '
              f'per joint {results["dual"]["fraction_gru_per_joint"]}')

    if args.json:
        out = {'machine': info, 'args': {k: v for k, v in vars(args).items() if k != 'rows'},
               'split': split_name, 'window': args.window, 'cutoff_hz': args.cutoff,
               'train_windows': len(train.windows), 'eval_windows': len(test.windows),
               'train_mean': train_mean.tolist(), 'train_std': train_std.tolist(),
               'noise_floor_nmse': floor.tolist(), 'huang_table4': HUANG_TABLE4, 'results': results}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
