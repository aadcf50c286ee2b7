#!/usr/bin/env python3
"""The demo's closed loop without ROS: where the learned feedforward's error comes from, joint by
joint, deterministic.

``invdyn_demo`` measures learned / ideal tracking on a shared machine, where one run differs from
the next by +-0.1x (the trainer's progress depends on the CPU it gets, stalls add delays). This
script runs the same loop in one process, the same every time: the demo's simulated UR5 (sensor
noise, PD gains ``invdyn_demo.demo_gains``, the controller's primary reference), and a
:class:`~invdyn_ros.pipeline.pipeline.Pipeline` built from the demo's node parameters
(``config/ur5.yaml`` + ``config/demo.yaml``, the +-25 % URDF) with the residual networks trained
inline (``updates_per_sample`` of them per sample: the trainer process's pace in the demo, about
0.5 at 0.73x real time). At each period: the measured sample goes through the pipeline, the
reference one period ahead through ``predict_reference`` (the node's preview), and the command
applied in the next period is what the node's gate would send: that prediction when the pipeline
is ready, the prior alone while only it is (``feedforward_fallback: prior``), zeros before. As
in the demo, where the simulator applies the command the controller sent after its last joint
state, each command reaches the arm one period after the state it was computed from. The ideal
run (the true model's feedforward) uses the same noise.

Reported per joint, over ``--score-from`` to the end: the tracking RMS (mrad) with the learned
feedforward and with the ideal one against the measured position, as the demo scores it (its
0.1 mrad of sensor noise is most of the ideal's error; against the true position on a line
below), their ratio, and the feedforward's error against the true
model (N m RMS, split into bands below 0.5 Hz, 0.5-5 Hz, above 5 Hz)::

    .venv/bin/python bench/reference_feedforward.py [--duration 150] [--score-from 60]
        [--set identification_memory_s=30 ...] [--updates-per-sample 0.5] [--label NAME]
        [--arrays FILE.npz] [--gap START,SECONDS]

``--gap 102,0.145``: the node gets no joint state and answers no reference for 145 ms from
t = 102 s (what a stalled node or lost states do; the controller holds the last feedforward for
its 50 ms timeout, then applies none), and the feedforward error around it is printed.

Saves ``bench/results/reference_feedforward[_LABEL].{txt,json}``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import yaml
from scipy import signal

from common import Recorder, format_machine, format_table, machine_info, save_results
from invdyn_ros.cli.invdyn_demo import demo_gains
from invdyn_ros.pipeline.parameters import NODE_ONLY_PARAMETERS
from invdyn_ros.pipeline.pipeline import Pipeline, PipelineConfig, make_trainer
from invdyn_ros.sim.arm import UR_HOME, ArmConfig, SimulatedArm, find_robot_urdf
from invdyn_ros.sim.controller import PDController
from invdyn_ros.sim.demo_node import find_params_file, load_base_parameters, node_parameters
from invdyn_ros.sim.trajectory import FourierTrajectory

#: The demo's sensor noise (sim_arm_node's defaults).
NOISE = dict(position_noise_std=1e-4, velocity_noise_std=2e-3, effort_noise_std=0.2)
#: torque_controller's feedforward_timeout_s: how long it applies the last feedforward it got.
FEEDFORWARD_TIMEOUT_S = 0.05
#: The feedforward error's bands (Hz).
BANDS = ((0.0, 0.5), (0.5, 5.0), (5.0, np.inf))


def pipeline_config(arm: SimulatedArm, overrides: dict) -> PipelineConfig:
    params = node_parameters(arm.joint_names, arm.effort_limits, 0,
                             load_base_parameters(find_params_file('ur5.yaml')), overrides,
                             robot_urdf=find_robot_urdf('ur5').read_text())
    for name in NODE_ONLY_PARAMETERS:
        params.pop(name, None)
    return PipelineConfig.from_params(params)


def reference(arm: SimulatedArm) -> FourierTrajectory:
    """torque_controller's primary reference with its default parameters."""
    return FourierTrajectory(arm.n, seed=0, center=np.array(UR_HOME[:arm.n]),
                             lower=arm.lower_limits, upper=arm.upper_limits,
                             start=arm.true_state()[0])


