#!/usr/bin/env python3
"""The dual identifier's window on the real recordings: how long a window chooses best?

The dual (``dual_window`` samples of each network's error per joint, ``dual_hysteresis``) picks
per joint the predictor with the smaller recent error. How many samples that is matters most where
neither predictor is better everywhere: on the UR10 and Baxter recordings (the URDFs do not fit,
README "Physics prior") the residual side is better in some stretches and much worse in others.

For each dataset this runs the node's pipeline once with the dual (the residual LSTM on the
identified model beside the black-box LSTM, as ``bench/prior_datasets.py``), keeps both networks'
per-sample predictions and the pipeline's own labels, and then replays the switching law of
:class:`invdyn_ros.stages.identifier.DualIdentifier` (``select_many``, the same code the node's
pipeline uses) with other windows on the same predictions. The networks learn the same whatever
the window (the choice never feeds back into their learning), so one run per dataset and protocol
serves every window. The row with the run's own window must equal the pipeline's output (checked).

Parameter sets (``--params``):

* ``bench``: ``bench/prior_datasets.py``'s settings (10 Hz filter, learning rate 1e-2, the
  package's default window 200);
* ``config``: the shipped config of the robot (``config/ur10.yaml`` for the UR10; the Baxter has
  none here, so it keeps ``bench``), with its window as the run's own.

Usage::

    .venv/bin/python bench/dual_window.py [--datasets ur10,baxter] [--protocols split,prequential]
        [--params bench|config] [--windows 50,100,125,200,500] [--hysteresis 0.1] [--seed 0]

Prints avg nMSE (standardized by the training part's torques, as ``invdyn_eval``) per window and
the share of samples on the black-box network; saves ``bench/results/<save>.{txt,json}``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from common import (DATASET_PARAMS, REPO, Recorder, format_machine, format_table,  # noqa: E402
                    machine_info, require_datasets_dir, save_results)
from prior_datasets import robots_of  # noqa: E402

from invdyn_ros.offline.eval_networks import run_network  # noqa: E402
from invdyn_ros.offline.eval_stream import as_stream  # noqa: E402
from invdyn_ros.stages.identifier import DualIdentifier  # noqa: E402

#: The shipped config of each dataset's robot
CONFIGS = {'ur10': 'config/ur10.yaml'}
#: A config's parameters the offline run sets itself or leaves out (the node's own ones are
#: accepted and ignored by ``PipelineConfig.from_params``): the joints come from the recording,
#: and like bench/prior_datasets.py no clamp, no scale, no checkpoint
NOT_TAKEN = ('joint_names', 'torque_limits', 'effort_scale', 'checkpoint_path', 'robot_description')


def params_for(key: str, which: str, urdf: str, extra: dict) -> tuple[dict, str]:
    """The pipeline parameters of one run and where they come from."""
    if which == 'config' and key in CONFIGS:
        path = REPO / CONFIGS[key]
        params = yaml.safe_load(path.read_text())['invdyn_node']['ros__parameters']
        for name in NOT_TAKEN:
            params.pop(name, None)
        source = CONFIGS[key]
    else:
        params, source = dict(DATASET_PARAMS), 'bench/prior_datasets.py settings'
    params.update(urdf_path=urdf, prior='rnea', second_model='lstm', **extra)
    return params, source


def replay(run: dict, n: int, window: int, hysteresis: float) -> tuple[np.ndarray, np.ndarray]:
    """The dual's torque and choice per sample with another window, on the run's predictions."""
    names = run['dual_names']
    pa, pb = run['networks'][names[0]], run['networks'][names[1]]
    ident = DualIdentifier(n, window=window, hysteresis=hysteresis, names=tuple(names),
                           min_samples=min(10, window))
    out = ident.select_many(pa, pb, run['labels'])
    return out.torque, out.active


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--datasets', default='ur10,baxter')
    ap.add_argument('--protocols', default='split,prequential')
    ap.add_argument('--params', choices=('bench', 'config'), default='config')
    ap.add_argument('--windows', default='50,100,125,200,500')
    ap.add_argument('--hysteresis', type=float, default=0.1)
    ap.add_argument('--epochs', type=int, default=10)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--save', default='dual_window')
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    windows = [int(w) for w in args.windows.split(',')]
    out = Recorder()
    out(format_machine(machine_info()))
    results = {}
    for key, label, rec, urdf, extra in robots_of(args.datasets, 'left', require_datasets_dir()):
        params, source = params_for(key, args.params, urdf, extra)
        own = int(params.get('dual_window', 200))
        own_h = float(params.get('dual_hysteresis', 0.1))
        stream = as_stream(rec, None)
        N, n = len(stream), stream.n_joints
        n_train = int(0.8 * N)
        for protocol in args.protocols.split(','):
            t0 = time.perf_counter()
            run = run_network('dual', stream, params, protocol, n_train, args.epochs, args.seed,
                              None)
            y = run['labels']
            train = np.isfinite(y[:n_train]).all(axis=1)
            std = y[:n_train][train].std(axis=0)
            names = run['dual_names']
            pa, pb = run['networks'][names[0]], run['networks'][names[1]]
            scored = np.isfinite(y).all(axis=1) & np.isfinite(pa).all(axis=1) & \
                np.isfinite(pb).all(axis=1) & np.isfinite(run['torque']).all(axis=1)
            if protocol == 'split':
                scored[:n_train] = False

            def score(p: np.ndarray) -> np.ndarray:
                return np.mean((p[scored] - y[scored]) ** 2, axis=0) / std ** 2

            own_torque, _ = replay(run, n, own, own_h)
            if not np.allclose(own_torque[scored], run['torque'][scored], rtol=0, atol=1e-9):
                raise SystemExit(f'{label}: the replayed law does not reproduce the pipeline')
            rows = [['residual side alone', '-', '-', '-', float(score(pa).mean()), '-'],
                    ['black box alone', '-', '-', '-', float(score(pb).mean()), '-']]
            per_window = {}
            for w in sorted(set(windows) | {own}):
                for h in sorted({args.hysteresis, own_h}):
                    torque, active = replay(run, n, w, h)
                    s = score(torque)
                    share = np.mean(active[scored] == 1, axis=0)
                    tag = 'dual (the run\'s own)' if (w, h) == (own, own_h) else 'dual'
                    rows.append([tag, w, f'{w / rec.rate_hz:.2f}', f'{h:g}', float(s.mean()),
                                 ' '.join(f'{x:.2f}' for x in share)])
                    per_window[f'{w}/{h:g}'] = {'nmse': s.tolist(), 'nmse_mean': float(s.mean()),
                                                'black_box_share': share.tolist()}
            out(f'--- {label} / {protocol}: {N} samples at {rec.rate_hz:g} Hz, params {source}, '
                f'seed {args.seed}, {int(scored.sum())} scored samples, '
                f'wall {time.perf_counter() - t0:.0f} s')
            out(format_table(['predictor', 'window', 'window s', 'hysteresis', 'avg nMSE',
                              'black-box share per joint'], rows, '.4f'))
            results[f'{key}/{protocol}'] = {
                'params': source, 'own_window': own, 'own_hysteresis': own_h,
                'residual_side': score(pa).tolist(), 'black_box': score(pb).tolist(),
                'windows': per_window}
            save_results(args.save, out.text, {'machine': machine_info(), 'args': vars(args),
                                               'results': results})


if __name__ == '__main__':
    main()
