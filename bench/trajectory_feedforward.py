"""Trajectory feedforward (point efforts for joint_trajectory_controller) vs the per-sample
(topic) feedforward, on the simulated UR5, in-process (no ROS).

1. Record ``--train-s`` of the simulated arm (Pinocchio, friction, the simulator's default sensor
   noise) tracking the demo's Fourier reference with the demo's PD alone, and learn it: the demo's
   node parameters (config/ur5.yaml + config/demo.yaml, the +-25 % URDF) through ``Pipeline.process`` with
   an InlineTrainer, then ``--epochs`` extra passes of Adam steps over the replay buffer.
2. Track the same reference for ``--track-s`` from the same start with
   (a) PD only, (b) PD + the per-sample learned feedforward -- ``Pipeline.predict_reference``
   at every control step, what ``~/reference`` -> ``~/feedforward`` computes --, (c) PD + the
   trajectory feedforward: the reference as a JointTrajectory of points every ``--point-dt`` s
   (positions, velocities, accelerations; one run per spacing), annotated once by
   ``annotate_trajectory`` and followed by ``sim.controller.TrajectoryFollower`` (JTC-like:
   spline states, efforts linearly interpolated) -- for each spacing above ``--max-point-dt`` once
   more with points inserted (the node's ``trajectory_max_point_dt``) --, and (d) PD + the ideal
   feedforward (``rnea``), the ceiling.
3. Print the tracking RMS (mrad, after the ramp-in, mean over joints and per joint), the ratio
   (c) / (b), and the annotation time for 1000 points with these networks and with
   config/ur5.yaml's (dual 2 x 64 LSTM + GRU, window 10).

    python bench/trajectory_feedforward.py [--train-s 60] [--track-s 40] [--epochs 2]
        [--point-dt 0.02,0.1] [--max-point-dt 0.02]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch  # noqa: E402

from common import REPO, format_machine, machine_info  # noqa: F401 (sets sys.path)
from reference_feedforward import pipeline_config  # noqa: E402 (the bench script beside)
from invdyn_ros.cli.invdyn_demo import demo_gains  # noqa: E402
from invdyn_ros.cli.invdyn_eval import load_params  # noqa: E402
from invdyn_ros.pipeline.pipeline import Pipeline, PipelineConfig, make_trainer  # noqa: E402
from invdyn_ros.pipeline.trajectory_feedforward import annotate_trajectory  # noqa: E402
from invdyn_ros.sim.arm import UR_HOME, ArmConfig, SimulatedArm, find_robot_urdf  # noqa: E402
from invdyn_ros.sim.controller import PDController, TrajectoryFollower, track  # noqa: E402
from invdyn_ros.sim.trajectory import FourierTrajectory  # noqa: E402

NOISE = dict(position_noise_std=1e-4, velocity_noise_std=2e-3, effort_noise_std=0.2)


def make_arm(seed: int) -> SimulatedArm:
    return SimulatedArm(ArmConfig(robot='ur5', initial_positions=list(UR_HOME), seed=seed,
                                  **NOISE))


def make_reference(arm: SimulatedArm, seed: int) -> FourierTrajectory:
    return FourierTrajectory(arm.n, seed=seed, center=np.array(UR_HOME[:arm.n]),
                             start=arm.true_state()[0], lower=arm.lower_limits,
                             upper=arm.upper_limits)


def record(arm, reference, pd, duration_s):
    """PD alone along the reference; the measured (noisy) q, qd, effort per period."""
    dt = arm.config.dt
    steps = int(round(duration_s / dt))
    n = arm.n
    t = np.zeros(steps)
    q, qd, tau = np.zeros((steps, n)), np.zeros((steps, n)), np.zeros((steps, n))
    for k in range(steps):
        tk = arm.time
        q_d, qd_d, _ = reference.sample(tk)
        q_m, qd_m, tau_m = arm.measure()
        arm.step(pd.compute(q_d, qd_d, q_m, qd_m))
        t[k], q[k], qd[k], tau[k] = tk, q_m, qd_m, tau_m
    return t, q, qd, tau


def rms_mrad(run, start_s):
    keep = run['t'] >= start_s
    return 1e3 * np.sqrt(np.mean((run['q'][keep] - run['q_d'][keep]) ** 2, axis=0))


def annotation_time(pipeline, reference, points=1000, dt=0.02, repeats=3, prior=None):
    times = np.arange(points) * dt
    q, qd, qdd = reference.sample(times)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        annotate_trajectory(pipeline, pipeline.config.joint_names, times, q, qd, qdd,
                            prior=prior, require_ready=False)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--train-s', type=float, default=60.0)
    ap.add_argument('--track-s', type=float, default=40.0)
    ap.add_argument('--epochs', type=float, default=2.0,
                    help='extra Adam steps after the stream, in passes over the buffer')
    ap.add_argument('--point-dt', default='0.02,0.1',
                    help='spacings of the trajectory points (s), comma-separated: one '
                         'trajectory-feedforward run each')
    ap.add_argument('--max-point-dt', type=float, default=0.02,
                    help='one more run for each spacing above it: the same trajectory with '
                         'points inserted every <= this (s), as the node\'s '
                         'trajectory_max_point_dt; 0: none')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--timing-only', action='store_true',
                    help='only the annotation time of config/ur5.yaml\'s networks')
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    print(format_machine(machine_info()))

    arm = make_arm(args.seed)
    reference = make_reference(arm, args.seed)
    kp, kd = demo_gains()
    pd = PDController(kp, kd, arm.effort_limits)
    base = load_params(REPO / 'config' / 'ur5.yaml')
    # the demo node's parameters (config/ur5.yaml + config/demo.yaml, the +-25 % URDF)
    config = pipeline_config(arm, {'seed': args.seed, 'rate_hz': 1.0 / arm.config.dt})
    if args.timing_only:
        ur5_timing(base, arm, reference)
        return 0

    # 1. record and learn
    t0 = time.perf_counter()
    t, q, qd, tau = record(arm, reference, pd, args.train_s)
    trainer = make_trainer(config, 'inline')
    pipe = Pipeline(config, trainer)
    for i in range(len(t)):
        pipe.process(1.0 + t[i], q[i], qd[i], tau[i])
    for lr in trainer.learners.values():
        for _ in range(int(args.epochs * len(lr.buffer) / lr.config.batch_size)):
            lr.step()
    pipe.refresh_weights()
    steps = {k: v.steps for k, v in trainer.learners.items()}
    print(f'learned {len(t)} samples ({args.train_s:g} s at {1 / arm.config.dt:g} Hz) in '
          f'{time.perf_counter() - t0:.0f} s: Adam steps {steps}, ready {pipe.ready}, '
          f'recent nMSE {pipe.recent_nmse:.4f}')

    # 2. track the same reference from the same start
    runs = {}

    def fresh():
        a = make_arm(args.seed + 1)           # other sensor noise than in training
        return a, make_reference(a, args.seed)

    a, ref = fresh()
    runs['pd'] = track(a, ref, pd, args.track_s)
    a, ref = fresh()
    for p in pipe.ref_predictors.values():
        p.reset_stream()

    def per_sample(tk, q_d, qd_d, qdd_d):
        return pipe.predict_reference(q_d, qd_d, qdd_d, stamp=tk)

    runs['learned (per sample)'] = track(a, ref, pd, args.track_s, feedforward=per_sample)
    notes = []
    variants = [(float(x), 0.0) for x in args.point_dt.split(',')]
    variants += [(dt_s, args.max_point_dt) for dt_s, _ in variants
                 if 0 < args.max_point_dt < dt_s]
    for dt_s, max_point_dt in variants:
        a, ref = fresh()
        times = np.arange(0.0, args.track_s + dt_s, dt_s)
        pq, pqd, pqdd = ref.sample(times)
        t1 = time.perf_counter()
        res = annotate_trajectory(pipe, config.joint_names, times, pq, pqd, pqdd,
                                  require_ready=False, max_point_dt=max_point_dt)
        annotate_s = time.perf_counter() - t1
        if res.inserted:         # what JTC gets from the node: the points with the inserted ones
            pq, pqd, pqdd = res.points[:3]
        follower = TrajectoryFollower(res.times, pq, pqd, pqdd, res.efforts)
        label = f'trajectory ({1e3 * dt_s:g} ms' + \
            (f', + points <= {1e3 * max_point_dt:g} ms)' if max_point_dt else ')')
        runs[label] = track(a, follower, pd, args.track_s, feedforward=follower.feedforward)
        notes.append(f'{label}: {len(res.times)} points ({res.inserted} inserted) annotated in '
                     f'{1e3 * annotate_s:.0f} ms, {res.n_outside} outside the trained region')
    a, ref = fresh()
    runs['ideal'] = track(a, ref, pd, args.track_s, feedforward='ideal')

    start = ref.ramp_duration + 2.0
    print('\n' + '\n'.join(notes))
    print(f'tracking RMS after t = {start:.1f} s (mrad):')
    names = [j.replace('_joint', '') for j in config.joint_names]
    print(f'{"feedforward":38s} {"mean":>7s} ' + ' '.join(f'{x[:9]:>9s}' for x in names))
    rms = {}
    for name, run in runs.items():
        r = rms_mrad(run, start)
        rms[name] = r
        print(f'{name:38s} {r.mean():7.3f} ' + ' '.join(f'{x:9.3f}' for x in r))
    for label in (k for k in rms if k.startswith('trajectory')):
        ratio = rms[label].mean() / rms['learned (per sample)'].mean()
        print(f'{label} / learned (per sample) tracking RMS: {ratio:.3f} (target <= 1.2)')

    # 3. annotation cost
    print(f'\nannotation of 1000 points (best of 3), this machine:')
    print(f'  these networks ({config.learner.model} {config.learner.model_options}, window '
          f'{config.learner.window}, dual {config.dual_enabled}): '
          f'{1e3 * annotation_time(pipe, ref):.1f} ms')
    ur5_timing(base, arm, ref)
    return 0


def ur5_timing(base, arm, reference) -> None:
    """Annotation time of config/ur5.yaml's dual networks, with one of them in use for every
    joint (only it runs) and with both in use."""
    ur5 = dict(base, joint_names=list(arm.joint_names),
               torque_limits=[float(x) for x in arm.effort_limits], rate_hz=500.0,
               robot_description=find_robot_urdf('ur5').read_text())
    cfg5 = PipelineConfig.from_params(ur5)
    pipe5 = Pipeline(cfg5, make_trainer(cfg5, 'inline'))
    prior = pipe5.physics.prior.predict_many
    for label, active in (('one network in use', np.zeros(arm.n, dtype=np.int64)),
                          ('both in use', np.arange(arm.n) % 2)):
        pipe5.identifier._active[:] = active     # the identifier's choice, as if learned
        print(f'  config/ur5.yaml with the UR5 URDF ({cfg5.network_names}, hidden {base["hidden_size"]}, '
              f'window {cfg5.learner.window}), {label}: '
              f'{1e3 * annotation_time(pipe5, reference, prior=prior):.1f} ms')
    demo_timing(arm, reference)


def demo_timing(arm, reference, seconds=5.0, repeats=20) -> None:
    """The demo node's configuration (config/ur5.yaml + config/demo.yaml: prior rnea with the
    +-25 % URDF, the residual LSTM beside the GRU) after ``seconds`` of the arm under PD: the
    node freezes it in its control thread (``FrozenPipeline``), then annotates in the relay's
    thread. Medians of ``repeats``."""
    from invdyn_ros.pipeline.frozen import FrozenPipeline  # noqa: PLC0415
    cfg = pipeline_config(arm, {})
    pipe = Pipeline(cfg, make_trainer(cfg, 'inline'))
    kp, kd = demo_gains()
    t, q, qd, tau = record(arm, reference, PDController(kp, kd, arm.effort_limits), seconds)
    for i in range(len(t)):
        pipe.process(t[i], q[i], qd[i], tau[i])
        pipe.finish()
    if not pipe.ready:          # the node freezes nothing then: the trajectory passes through
        print(f'  the demo node: not ready after {seconds} s, no freeze / annotation to time')
        pipe.close()
        return
    freeze, annotate = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        frozen = FrozenPipeline(pipe)
        freeze.append(time.perf_counter() - t0)
        annotate.append(annotation_time(frozen, reference, points=1127, repeats=1,
                                        prior=frozen.physics.prior.predict_many))
    pipe.close()
    print(f'  the demo node ({cfg.network_names}, window {cfg.learner.window}), 1127 points: '
          f'frozen in {1e3 * np.median(freeze):.2f} ms (control thread), annotated in '
          f'{1e3 * np.median(annotate):.1f} ms (relay thread)')
    message_timing(arm.joint_names, reference, repeats)


def message_timing(names, reference, repeats, points=1127, dt=0.02) -> None:
    """rclpy's conversion of such a JointTrajectory, which holds the GIL: taking it (the node's
    subscription, control thread) and publishing it with efforts (relay thread)."""
    try:
        from rclpy.serialization import deserialize_message, serialize_message  # noqa: PLC0415
        from trajectory_msgs.msg import JointTrajectory  # noqa: PLC0415
    except ImportError:
        print('  (rclpy not importable: no message timing)')
        return
    from invdyn_ros.ros.trajectory_msgs_io import fill_efforts, trajectory_message  # noqa: PLC0415
    times = np.arange(points) * dt
    q, qd, qdd = reference.sample(times)
    data = bytes(serialize_message(trajectory_message(names, times, q, qd, qdd, 0)))
    take, publish = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        msg = deserialize_message(data, JointTrajectory)
        t1 = time.perf_counter()
        fill_efforts(msg, q)
        t2 = time.perf_counter()
        serialize_message(msg)
        publish.append(time.perf_counter() - t2)
        take.append(t1 - t0)
    print(f'  rclpy, {points} points ({len(data)} bytes): taking the message '
          f'{1e3 * np.median(take):.1f} ms, converting it to publish {1e3 * np.median(publish):.1f}'
          ' ms (medians; both hold the GIL)')


if __name__ == '__main__':
    raise SystemExit(main())
