"""Payload change with the physics prior: how fast the prediction error recovers.

The simulated UR5 (Pinocchio; friction the URDF lacks) follows a seeded Fourier trajectory with PD
plus its true model; after ``--before-s`` seconds a payload of ``--payload`` kg is put on the
flange (the simulator's inertia changes at once). The recorded stream (noisy positions, velocities
and efforts at 500 Hz) goes sample by sample through a :class:`~invdyn_ros.pipeline.pipeline.Pipeline` as
the node runs it (``config/ur5.yaml``'s learning settings, ``prior: rnea``, the UR5 URDF with
masses and inertias off by up to +-25 %, no payload; the residual LSTM trained inline,
deterministically). Scored: the rolling RMS (1 s) of the pipeline's output torque against the
measured (filtered) effort; "recovered" is the first time after the change from which the rolling
error stays within ``--within`` x its level over the last 5 s before the change
(``demo_metrics.error_recovery``, the rule ``invdyn_demo --payload-change`` reports as well)::

    .venv/bin/python bench/prior_payload.py [--before-s 30] [--after-s 30] [--payload 3] [--control]
        [--set identification_memory_s=30 ...]

``--control`` runs the same arm and motion once more, carrying the payload from the start: the
loaded arm's own error level (more torque, more error) second by second, beside the run with the
change.

Without a prior (``--prior none``) the same run measures the black-box network. Prints the result
and saves ``bench/results/prior_payload.{txt,json}``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import yaml

from common import Recorder, format_machine, machine_info, save_results
from invdyn_ros.pipeline.parameters import NODE_ONLY_PARAMETERS
from invdyn_ros.pipeline.pipeline import Pipeline, PipelineConfig, make_trainer
from invdyn_ros.sim.arm import ArmConfig, SimulatedArm, find_robot_urdf, perturbed_urdf_model
from invdyn_ros.sim.demo_metrics import RECOVERY_WINDOW_S, error_recovery, holds_from, rolling_rms
from invdyn_ros.sim.trajectory import FourierTrajectory

KP = np.array([400.0, 400.0, 300.0, 100.0, 100.0, 50.0])
KD = 2.0 * np.sqrt(KP)


def simulate(arm: SimulatedArm, traj: FourierTrajectory, before_s: float, after_s: float,
             payload: float) -> tuple[np.ndarray, ...]:
    dt = arm.config.dt
    steps = int(round((before_s + after_s) / dt))
    change = int(round(before_s / dt))
    q0, _, _ = traj.sample(0.0)
    arm.reset(q0)
    out = []
    for k in range(steps):
        if k == change:
            arm.set_payload(payload)
        qr, qdr, qddr = traj.sample(k * dt)
        q, qd = arm.true_state()
        arm.step(arm.rnea(qr, qdr, qddr) + KP * (qr - q) + KD * (qdr - qd))
        out.append(((k + 1) * dt, *arm.measure()))
    T = np.array([o[0] for o in out])
    return T, *(np.array([o[i] for o in out]) for i in (1, 2, 3))


def rolling_error(args: argparse.Namespace, out: Recorder, T: np.ndarray, Q: np.ndarray,
                  QD: np.ndarray, TAU: np.ndarray) -> np.ndarray:
    """The pipeline's output against the filtered effort over the stream: the rolling RMS over
    ``RECOVERY_WINDOW_S`` (1 s; ``demo_metrics.rolling_rms``, what invdyn_demo --payload-change
    reports too)."""
    cfg_file = Path(__file__).resolve().parents[1] / 'config' / 'ur5.yaml'
    params = yaml.safe_load(cfg_file.read_text())['invdyn_node']['ros__parameters']
    for k in NODE_ONLY_PARAMETERS:
        params.pop(k, None)
    params.update(prior=args.prior, rate_hz=500.0, seed=args.seed,
                  feedforward_mode='total', dual_enabled=False,
                  robot_description=perturbed_urdf_model(find_robot_urdf('ur5').read_text(),
                                                         0.25, args.seed))
    if args.prior == 'none':
        params.pop('robot_description')
    for item in args.set:
        name, _, value = item.partition('=')
        params[name] = yaml.safe_load(value)
    cfg = PipelineConfig.from_params(params)
    t0 = time.perf_counter()
    err = np.full(TAU.shape, np.nan)
    with Pipeline(cfg, make_trainer(cfg, 'inline')) as pl:
        for k in range(len(T)):
            o = pl.process(T[k], Q[k], QD[k], TAU[k])
            if o is not None and o.tau is not None:
                err[k] = o.torque - o.tau
        if pl.physics is not None and pl.physics.identification is not None:
            out(f'identification: {pl.physics.identification.counters}')
    out(f'pipeline ({args.prior}) over the stream in {time.perf_counter() - t0:.0f} s')
    return rolling_rms(T, err, RECOVERY_WINDOW_S)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--before-s', type=float, default=30.0)
    ap.add_argument('--after-s', type=float, default=30.0)
    ap.add_argument('--payload', type=float, default=3.0)
    ap.add_argument('--within', type=float, default=1.5)
    ap.add_argument('--prior', default='rnea', choices=('rnea', 'none'))
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--control', action='store_true',
                    help='also run the same arm and motion with the payload from the start: the '
                         'error level the loaded arm has anyway, second by second')
    ap.add_argument('--set', action='append', default=[], metavar='NAME=VALUE',
                    help='a node parameter on top of ur5.yaml\'s (YAML value)')
    ap.add_argument('--save', default='prior_payload')
    args = ap.parse_args()
    out = Recorder()
    out(format_machine(machine_info()))
    config = ArmConfig(robot='ur5', position_noise_std=1e-4, velocity_noise_std=1e-3,
                       effort_noise_std=0.2, seed=args.seed)
    arm = SimulatedArm(config)
    traj = FourierTrajectory(6, seed=args.seed, lower=arm.lower_limits, upper=arm.upper_limits,
                             max_amplitude=0.8, max_velocity=1.0, max_acceleration=2.5)
    t0 = time.perf_counter()
    T, Q, QD, TAU = simulate(arm, traj, args.before_s, args.after_s, args.payload)
    out(f'simulated {T[-1]:.0f} s at {1 / arm.config.dt:.0f} Hz in {time.perf_counter() - t0:.0f} s;'
        f' payload 0 -> {args.payload} kg at t = {args.before_s:.0f} s')
    rate = 1 / arm.config.dt
    roll = rolling_error(args, out, T, Q, QD, TAU)
    change = int(round(args.before_s * rate))
    rec = error_recovery(T, roll, T[change], args.within)    # demo_metrics: the demo's rule too
    before, peak = rec['level'], rec['peak']
    first_s, recovered = rec['first_within_s'], rec['stays_within_s']
    after = roll[change:]
    out(f'rolling RMS error (1 s) before the change {before:.3f} N m, peak after {peak:.3f} N m')
    out('first back within {:.1f}x the level before: {}'.format(
        args.within, f'{first_s:.1f} s after the change' if first_s is not None else 'never'))
    out('stays within {:.1f}x the level before: {}'.format(
        args.within, f'{recovered:.1f} s after the change' if recovered is not None else
        f'NOT within {args.after_s:.0f} s'))
    for s in (1, 2, 5, 10, 20):
        i = int(s * rate)
        if i < len(after):
            out(f'  {s:>2} s after: {after[i]:.3f} N m ({after[i] / before:.2f}x)')
    extra = {}
    if args.control:
        _, Qc, QDc, TAUc = simulate(SimulatedArm(config), traj, 0.0,
                                    args.before_s + args.after_s, args.payload)
        out(f'control: the same arm and motion carrying {args.payload} kg from the start')
        control = rolling_error(args, out, T, Qc, QDc, TAUc)[change:]
        for s in (1, 2, 5, 10, 20):
            i = int(s * rate)
            if i < len(after):
                out(f'  {s:>2} s after: {control[i]:.3f} N m ({control[i] / before:.2f}x the level '
                    f'before the change; the run with the change {after[i] / control[i]:.2f}x this)')
        late = slice(int(2 * rate), None)
        out(f'  from 2 s after on: max {np.nanmax(control[late]):.3f} N m '
            f'({np.nanmax(control[late]) / before:.2f}x the level before; the run with the change: '
            f'max {np.nanmax(after[late]):.3f} N m)')
        close = after <= args.within * control
        matched = holds_from(close)
        matched = None if matched is None else matched / rate
        out('within {:.1f}x of the arm that carried it from the start, at every instant: {}'.format(
            args.within, f'from {matched:.1f} s after the change' if matched is not None else
            'NOT by the end'))
        extra = {'control_max_after_2s': float(np.nanmax(control[late])), 'matched_s': matched}
    save_results(args.save, out.text, {'machine': machine_info(), 'args': vars(args),
                                       'before_rms': before, 'peak_rms': peak,
                                       'first_within_s': first_s, 'recovered_s': recovered,
                                       **extra})


if __name__ == '__main__':
    main()
