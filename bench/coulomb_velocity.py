"""The identified model with a fixed vs an identified Coulomb scale, and its memory and regularization.

The demo's arm (the simulated UR5: Coulomb friction ``coulomb * tanh(qd / 0.02)`` + viscous, effort
noise 0.2 N m, position noise 0.1 mrad) tracks the demo's primary reference (seed 0, 0.1 Hz, five
harmonics) with the demo's PD gains and its true model as feedforward, then, after a pause, the
demo's unseen reference (seed 1, 1.5x faster, centred 0.6 rad away). The recording goes through the
evaluator's split protocol (``invdyn_eval --models identified --urdf ...``: the estimator's
filtered states, identification on the primary part only, scored on the unseen part with learning
off, against the applied torque without the sensor noise) for each setting of ``coulomb_velocity`` (0: identified among the candidates; 0.05: the fixed
value of before), ``identification_memory_s`` and ``identification_regularization``; the model is
the UR5 URDF with masses and inertias off by up to +-25 % (seeded), no friction::

    .venv/bin/python bench/coulomb_velocity.py [--train-s 60] [--test-s 20]

Prints per setting the nMSE and the RMS torque error per joint on the unseen part, and the Coulomb
scale the fit chose; saves ``bench/results/coulomb_velocity.{txt,json}``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from common import Recorder, format_machine, machine_info, save_results, track_recording
from invdyn_ros.offline.datasets import Recording
from invdyn_ros.offline.evaluation import evaluate
from invdyn_ros.sim.arm import ArmConfig, SimulatedArm, find_robot_urdf, perturbed_urdf_model
from invdyn_ros.sim.controller_node import UNSEEN_CENTER_OFFSET_RAD, UR_HOME
from invdyn_ros.sim.trajectory import FourierTrajectory
from invdyn_ros.stages.identification import COULOMB_VELOCITY_CANDIDATES, OnlineIdentification
from invdyn_ros.stages.physics import PhysicsPrior, RobotModel
from invdyn_ros.stages.residual import IDENTIFICATION_RATE_HZ

UR5_JOINTS = ['shoulder_pan_joint', 'shoulder_lift_joint', 'elbow_joint', 'wrist_1_joint',
              'wrist_2_joint', 'wrist_3_joint']
KP = np.array([1200.0, 1200.0, 600.0, 120.0, 120.0, 40.0])       # the demo's controller
KD = np.array([78.99, 111.71, 44.9, 10.73, 10.95, 1.65])
#: (coulomb_velocity, identification_memory_s, identification_regularization)
SETTINGS = [(0.05, 5.0, 0.01), (0.0, 5.0, 0.01), (0.0, 30.0, 0.01), (0.0, 30.0, 0.001),
            (0.05, 30.0, 0.001)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--train-s', type=float, default=60.0)
    ap.add_argument('--test-s', type=float, default=20.0)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--save', default='coulomb_velocity')
    args = ap.parse_args()
    out = Recorder()
    out(format_machine(machine_info()))
    arm = SimulatedArm(ArmConfig(robot='ur5', position_noise_std=1e-4, velocity_noise_std=1e-3,
                                 effort_noise_std=0.2, seed=args.seed))
    lower, upper = arm.lower_limits, arm.upper_limits
    common = dict(base_freq_hz=0.1, harmonics=5, lower=lower, upper=upper, margin=0.2,
                  max_amplitude=1.0, max_velocity=1.5, max_acceleration=4.0, ramp_s=2.0)
    centre = np.array(UR_HOME[:6])
    primary = FourierTrajectory(6, seed=0, center=centre, **common)
    unseen = FourierTrajectory(6, seed=1, center=centre + UNSEEN_CENTER_OFFSET_RAD, speed=1.5,
                               **common)
    t_sim = time.perf_counter()
    ta, qa, qda, taua = track_recording(arm, primary, args.train_s, 0.0, KP, KD)
    # scored against the applied torque itself (learning is off there): the score is the model's
    # error, not the sensor's noise
    tb, qb, qdb, taub = track_recording(arm, unseen, args.test_s, ta[-1] + 1.0, KP, KD,
                                        exact_torque=True)
    out(f'simulated {args.train_s:.0f} s of the primary and {args.test_s:.0f} s of the unseen '
        f'reference at {1.0 / arm.config.dt:.0f} Hz in {time.perf_counter() - t_sim:.1f} s; '
        f'friction scale 0.02 rad/s; model: UR5 URDF, masses/inertias x[1 +- 0.25]')
    rec = Recording(name='sim_ur5_demo_references', joint_names=tuple(UR5_JOINTS),
                    rate_hz=1.0 / arm.config.dt, t=np.concatenate((ta, tb)),
                    q=np.concatenate((qa, qb)), qd=np.concatenate((qda, qdb)), qdd=None,
                    tau=np.concatenate((taua, taub)))
    urdf = perturbed_urdf_model(find_robot_urdf('ur5').read_text(), 0.25, args.seed)
    frac = len(ta) / (len(ta) + len(tb))
    rows = []
    out(f'{"coulomb_velocity":>16} {"memory s":>9} {"regul.":>7} {"chosen":>8} {"nMSE":>8}  '
        f'RMS error per joint on the unseen part (N m)')
    for cv, memory, reg in SETTINGS:
        params = {'robot_description': urdf, 'rate_hz': 500.0, 'filter_cutoff_hz': 60.0,
                  'torque_limits': [150.0, 150.0, 150.0, 28.0, 28.0, 28.0],
                  'coulomb_velocity': cv, 'identification_memory_s': memory,
                  'identification_regularization': reg}
        report = evaluate(rec, 'identified', protocol='split', train_fraction=frac,
                          params=params, seed=args.seed)
        r = report.results[0]
        chosen = r.details['parameters']['coulomb_velocity']
        rms = np.sqrt(np.asarray(r.mse))
        rows.append({'coulomb_velocity': cv, 'memory_s': memory, 'regularization': reg,
                     'chosen': chosen, 'nmse_mean': r.nmse_mean, 'nmse': r.nmse,
                     'rms': rms.tolist()})
        out(f'{cv if cv else "0 (identified)":>16} {memory:>9g} {reg:>7g} {chosen:>8.4f} '
            f'{r.nmse_mean:>8.5f}  {np.round(rms, 4).tolist()}')
    costs = update_costs(urdf, qa, qda)
    out('identification update (regressor + statistics; the node runs at most '
        f'{IDENTIFICATION_RATE_HZ:g} a second, after the publish): '
        + ', '.join(f'{k} {v:.1f} µs' for k, v in costs.items()) +
        ' (median of 2000)')
    save_results(args.save, out.text, {'machine': machine_info(), 'args': vars(args),
                                       'results': rows, 'update_us': costs})


def update_costs(urdf: str, q: np.ndarray, qd: np.ndarray) -> dict[str, float]:
    """Median µs of one ``OnlineIdentification.update`` (no solve) with a fixed Coulomb scale and
    with the candidates."""
    robot = RobotModel(urdf, UR5_JOINTS)
    out = {}
    for label, widths in (('fixed scale', None),
                          ('8 candidate scales', COULOMB_VELOCITY_CANDIDATES)):
        ident = OnlineIdentification(PhysicsPrior(robot), rate_hz=100.0, solve_every=10 ** 9,
                                     coulomb_velocities=widths)
        qdd = np.zeros(len(UR5_JOINTS))
        times = []
        for i in range(2000):
            tau = np.full(len(UR5_JOINTS), 0.1 * (i % 7))
            t0 = time.perf_counter()
            ident.update(q[i], qd[i], qdd, tau)
            times.append(time.perf_counter() - t0)
        out[label] = 1e6 * float(np.median(times))
    return out


if __name__ == '__main__':
    main()
