"""The physics prior on the real-robot datasets: UR10 (5 kg payload) and Baxter, split protocol.

For each dataset of ``../shared/datasets`` that has a URDF in example-robot-data, the evaluator
(:func:`invdyn_ros.evaluation.evaluate`, the node's own pipeline) runs

    naive, rnea (the URDF as given), identified (the URDF's parameters fitted on the training part),
    lstm (black box), residual_lstm (identified model + LSTM residual), dual (the residual LSTM
    beside the black-box GRU, per joint)

on the first 80 % (train) / last 20 % (test) of the samples, with the settings of
``bench/accuracy.py`` (10 Hz Butterworth, learning rate 1e-2) and ``--epochs`` extra passes::

    .venv/bin/python bench/prior_datasets.py [--datasets ur10,baxter] [--epochs 10]

UR10: example-robot-data's ``ur10_robot.urdf`` with the recording's 5 kg payload at the flange
(``payload_com`` 0.05 m along the last joint's z: the object's placement is not documented).
Baxter: ``baxter.urdf``; which arm was recorded is not documented, so both are tried
(``--baxter-arm left,right``) with the dataset's joints named after that arm. KUKA-I has no URDF
here. Prints the per-joint nMSE table per dataset and which predictor the dual identifier used per
joint; saves ``bench/results/prior_datasets.{txt,json}``.
"""
from __future__ import annotations

import argparse

import numpy as np

from common import Recorder, format_machine, machine_info, require_datasets_dir, save_results

from invdyn_ros.datasets import load_baxter, load_ur10
from invdyn_ros.evaluation import evaluate
from invdyn_ros.sim.arm import find_robot_urdf

ROBOTS = find_robot_urdf('ur5').parents[2]
BAXTER_ARM = ('s0', 's1', 'e0', 'e1', 'w0', 'w1', 'w2')


def run(out: Recorder, name: str, rec, urdf: str, extra: dict, models: str, epochs: int,
        seed: int) -> dict:
    params = {'filter_order': 2, 'filter_cutoff_hz': 10.0, 'learning_rate': 1e-2,
              'urdf_path': urdf, 'prior': 'rnea', **extra}
    report = evaluate(rec, models, protocol='split', train_fraction=0.8, params=params,
                      seed=seed, epochs=epochs)
    out(f'--- {name}: {len(rec.t)} samples, URDF {urdf.split("robots/")[-1]}, '
        f'{extra or "no payload"}')
    out(report.table())
    res = {r.model: {'nmse_mean': r.nmse_mean, 'nmse': r.nmse} for r in report.results}
    for r in report.results:
        if r.model == 'dual':
            share = r.details.get('second_network_fraction', [])
            names = r.details.get('network_names', [])
            out(f'dual per joint: share of the black-box {names[-1] if names else ""} network '
                f'{np.round(share, 2).tolist()}')
            res['dual']['second_network_fraction'] = share
        if r.model == 'identified':
            out(f"identified parameters: max relative change vs URDF "
                f"{r.details['parameters']['max_relative_change']:.2f}")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--datasets', default='ur10,baxter')
    ap.add_argument('--models', default='naive,rnea,identified,lstm,residual_lstm,dual')
    ap.add_argument('--epochs', type=int, default=10)
    ap.add_argument('--baxter-arm', default='left,right')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--save', default='prior_datasets')
    args = ap.parse_args()
    data_dir = require_datasets_dir()
    out = Recorder()
    out(format_machine(machine_info()))
    results = {}
    for ds in args.datasets.split(','):
        if ds == 'ur10':
            rec = load_ur10(data_dir)
            results['ur10'] = run(out, 'UR10', rec,
                                  str(ROBOTS / 'ur_description/urdf/ur10_robot.urdf'),
                                  {'payload_mass_kg': 5.0, 'payload_com': [0.0, 0.0, 0.05]},
                                  args.models, args.epochs, args.seed)
        elif ds == 'baxter':
            for arm in args.baxter_arm.split(','):
                rec = load_baxter(data_dir).with_joint_names(
                    tuple(f'{arm}_{j}' for j in BAXTER_ARM))
                results[f'baxter_{arm}'] = run(
                    out, f'Baxter ({arm} arm)', rec,
                    str(ROBOTS / 'baxter_description/urdf/baxter.urdf'), {}, args.models,
                    args.epochs, args.seed)
    save_results(args.save, out.text, {'machine': machine_info(), 'args': vars(args),
                                       'results': results})


if __name__ == '__main__':
    main()