def run(duration: float, overrides: dict | None, noise: dict,
        gap: tuple[float, float] | None = None) -> dict[str, np.ndarray]:
    """The closed loop for ``duration`` s: with the pipeline's feedforward (``overrides``: node
    parameters) or, for None, the true model's; ``noise``: the sensor noise. ``gap`` (start,
    seconds): the node gets no sample and answers no reference then (a stalled node, or states
    lost on the way); the controller holds its last feedforward for ``FEEDFORWARD_TIMEOUT_S``,
    then applies none."""
    arm = SimulatedArm(ArmConfig(robot='ur5', seed=0, **noise))
    traj = reference(arm)
    kp, kd = demo_gains()
    controller = PDController(kp, kd, arm.effort_limits)
    dt = arm.config.dt
    steps = int(round(duration / dt))
    n = arm.n
    out = {k: np.zeros((steps, n)) for k in ('q_d', 'qd_d', 'q', 'q_m', 'ff', 'ideal', 'model')}
    out['source'] = np.zeros(steps, dtype=np.int8)     # 0 zeros, 1 prior alone, 2 learned
    pl = None
    if overrides is not None:
        cfg = pipeline_config(arm, overrides)
        pl = Pipeline(cfg, make_trainer(cfg, 'inline'))
    ff, source, ff_time = np.zeros(n), 0, 0.0
    model = np.zeros(n)       # the identified model alone at the reference (zeros without one)
    previous = np.zeros(n)
    try:
        for k in range(steps):
            t = arm.time
            q_d, qd_d, qdd_d = traj.sample(t)
            q_m, qd_m, tau_m = arm.measure()
            ideal = arm.rnea(q_d, qd_d, qdd_d)
            applied = ideal if pl is None else ff
            tau = controller.compute(q_d, qd_d, q_m, qd_m, applied)
            q, _ = arm.true_state()
            out['q_d'][k], out['qd_d'][k], out['q'][k], out['q_m'][k] = q_d, qd_d, q, q_m
            out['ff'][k], out['ideal'][k], out['model'][k] = applied, ideal, model
            out['source'][k] = 2 if pl is None else source
            arm.step(previous)                         # the command of the period before
            previous = tau
            if pl is not None and gap is not None and gap[0] <= t < gap[0] + gap[1]:
                if t - ff_time >= FEEDFORWARD_TIMEOUT_S:
                    ff, source = np.zeros(n), 0
            elif pl is not None:
                ff_time = t
                # the node: the sample measured at t, then the reference for t + dt
                pl.process(t, q_m, qd_m, tau_m)
                pl.finish()
                torque = pl.predict_reference(*traj.sample(t + dt), stamp=t + dt)
                prior = pl.prior_torque(reference=True)
                model = np.zeros(n) if prior is None else prior
                if pl.ready and torque is not None:
                    ff, source = torque, 2
                elif pl.fallback_ready and prior is not None:
                    ff, source = prior, 1
                else:
                    ff, source = np.zeros(n), 0
        if pl is not None:
            out['stats'] = pl.stats()
    finally:
        if pl is not None:
            pl.close()
    out['t'] = np.arange(steps) * dt
    return out


def gap_table(learned: dict, start: float, before: float = 1.0, after: float = 5.0,
              step: float = 0.5) -> str:
    """The feedforward error (N m RMS, all joints and the worst) in ``step`` s slices from
    ``before`` s before the gap to ``after`` s after its start."""
    t, err = learned['t'], learned['ff'] - learned['ideal']
    rows = []
    for lo in np.arange(start - before, start + after, step):
        sel = (t >= lo) & (t < lo + step)
        if sel.any():
            per_joint = np.sqrt(np.mean(err[sel] ** 2, axis=0))
            rows.append([f'{lo - start:+.1f} s', float(np.sqrt(np.mean(err[sel] ** 2))),
                         float(per_joint.max()), f'j{int(per_joint.argmax()) + 1}'])
    return 'feedforward error around the gap (from its start):\n' + format_table(
        ['slice from', 'ff error N m', 'worst joint N m', 'worst'], rows, floatfmt='.4f')


