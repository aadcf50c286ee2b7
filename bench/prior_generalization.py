"""Generalization with the physics prior: learn on one trajectory of the simulated UR5, score an unseen one.

The simulated arm (Pinocchio, example-robot-data's UR5) carries a payload and joint friction that
the URDF does not have; the model the pipeline gets is the UR5 URDF with every link's mass and
inertia perturbed by up to +-25 % (seeded) and no payload, no friction -- what a user really has.
The arm tracks trajectory A (a seeded Fourier trajectory) with its true model as feedforward plus
PD, then, after a pause, trajectory B: another seed, faster, centred elsewhere, so its states
leave the region of A. Both are recorded as a robot would publish them (noisy positions,
velocities and efforts at 500 Hz) and evaluated with the evaluator's split protocol: learning on A
only, scored on B with learning off::

    .venv/bin/python bench/prior_generalization.py [--train-s 60] [--test-s 20] [--epochs 30]

The same as ``invdyn_eval BAG --urdf perturbed.urdf --train-fraction ...`` on a bag of this
recording (the script writes the perturbed URDF next to its results). Prints the per-model nMSE on
B and saves ``bench/results/prior_generalization.{txt,json}``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from common import Recorder, format_machine, machine_info, save_results, track_recording
from invdyn_ros.offline.datasets import Recording
from invdyn_ros.offline.evaluation import evaluate
from invdyn_ros.sim.arm import ArmConfig, SimulatedArm, find_robot_urdf, perturbed_urdf_model
from invdyn_ros.sim.trajectory import FourierTrajectory

UR5_JOINTS = ['shoulder_pan_joint', 'shoulder_lift_joint', 'elbow_joint', 'wrist_1_joint',
              'wrist_2_joint', 'wrist_3_joint']
KP = np.array([400.0, 400.0, 300.0, 100.0, 100.0, 50.0])
KD = 2.0 * np.sqrt(KP)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--train-s', type=float, default=60.0)
    ap.add_argument('--test-s', type=float, default=20.0)
    ap.add_argument('--payload', type=float, default=2.0)
    ap.add_argument('--perturb', type=float, default=0.25)
    ap.add_argument('--epochs', type=int, default=30)
    ap.add_argument('--models', default='naive,rnea,identified,lstm,residual_lstm,dual')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--save', default='prior_generalization')
    args = ap.parse_args()

    out = Recorder()
    out(format_machine(machine_info()))
    arm = SimulatedArm(ArmConfig(robot='ur5', payload_kg=args.payload, position_noise_std=1e-4,
                                 velocity_noise_std=1e-3, effort_noise_std=0.2, seed=args.seed))
    lower, upper = arm.lower_limits, arm.upper_limits
    a = FourierTrajectory(6, seed=1, lower=lower, upper=upper, max_amplitude=0.8,
                          max_velocity=1.0, max_acceleration=2.5)
    center_b = np.clip(a.center + np.array([0.6, -0.4, 0.5, 0.5, -0.5, 0.6]), lower + 1.0,
                       upper - 1.0)
    b = FourierTrajectory(6, seed=7, base_freq_hz=0.15, lower=lower, upper=upper,
                          center=center_b, max_amplitude=0.8, max_velocity=1.5,
                          max_acceleration=3.75)
    t_sim = time.perf_counter()
    ta, qa, qda, taua = track_recording(arm, a, args.train_s, 0.0, KP, KD)
    # 1 s gap: a new stream
    tb, qb, qdb, taub = track_recording(arm, b, args.test_s, ta[-1] + 1.0, KP, KD)
    out(f'simulated {args.train_s:.0f} s of A and {args.test_s:.0f} s of B at '
        f'{1.0 / arm.config.dt:.0f} Hz in {time.perf_counter() - t_sim:.1f} s; payload '
        f'{args.payload} kg, friction on; model: UR5 URDF, masses/inertias x[1 +- {args.perturb}]')
    rec = Recording(name='sim_ur5_ab', joint_names=tuple(UR5_JOINTS),
                    rate_hz=1.0 / arm.config.dt, t=np.concatenate((ta, tb)),
                    q=np.concatenate((qa, qb)), qd=np.concatenate((qda, qdb)), qdd=None,
                    tau=np.concatenate((taua, taub)))
    urdf = perturbed_urdf_model(find_robot_urdf('ur5').read_text(), args.perturb, args.seed)
    params = {'robot_description': urdf, 'torque_limits': [150.0, 150.0, 150.0, 28.0, 28.0, 28.0],
              'rate_hz': 500.0}
    frac = len(ta) / (len(ta) + len(tb))
    report = evaluate(rec, args.models, protocol='split', train_fraction=frac, params=params,
                      seed=args.seed, epochs=args.epochs)
    out(report.table())
    rows = {r.model: {'nmse_mean': r.nmse_mean, 'nmse': r.nmse} for r in report.results}
    for r in report.results:
        if r.model == 'dual':
            out(f"dual: second (black-box) network share per joint "
                f"{np.round(r.details.get('second_network_fraction', []), 2).tolist()}")
    save_results(args.save, out.text, {'machine': machine_info(), 'args': vars(args),
                                       'results': rows})


if __name__ == '__main__':
    main()
