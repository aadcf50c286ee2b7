#!/usr/bin/env python3
"""What each kind of feedforward error costs in tracking, on the demo's simulated UR5.

The demo's learned feedforward tracks 1.7-2.6x worse than the true model's (README, "With the
physics prior"), although its prediction error is small (nMSE ~0.004). This script measures, in the
loop without ROS (``sim.controller.track``: the demo's arm, sensor noise, reference and PD gains, the
command applied in the period it is computed), the tracking error of the true model's feedforward
with one kind of error added at a time:

- ``delayed N``: the true model's torque of the reference N periods ago, what a controller gets
  when a feedforward computed for its step arrives N periods late over a topic;
- ``white`` / ``0.3 Hz`` / ``5 Hz``: an error of the demo's measured learned-feedforward RMS per
  joint (``--error``, N m; default from ``bench/results/demo_22_folders.txt``) as white noise or
  as a sine of that frequency (random phase per joint);
- ``friction width``: Coulomb friction as ``tanh(qd / 0.05)`` instead of the arm's
  ``tanh(qd / 0.02)`` -- a model whose friction step is too smooth.

Usage::

    .venv/bin/python bench/feedforward_sensitivity.py [--duration 30] [--skip 10]

Prints the per-joint tracking RMS (mrad) and its ratio to the true model's, and saves
``bench/results/feedforward_sensitivity.{txt,json}``. The ROS demo's own floor is higher than this
loop's (its command reaches the arm a period later and its phases are measured in simulated time
under load), so compare ratios, not absolute numbers.
"""
from __future__ import annotations

import argparse
import collections
from typing import Callable

import numpy as np

from common import Recorder, format_machine, format_table, machine_info, save_results
from invdyn_ros.sim.arm import ArmConfig, SimulatedArm
from invdyn_ros.sim.controller import PDController, track, ur5_default_gains
from invdyn_ros.sim.trajectory import FourierTrajectory

#: The demo's learned feedforward error vs the true model, per joint (N m RMS, learned phase of
#: bench/results/demo_22_folders.txt).
DEMO_ERROR = (0.083, 0.275, 0.101, 0.030, 0.028, 0.019)
#: The demo's sensor noise (sim_arm_node defaults).
POSITION_NOISE, VELOCITY_NOISE = 1e-4, 2e-3

Feedforward = Callable[[SimulatedArm, float, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def tracking_rms(feedforward: Feedforward | str, duration: float, skip: float) -> np.ndarray:
    """Per-joint tracking RMS (mrad) after ``skip`` s of the primary reference (seed 0)."""
    arm = SimulatedArm(ArmConfig(robot='ur5', position_noise_std=POSITION_NOISE,
                                 velocity_noise_std=VELOCITY_NOISE, seed=0))
    reference = FourierTrajectory(arm.n, seed=0, start=arm.true_state()[0])
    kp, kd = ur5_default_gains()
    controller = PDController(kp, kd, arm.effort_limits)
    ff = feedforward if isinstance(feedforward, str) else (
        lambda t, q, qd, qdd: feedforward(arm, t, q, qd, qdd))
    out = track(arm, reference, controller, duration, ff)
    sel = out['t'] >= skip
    return 1e3 * np.sqrt(np.mean((out['q_d'][sel] - out['q'][sel]) ** 2, axis=0))


def delayed(periods: int) -> Feedforward:
    history: collections.deque = collections.deque(maxlen=periods + 1)

    def ff(arm, t, q, qd, qdd):
        history.append(arm.rnea(q, qd, qdd))
        return history[0]
    return ff


def with_error(error: np.ndarray, kind: str, seed: int = 1) -> Feedforward:
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0.0, 2.0 * np.pi, len(error))

    def ff(arm, t, q, qd, qdd):
        if kind == 'white':
            e = rng.normal(0.0, 1.0, len(error)) * error
        else:
            e = np.sqrt(2.0) * error * np.sin(2.0 * np.pi * float(kind) * t + phase)
        return arm.rnea(q, qd, qdd) + e
    return ff


def smooth_friction(width: float) -> Feedforward:
    def ff(arm, t, q, qd, qdd):
        return (arm.rnea(q, qd, qdd) - arm.friction(qd)
                + arm.coulomb * np.tanh(qd / width) + arm.viscous * qd)
    return ff


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--duration', type=float, default=30.0, help='simulated seconds per case')
    ap.add_argument('--skip', type=float, default=10.0, help='seconds left out at the start')
    ap.add_argument('--error', type=float, nargs=6, default=DEMO_ERROR,
                    help='per-joint error RMS (N m) of the white / sine cases')
    ap.add_argument('--no-save', action='store_true')
    args = ap.parse_args()
    error = np.asarray(args.error, dtype=float)

    cases: list[tuple[str, Feedforward | str]] = [
        ('true model', 'ideal'),
        ('delayed 1 period (2 ms)', delayed(1)),
        ('delayed 2 periods (4 ms)', delayed(2)),
        ('+ white error', with_error(error, 'white')),
        ('+ 0.3 Hz error', with_error(error, '0.3')),
        ('+ 5 Hz error', with_error(error, '5')),
        ('friction width 0.05 rad/s (arm: 0.02)', smooth_friction(0.05)),
    ]
    out = Recorder()
    out(format_machine(machine_info()))
    out(f'UR5, 500 Hz, demo PD gains and sensor noise, primary reference (seed 0); '
        f'{args.duration:g} s per case, RMS over t >= {args.skip:g} s; '
        f'error RMS of the white / sine cases (N m): {", ".join(f"{e:g}" for e in error)}')
    rows, data = [], {}
    base = None
    for name, ff in cases:
        rms = tracking_rms(ff, args.duration, args.skip)
        base = rms.mean() if base is None else base
        rows.append([name, *[float(x) for x in rms], float(rms.mean()), float(rms.mean() / base)])
        data[name] = {'tracking_rms_mrad': rms.tolist(), 'mean': float(rms.mean()),
                      'over_true_model': float(rms.mean() / base)}
    out(format_table(['feedforward', *[f'j{i + 1}' for i in range(6)], 'mean mrad',
                      'x true model'], rows, floatfmt='.3f'))
    if not args.no_save:
        save_results('feedforward_sensitivity', out.text,
                     {'machine': machine_info(), 'args': vars(args), 'cases': data})
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