def band_rms(err: np.ndarray, rate: float) -> list[list[float]]:
    """RMS of ``err`` (T, n) per band of :data:`BANDS` (Welch's PSD integrated), per joint."""
    f, p = signal.welch(err, fs=rate, nperseg=min(len(err), int(20 * rate)), axis=0)
    df = f[1] - f[0]
    return [np.sqrt(p[(f >= lo) & (f < hi)].sum(axis=0) * df).tolist() for lo, hi in BANDS]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--duration', type=float, default=150.0, help='simulated seconds')
    ap.add_argument('--score-from', type=float, default=60.0)
    ap.add_argument('--updates-per-sample', type=float, default=0.5)
    ap.add_argument('--set', action='append', default=[], metavar='NAME=VALUE',
                    help='a node parameter on top of the demo\'s (YAML value)')
    ap.add_argument('--noise', action='append', default=[], metavar='NAME=STD',
                    help='a sensor noise other than the demo\'s (diagnosis only), e.g. '
                         'velocity_noise_std=0')
    ap.add_argument('--gap', default=None, metavar='START,SECONDS',
                    help='the node gets no joint state and answers no reference for SECONDS '
                         'from START (e.g. 102,0.145: a stalled node); prints the feedforward '
                         'error around it')
    ap.add_argument('--label', default='')
    ap.add_argument('--arrays', default=None, metavar='FILE.npz',
                    help='also save the learned run (t, q_d, qd_d, q, q_m, ff, ideal, source, '
                         'model: the identified model alone at the reference)')
    args = ap.parse_args()
    torch.set_num_threads(1)
    overrides = {'updates_per_sample': args.updates_per_sample}
    for item in args.set:
        name, _, value = item.partition('=')
        overrides[name] = yaml.safe_load(value)
    out = Recorder()
    out(format_machine(machine_info()))
    out(f'demo loop without ROS, {args.duration:g} s, scored from {args.score_from:g} s; node '
        f'parameters on top of the demo\'s: {overrides}')
    t0 = time.perf_counter()
    noise = dict(NOISE)
    for item in args.noise:
        name, _, value = item.partition('=')
        if name not in NOISE:
            ap.error(f'--noise: one of {sorted(NOISE)}')
        noise[name] = float(value)
    if noise != NOISE:
        out(f'sensor noise (not the demo\'s): {noise}')
    gap = tuple(float(x) for x in args.gap.split(',')) if args.gap else None
    if gap is not None:
        out(f'a gap of {gap[1]:g} s from t = {gap[0]:g} s: no samples, no references')
    ideal = run(args.duration, None, noise)
    learned = run(args.duration, overrides, noise, gap)
    out(f'both runs in {time.perf_counter() - t0:.0f} s')
    if args.arrays:
        np.savez_compressed(args.arrays, **{k: v for k, v in learned.items() if k != 'stats'})
    sel = learned['t'] >= args.score_from
    # the demo's measure: q_d - q as the controller measures it (0.1 mrad of sensor noise)
    rms = {name: 1e3 * np.sqrt(np.mean((r['q_d'][sel] - r['q_m'][sel]) ** 2, axis=0))
           for name, r in (('learned', learned), ('ideal', ideal))}
    true_rms = {name: 1e3 * np.sqrt(np.mean((r['q_d'][sel] - r['q'][sel]) ** 2, axis=0))
                for name, r in (('learned', learned), ('ideal', ideal))}
    err = learned['ff'][sel] - learned['ideal'][sel]
    bands = band_rms(err, 1.0 / (learned['t'][1] - learned['t'][0]))
    share = np.bincount(learned['source'][sel], minlength=3) / sel.sum()
    rows = []
    for j in range(err.shape[1]):
        rows.append([f'j{j + 1}', rms['learned'][j], rms['ideal'][j],
                     rms['learned'][j] / rms['ideal'][j], float(np.sqrt(np.mean(err[:, j] ** 2))),
                     *[b[j] for b in bands]])
    ratio = rms['learned'].mean() / rms['ideal'].mean()
    rows.append(['mean', rms['learned'].mean(), rms['ideal'].mean(), ratio,
                 float(np.sqrt(np.mean(err ** 2))), *[float(np.mean(b)) for b in bands]])
    out(format_table(['joint', 'learned mrad', 'ideal mrad', 'ratio', 'ff error N m',
                      '< 0.5 Hz', '0.5-5 Hz', '> 5 Hz'], rows, floatfmt='.4f'))
    true_ratio = true_rms['learned'].mean() / true_rms['ideal'].mean()
    learned_true, ideal_true = (np.round(true_rms[k], 4).tolist() for k in ('learned', 'ideal'))
    out(f'the same against the true, noise-free position: learned {learned_true}, ideal '
        f'{ideal_true} mrad, {true_ratio:.2f}x')
    out(f'learned / ideal (mean tracking RMS): {ratio:.2f}x; feedforward source while scored: '
        f'learned {share[2]:.1%}, prior alone {share[1]:.1%}, zeros {share[0]:.1%}')
    if gap is not None:
        out(gap_table(learned, gap[0]))
    stats = learned.get('stats', {})
    out(f"identifier_switches: {stats.get('identifier_switches')}; ready: {stats.get('ready')}")
    name = 'reference_feedforward' + (f'_{args.label}' if args.label else '')
    save_results(name, out.text, {'machine': machine_info(), 'args': vars(args),
                                  'overrides': overrides, 'ratio': float(ratio),
                                  'ratio_true_position': float(true_ratio),
                                  'tracking_rms_mrad': {k: v.tolist() for k, v in rms.items()},
                                  'ff_error_rms': [r[4] for r in rows[:-1]],
                                  'ff_error_bands': bands})
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
