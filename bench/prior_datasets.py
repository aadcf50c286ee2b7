"""The physics prior on the real-robot datasets: UR10 (5 kg payload) and Baxter, both protocols.

For each dataset of ``../shared/datasets`` that has a URDF in example-robot-data, the evaluator
(:func:`invdyn_ros.offline.evaluation.evaluate`, the node's own pipeline) runs

    naive, rnea (the URDF as given), identified (the URDF's parameters fitted on the training part),
    lstm (black box), residual_lstm (identified model + LSTM residual), dual (the residual LSTM
    beside the black-box GRU, per joint)

under ``split`` (learn on the first 80 %, score the last 20 % with learning off) and/or
``prequential`` (every sample predicted, then learned), with the settings of
``bench/accuracy.py`` (10 Hz Butterworth, learning rate 1e-2) and ``--epochs`` extra passes::

    .venv/bin/python bench/prior_datasets.py [--datasets ur10,baxter] [--epochs 10]
        [--protocols split,prequential] [--coulomb-velocity 0.05]

UR10: example-robot-data's ``ur10_robot.urdf`` with the recording's 5 kg payload at the flange
(``payload_com`` 0.05 m along the last joint's z: the object's placement is not documented).
Baxter: ``baxter.urdf``; which arm was recorded is not documented, so both are tried
(``--baxter-arm left,right``; default left) with the dataset's joints named after that arm. KUKA-I has no URDF
here. Prints the per-joint nMSE table per dataset and which predictor the dual identifier used per
joint, the per-joint winner, and the dual's per-network nMSE; saves ``bench/results/prior_datasets.{txt,json}``.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from common import (DATASET_PARAMS, Recorder, format_machine, format_table, machine_info,
                    require_datasets_dir, save_results)
from invdyn_ros.offline.datasets import load_baxter, load_ur10
from invdyn_ros.offline.evaluation import evaluate
from invdyn_ros.sim.arm import find_robot_urdf

ROBOTS = find_robot_urdf('ur5').parents[2]
BAXTER_ARM = ('s0', 's1', 'e0', 'e1', 'w0', 'w1', 'w2')


def network_label(name: str, names: list[str]) -> str:
    """The dual's network keys as columns: the primary (with the prior) is the residual network,
    the second the black-box one (``lstm_2`` when both are LSTMs)."""
    base = name[:-2] if name.endswith('_2') else name
    return f'residual_{base}' if name == names[0] else base


def run(out: Recorder, name: str, rec, urdf: str, extra: dict, models: str, epochs: int,
        seed: int, protocol: str, second_model: str, coulomb_velocity: float = 0.0) -> dict:
    params = {**DATASET_PARAMS, 'urdf_path': urdf, 'prior': 'rnea', 'second_model': second_model,
              'coulomb_velocity': coulomb_velocity, **extra}
    t0 = time.perf_counter()
    report = evaluate(rec, models, protocol=protocol, train_fraction=0.8, params=params,
                      seed=seed, epochs=epochs)
    out(f'--- {name} / {protocol}: {len(rec.t)} samples, URDF {urdf.split("robots/")[-1]}, '
        f'{extra or "no payload"}, seed {seed}, {epochs if protocol == "split" else 0} extra '
        f'epochs, wall {time.perf_counter() - t0:.0f} s, load {os.getloadavg()[0]:.2f}')
    out(report.table())
    cols = {r.model: list(r.nmse) for r in report.results}
    res = {r.model: {'nmse_mean': r.nmse_mean, 'nmse': r.nmse,
                     'train_seconds': r.train_seconds} for r in report.results}
    for r in report.results:
        if r.model == 'dual':
            share = r.details.get('second_network_fraction', [])
            names = r.details.get('network_names', [])
            nets = r.details.get('networks', {})
            for net in names:
                if net in nets:
                    cols[network_label(net, names)] = list(nets[net]['nmse'])
            choice = [network_label(names[1] if s > 0.5 else names[0], names)
                      for s in share] if len(names) > 1 else []
            out(f'dual: networks {names} = {[network_label(x, names) for x in names]}; '
                f'share of the scored samples on the second per joint '
                f'{np.round(share, 2).tolist()}')
            res['dual'].update(second_network_fraction=share, network_names=names,
                               choice_per_joint=dict(zip(report.joint_names, choice)),
                               networks={network_label(k, names): {
                                   'nmse': v['nmse'], 'nmse_mean': v['nmse_mean']}
                                   for k, v in nets.items()})
        if r.model == 'identified':
            out(f"identified parameters: max relative change vs URDF "
                f"{r.details['parameters']['max_relative_change']:.2f}, Coulomb sign scale "
                f"{r.details['parameters']['coulomb_velocity']:.4g} rad/s")
    # every column, the dual's two networks scored on their own included
    order = [m for m in ('naive', 'rnea', 'identified', 'lstm', 'residual_lstm', 'dual')
             if m in cols] + [m for m in cols if m not in
                              ('naive', 'rnea', 'identified', 'lstm', 'residual_lstm', 'dual')]
    nm = np.array([cols[m] for m in order], dtype=float)
    winners = [order[int(np.nanargmin(nm[:, j]))] for j in range(nm.shape[1])]
    choice = res.get('dual', {}).get('choice_per_joint', {})
    rows = [[j] + [float(x) for x in nm[:, i]] + [winners[i], choice.get(j, '-')]
            for i, j in enumerate(report.joint_names)]
    rows.append(['mean'] + [float(x) for x in np.nanmean(nm, axis=1)] + ['', ''])
    out('nMSE per joint, the dual\'s networks as their own columns; the winner; the dual\'s '
        'choice (network on > 50 % of the scored samples)')
    out(format_table(['joint'] + order + ['winner', 'dual uses'], rows))
    res['columns'] = {m: cols[m] for m in order}
    res['winner_per_joint'] = dict(zip(report.joint_names, winners))
    return res


def conventions(out: Recorder, name: str, rec, urdf: str, extra: dict) -> dict:
    """Which convention differs between the URDF's rnea and the recording? Per joint, the least
    squares fit ``tau = a * rnea + b`` on the zero-phase filtered states (10 Hz) of all samples,
    for the URDF as given and with +-pi/2 / pi zero offsets on each joint (one joint at a time,
    the best kept when it raises that joint's R^2 by > 0.05): ``a`` ~ 1 means the model's units
    and sign, ``a`` ~ -1 a flipped sign, another ``a`` another unit (current, a gear ratio) or
    wrong masses; ``b`` a torque offset; R^2 how much of the torque the shape of rnea explains."""
    from invdyn_ros.stages.estimation import FilterConfig, estimate_offline
    from invdyn_ros.stages.physics import PhysicsPrior, RobotModel, load_urdf_text

    q, qd, qdd, tau = estimate_offline(rec.t, rec.q, rec.qd, rec.tau,
                                       FilterConfig(order=2, cutoff_hz=10.0))
    robot = RobotModel(load_urdf_text(urdf_path=urdf), rec.joint_names,
                       payload_mass_kg=extra.get('payload_mass_kg', 0.0),
                       payload_com=extra.get('payload_com', (0.0, 0.0, 0.0)))
    prior = PhysicsPrior(robot)
    step = max(1, len(q) // 3000)            # 3000 samples are plenty for a 2-parameter fit
    q, qd, qdd, tau = q[::step], qd[::step], qdd[::step], tau[::step]

    def fit(offset: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pred = prior.predict_many(q + offset, qd, qdd)
        a, b, r2 = np.zeros(rec.n_joints), np.zeros(rec.n_joints), np.zeros(rec.n_joints)
        for j in range(rec.n_joints):
            A = np.column_stack((pred[:, j], np.ones(len(pred))))
            (a[j], b[j]), *_ = np.linalg.lstsq(A, tau[:, j], rcond=None)
            resid = tau[:, j] - A @ np.array([a[j], b[j]])
            r2[j] = 1.0 - resid.var() / max(tau[:, j].var(), 1e-12)
        return a, b, r2

    a0, b0, r20 = fit(np.zeros(rec.n_joints))
    offset = np.zeros(rec.n_joints)
    for j in range(rec.n_joints):
        best = (r20[j], 0.0)
        for d in (np.pi / 2, -np.pi / 2, np.pi):
            trial = offset.copy()
            trial[j] = d
            r2 = fit(trial)[2][j]
            if r2 > best[0] + 0.05:
                best = (r2, d)
        offset[j] = best[1]
    a1, b1, r21 = fit(offset)
    out(f'--- {name}: convention check, tau = a * rnea(q + offset) + b per joint '
        f'({len(q)} samples, zero-phase 10 Hz)')
    rows = [[j, f'{a0[i]:.3f}', f'{b0[i]:.2f}', f'{r20[i]:.3f}', f'{offset[i]:+.2f}',
             f'{a1[i]:.3f}', f'{b1[i]:.2f}', f'{r21[i]:.3f}', f'{tau[:, i].std():.2f}']
            for i, j in enumerate(rec.joint_names)]
    out(format_table(['joint', 'a (URDF)', 'b', 'R2', 'q offset', 'a', 'b', 'R2', 'tau std'],
                     rows))
    free = free_fit(out, prior, rec.joint_names, q, qd, qdd, tau)
    # the arm (nearly) at rest: the torque is gravity (+ friction, offsets) alone
    still = (np.abs(qd).max(axis=1) < 0.01) & (np.abs(qdd).max(axis=1) < 0.05)
    if still.sum() < 20:
        out(f'at rest: {int(still.sum())} samples with |qd| < 0.01 rad/s, |qdd| < 0.05 rad/s^2 '
            f'(too few to compare gravity torques)')
        return {'urdf': {'a': a0, 'b': b0, 'r2': r20}, 'offset': offset,
                'with_offset': {'a': a1, 'b': b1, 'r2': r21}, 'free_fit': free}
    g = np.array([prior.gravity(q[i]) for i in np.flatnonzero(still)])
    ts = tau[still]
    out(f'at rest ({int(still.sum())} of these samples: |qd| < 0.01 rad/s, |qdd| < 0.05 '
        f'rad/s^2): the URDF\'s gravity torque vs the measured torque, mean / std over the poses')
    out(format_table(['joint', 'URDF g mean', 'URDF g std', 'measured mean', 'measured std'],
                     [[j, float(g[:, i].mean()), float(g[:, i].std()), float(ts[:, i].mean()),
                       float(ts[:, i].std())] for i, j in enumerate(rec.joint_names)], '.2f'))
    return {'urdf': {'a': a0, 'b': b0, 'r2': r20}, 'offset': offset,
            'with_offset': {'a': a1, 'b': b1, 'r2': r21}, 'free_fit': free,
            'at_rest': {'samples': int(still.sum()), 'urdf_gravity_mean': g.mean(0),
                        'urdf_gravity_std': g.std(0), 'measured_mean': ts.mean(0),
                        'measured_std': ts.std(0)}}


def free_fit(out: Recorder, prior, names, q, qd, qdd, tau) -> dict:
    """Could *any* parameters of this kinematic chain explain the torque? Per joint, an
    unconstrained least-squares fit of the measured torque on that joint's row of the regressor
    (all inertial parameters of the bodies beyond it, plus viscous, Coulomb and offset friction),
    a separate parameter vector per joint (more freedom than one arm has), on the first 80 % of
    the samples; R^2 there and on the last 20 %. Low R^2 even here means the recording's torque
    is not the rigid-body torque of this URDF's joint axes and frames, whatever the masses."""
    Y = np.stack([prior.regressor(q[i], qd[i], qdd[i]) for i in range(len(q))])
    cut = int(0.8 * len(q))
    r2_fit, r2_held = np.zeros(len(names)), np.zeros(len(names))
    for j in range(len(names)):
        A = Y[:, j, :]
        A = A[:, np.abs(A).max(axis=0) > 1e-12]          # columns this joint's torque sees
        theta, *_ = np.linalg.lstsq(A[:cut], tau[:cut, j], rcond=None)
        pred = A @ theta
        var = max(tau[:cut, j].var(), 1e-12)
        r2_fit[j] = 1.0 - ((pred[:cut] - tau[:cut, j]) ** 2).mean() / var
        r2_held[j] = 1.0 - ((pred[cut:] - tau[cut:, j]) ** 2).mean() / var
    out('unconstrained rigid-body fit per joint (the regressor row + friction, own parameters '
        'per joint, fitted on the first 80 %): R^2 = 1 - MSE / variance of the fit part, on the '
        'fit part and on the last 20 %')
    out(format_table(['joint', 'R2 fit', 'R2 held out'],
                     [[n, f'{r2_fit[i]:.3f}', f'{r2_held[i]:.3f}'] for i, n in enumerate(names)]))
    return {'r2_fit': r2_fit, 'r2_held_out': r2_held}


def robots_of(datasets: str, baxter_arms: str, data_dir):
    """``(key, label, recording, URDF path, payload options)`` of each dataset asked for."""
    for ds in datasets.split(','):
        if ds == 'ur10':
            yield ('ur10', 'UR10', load_ur10(data_dir),
                   str(ROBOTS / 'ur_description/urdf/ur10_robot.urdf'),
                   {'payload_mass_kg': 5.0, 'payload_com': [0.0, 0.0, 0.05]})
        elif ds == 'baxter':
            for arm in baxter_arms.split(','):
                rec = load_baxter(data_dir).with_joint_names(
                    tuple(f'{arm}_{j}' for j in BAXTER_ARM))
                yield (f'baxter_{arm}', f'Baxter ({arm} arm)', rec,
                       str(ROBOTS / 'baxter_description/urdf/baxter.urdf'), {})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--datasets', default='ur10,baxter')
    ap.add_argument('--models', default='naive,rnea,identified,dual')
    ap.add_argument('--second-model', default='lstm',
                    help="the dual's black-box network (its primary is the residual lstm)")
    ap.add_argument('--epochs', type=int, default=10)
    ap.add_argument('--protocols', default='split',
                    help='comma list of split,prequential (invdyn_ros.offline.evaluation.PROTOCOLS)')
    ap.add_argument('--baxter-arm', default='left')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--coulomb-velocity', type=float, default=0.0,
                    help='the Coulomb sign\'s scale (rad/s); 0: identified (the default)')
    ap.add_argument('--save', default='prior_datasets')
    ap.add_argument('--conventions', action='store_true',
                    help='only the per-joint fit of rnea to the measured torque (fast)')
    ap.add_argument('--threads', type=int, default=1)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    data_dir = require_datasets_dir()
    out = Recorder()
    out(format_machine(machine_info()))
    results = {}
    robots = list(robots_of(args.datasets, args.baxter_arm, data_dir))
    if args.conventions:
        for key, label, rec, urdf, extra in robots:
            results[key] = conventions(out, label, rec, urdf, extra)
        save_results(args.save if args.save != 'prior_datasets' else 'prior_conventions',
                     out.text, {'machine': machine_info(), 'args': vars(args),
                                'results': results})
        return
    for protocol in args.protocols.split(','):
        for key, label, rec, urdf, extra in robots:
            results[f'{key}/{protocol}'] = run(out, label, rec, urdf, extra, args.models,
                                               args.epochs, args.seed, protocol,
                                               args.second_model, args.coulomb_velocity)
            save_results(args.save, out.text, {'machine': machine_info(), 'args': vars(args),
                                               'results': results})
    save_results(args.save, out.text, {'machine': machine_info(), 'args': vars(args),
                                       'results': results})


if __name__ == '__main__':
    main()
