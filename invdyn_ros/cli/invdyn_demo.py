"""invdyn_demo: the closed-loop demo -- a simulated arm whose torque controller gets its feedforward
from a live invdyn_node, over real ROS 2 topics, headless, in phases.

    invdyn_demo [--duration S] [--robot ur5] [--payload KG] [--seed N] [--output DIR]
                [--payload-change [KG]] [--learning-seconds S] [--real-time-factor X]
                [--unseen-seconds S | --no-unseen]
                [--domain-id auto|env|N] [--node-param NAME=VALUE ...]
                [--controller-param NAME=VALUE ...]

What runs (no launch_ros needed):

- ``invdyn_node`` in a child process (``python -m invdyn_ros.ros.node`` with this interpreter and
  this copy of invdyn_ros, so the demo never mixes versions), with ``config/ur5.yaml`` plus the
  demo's overrides (``config/demo.yaml``, :data:`DEMO_NODE_PARAMETERS`: one 2 x 32 LSTM with
  velocity sign features and windows of 5 instead of the dual 2 x 64 pair, a sliding-window replay
  buffer, a 60 Hz low-pass, the raw effort delayed by the filter's delay as
  the label, an averaged-weights predictor, a learning-rate floor of 3e-4 and (where permitted)
  a SCHED_FIFO control loop, so it learns
  -- and re-learns after a payload change -- on two shared cores) written to ``DIR/invdyn_node_params.yaml``; its output goes to
  ``DIR/invdyn_node.log``. It trains in its own process (ProcessTrainer), as on a real robot.
- ``sim_arm`` (Pinocchio UR5 at 500 Hz, paced at ``--real-time-factor``) and ``torque_controller``
  (PD + feedforward on a Fourier reference; gains 4x its UR5 defaults, see
  :data:`DEMO_GAIN_FACTOR`) in this process, on one executor: on 2 cores fewer processes are
  faster, and the topics are real DDS topics all the same: /joint_states,
  /invdyn_node/reference, /invdyn_node/feedforward, /effort_controller/commands. Simulated time
  is the stamp of every message; if the machine cannot keep up the simulation slows down (the
  achieved rate is reported) rather than skipping.

The phases (``invdyn_ros.sim.demo``): ``pd`` (PD only), ``learning`` (PD + the node's feedforward
while it learns), ``learned`` (PD + learned feedforward, from ``--learning-seconds`` of simulated
learning on), ``trajectory`` (PD + the trajectory feedforward: :data:`TRAJECTORY_LEAD_S` before
the phase the demo, as a planner would, sends the rest of the reference as a JointTrajectory to
the node's ``~/trajectory_in``; the controller adds the point efforts of ``~/trajectory_out`` like
joint_trajectory_controller), ``ideal`` (PD + RNEA with the simulator's own parameters, the
ceiling), and with ``--payload-change`` a ``payload`` phase in which the payload changes (``/sim_arm/payload_kg``) and
the prediction error's jump and recovery are measured. Then the generalization part (the last
``--unseen-seconds``, 60 s by default; ``--no-unseen`` skips it): the controller switches,
continuously, to an *unseen* reference (seed + 1, 1.5x faster, centred 0.6 rad away on every
joint; ``--controller-param unseen_speed=...`` etc. change it) and the demo measures
``learned_unseen``, ``pd_unseen`` and ``ideal_unseen`` on it while the node keeps learning. The
controller's mode and reference are switched at the phase boundaries in simulated time (its
``mode`` and ``reference`` parameters), so the schedule is the same however fast the machine is.

Output in DIR: ``summary.json`` (the contract keys ``tracking_rms_pd``, ``tracking_rms_learned``,
``tracking_rms_ideal``, ``prediction_nmse`` (per joint, rad / 1), ``learning_seconds``,
``sim_rate_hz``; with the unseen part ``tracking_rms_learned_unseen``, ``tracking_rms_pd_unseen``,
``tracking_rms_ideal_unseen`` and ``learned_over_ideal_unseen`` beside ``learned_over_ideal``;
and more), ``tracking_error.png``, ``table.md`` (the per-joint table as Markdown),
the node's params file and log (and ``recording.npz`` with ``--save-recording``). Progress is
printed live; the table at the end. The metrics are defined in ``invdyn_ros.sim.demo``.

Safety: the demo publishes effort commands on ``/effort_controller/commands``, the topic a real
arm's ForwardCommandController listens on. So by default (``--domain-id auto``) it runs on a
private ROS domain (derived from its PID, never the caller's ``ROS_DOMAIN_ID``) with discovery
limited to localhost; ``--domain-id env`` keeps the caller's domain (to watch it with ROS tools --
never next to a real arm).

Exit status: 0 success; 1 the run failed (no valid result); 2 bad options; 3 invdyn_node died or
never came up; 130 interrupted (Ctrl-C / SIGTERM; ``--interrupt-exit-code``). Every child process is stopped on every exit
path (own process group, atexit, and PR_SET_PDEATHSIG so even a killed demo leaves no orphan). A
second stop signal (``ros2 launch`` sends SIGTERM 5 s after SIGINT, then SIGKILL) never abandons
the cleanup; it makes the children's stop go to its next, harder signal at once
(:class:`~invdyn_ros.sim.supervisor.StopSignals`).

Size: just over 500 lines, the argument rules and the run itself (its loop, progress and
summary), with this docstring (the user's reference). Around it: the node's parameters and its
child process in :mod:`invdyn_ros.sim.demo_node` (``config/demo.yaml``, why each value:
``docs/DEMO.md``), the in-process ROS side in :mod:`invdyn_ros.sim.demo_session`, the process
supervision in :mod:`invdyn_ros.sim.supervisor`, the monitor node in
:mod:`invdyn_ros.sim.demo_monitor`, the schedule, record, metrics and summary in
:mod:`invdyn_ros.sim.demo`.
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from invdyn_ros.errors import ConfigError, InvdynError
from invdyn_ros.sim.demo import (UNSEEN_PHASES, DemoError, DemoRecorder, Schedule, build_schedule,
                                 build_summary, default_unseen_s, format_markdown_table,
                                 format_table, plot_run, reference_distance, save_recording,
                                 validate_summary, write_summary)
from invdyn_ros.sim.demo_node import (DEMO_NODE_PARAMETERS, DEMO_PARAMS_FILE,  # noqa: F401
                                      DEMO_URDF_PERTURBATION, NODE_MODULE, NODE_NAME,
                                      find_params_file, load_base_parameters, node_parameters,
                                      start_node, write_params_file)
from invdyn_ros.sim.demo_session import DemoSession
from invdyn_ros.sim.supervisor import STOP_SIGNALS

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NODE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
#: The demo's PD gains: 4 x the UR5 defaults of invdyn_ros.sim.controller (kd critically damped
#: again). Why: with the exact model, PD + ideal feedforward tracks to the position-sensor noise
#: (~0.1 mrad) whatever the gains, while the error left by a learned feedforward is its torque
#: error divided by the stiffness. Measured (150 s default runs, loaded 2-core machine): mean
#: learned / ideal tracking RMS 14.7x with the default gains, 6.7x with 4x, 11.9x with 9x (label
#: noise from the stiffer loop). PD alone still lags by ~13 mrad, so the feedforward's effect
#: stays plain to see (learned cuts it by ~95 %).
DEMO_GAIN_FACTOR = 4.0


def demo_gains() -> tuple[list[float], list[float]]:
    """``(kp, kd)`` of the demo's PD (see :data:`DEMO_GAIN_FACTOR`)."""
    from invdyn_ros.sim.controller import UR5_KP, UR5_TYPICAL_INERTIA, critically_damped_kd

    kp = DEMO_GAIN_FACTOR * np.asarray(UR5_KP, dtype=float)
    kd = critically_damped_kd(kp, UR5_TYPICAL_INERTIA)
    return [float(x) for x in kp], [float(x) for x in kd]


#: torque_controller parameters the demo sets besides the gains (``--controller-param``
#: overrides these). The feedforward's age is judged in wall time; see stale_timeout_s above.
DEMO_CONTROLLER_PARAMETERS: dict[str, Any] = {
    'feedforward_timeout_s': 0.5,
}
#: Default simulated seconds on the primary reference (with / without a payload change); the
#: unseen part (DEFAULT_UNSEEN_S, unless --no-unseen) comes on top: 210 s / 330 s in all.
DEFAULT_DURATION_S = 150.0
DEFAULT_DURATION_PAYLOAD_S = 270.0
DEFAULT_UNSEEN_S = 60.0
DEFAULT_PAYLOAD_CHANGE_KG = 3.0
PROGRESS_EVERY_S = 5.0            # simulated seconds between progress lines
NODE_START_TIMEOUT_S = 180.0      # wall seconds for invdyn_node to appear on the graph
STALL_TIMEOUT_S = 30.0            # wall seconds without simulator progress -> failure
#: Simulated seconds before the trajectory phase at which its JointTrajectory is sent to the
#: node (its annotation and the round trip take well under 0.1 s of wall time).
TRAJECTORY_LEAD_S = 3.0


class UsageError(Exception):
    """Bad options: one line on stderr, exit 2."""


class NodeDied(Exception):
    """invdyn_node exited or never came up: exit 3."""


def controller_parameters(overrides: dict[str, Any]) -> dict[str, Any]:
    """torque_controller's parameters in the demo: :data:`DEMO_CONTROLLER_PARAMETERS` and the demo's
    gains (:func:`demo_gains`), then the user's ``--controller-param`` ``overrides``."""
    params = {**DEMO_CONTROLLER_PARAMETERS, **overrides}
    kp, kd = demo_gains()
    if 'kp' not in params:      # a user kp alone gets kd critically damped by the controller
        params['kp'] = kp
        params.setdefault('kd', kd)
    return params


# ============================================================================ options
def _key_value(text: str) -> tuple[str, Any]:
    if '=' not in text:
        raise argparse.ArgumentTypeError(f'expected NAME=VALUE, got {text!r}')
    key, value = text.split('=', 1)
    try:
        parsed = yaml.safe_load(value) if value.strip() else ''
    except yaml.YAMLError as exc:
        raise argparse.ArgumentTypeError(f'{key}: cannot parse {value!r}: {exc}') from None
    return key.strip(), parsed


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='invdyn_demo', description='Closed-loop demo: a simulated arm tracked by PD + the '
        'learned feedforward of a live invdyn_node over real ROS 2 topics.',
        epilog='Writes DIR/summary.json, DIR/tracking_error.png and DIR/table.md.')
    p.add_argument('--duration', type=float, default=None,
                   help='simulated seconds of motion in all (default '
                        f'{DEFAULT_DURATION_S + DEFAULT_UNSEEN_S:g}: {DEFAULT_DURATION_S:g} on the '
                        f'primary reference + {DEFAULT_UNSEEN_S:g} unseen; '
                        f'{DEFAULT_DURATION_PAYLOAD_S:g} + {DEFAULT_UNSEEN_S:g} with '
                        '--payload-change; without the unseen part with --no-unseen)')
    unseen = p.add_mutually_exclusive_group()
    unseen.add_argument('--unseen-seconds', type=float, default=None, metavar='S',
                        help='simulated seconds at the end on the unseen reference (another seed, '
                             '1.5x faster, centred elsewhere), with learned, PD-only and ideal '
                             f'feedforward (default {DEFAULT_UNSEEN_S:g}; with --duration '
                             'min(60, 2/7 of it)); 0 = none')
    unseen.add_argument('--no-unseen', action='store_true',
                        help='no unseen part (the same as --unseen-seconds 0)')
    p.add_argument('--learning-seconds', type=float, default=None,
                   help='simulated seconds the node learns (from t=0, the PD phase included) '
                        'before the learned phase (default min(60, 0.4 x the primary part, the '
                        'duration minus the unseen part))')
    p.add_argument('--robot', default='ur5', choices=('ur3', 'ur5', 'ur10'),
                   help='simulated robot (example-robot-data URDF)')
    p.add_argument('--payload', type=float, default=0.0, help='payload at the flange (kg)')
    p.add_argument('--payload-change', type=float, nargs='?', const=DEFAULT_PAYLOAD_CHANGE_KG,
                   default=None, metavar='KG',
                   help='add a payload phase in which the payload changes to KG (default '
                        f'{DEFAULT_PAYLOAD_CHANGE_KG:g}) and report the recovery')
    p.add_argument('--seed', type=int, default=0,
                   help='seed of the reference, the sensor noise and the networks')
    p.add_argument('--output', default='results/demo', help='output folder (created)')
    p.add_argument('--real-time-factor', type=float, default=1.0,
                   help='simulated seconds per wall second the simulator aims at')
    p.add_argument('--domain-id', default='auto',
                   help="ROS domain: 'auto' (private, from the PID; default), 'env' (the "
                        "caller's ROS_DOMAIN_ID) or a number 0-101")
    p.add_argument('--node-param', type=_key_value, action='append', default=[],
                   metavar='NAME=VALUE', help='override an invdyn_node parameter (YAML value)')
    p.add_argument('--controller-param', type=_key_value, action='append', default=[],
                   metavar='NAME=VALUE',
                   help='override a torque_controller parameter, e.g. kp=[...] (YAML value)')
    p.add_argument('--save-recording', action='store_true',
                   help='also write DIR/recording.npz: every step\'s tracking error, torques, '
                        'predictions and feedforwards')
    p.add_argument('--node-start-timeout', type=float, default=NODE_START_TIMEOUT_S,
                   help=argparse.SUPPRESS)
    p.add_argument('--interrupt-exit-code', type=int, default=EXIT_INTERRUPTED, metavar='N',
                   help='exit status after a Ctrl-C / SIGTERM stop (default 130; '
                        'sim_demo.launch.py passes 0: under launch that is a clean stop)')
    return p


def _check_args(args: argparse.Namespace) -> None:
    """Fills in the defaults: without --duration the primary part is 150 s (270 s with a payload
    change) and the unseen part comes on top; with --duration the unseen part is its last
    ``default_unseen_s(duration)`` seconds."""
    if args.no_unseen:
        args.unseen_seconds = 0.0
    if args.unseen_seconds is not None and not (math.isfinite(args.unseen_seconds) and
                                                args.unseen_seconds >= 0):
        raise UsageError(f'--unseen-seconds: must be >= 0, got {args.unseen_seconds}')
    if args.duration is None:
        if args.unseen_seconds is None:
            args.unseen_seconds = DEFAULT_UNSEEN_S
        args.duration = args.unseen_seconds + (
            DEFAULT_DURATION_PAYLOAD_S if args.payload_change is not None else DEFAULT_DURATION_S)
    for name in ('duration', 'real_time_factor'):
        value = getattr(args, name)
        if not (math.isfinite(value) and value > 0):
            raise UsageError(f'--{name.replace("_", "-")}: must be > 0, got {value}')
    if args.unseen_seconds is None:
        args.unseen_seconds = default_unseen_s(args.duration)
    for name in ('payload', 'payload_change'):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UsageError(f'--{name.replace("_", "-")}: must be >= 0 kg, got {value}')


# ============================================================================ environment
def choose_domain_id(choice: str, pid: int | None = None,
                     environ: dict[str, str] | None = None) -> str:
    """The ROS_DOMAIN_ID to run on (see the module docstring). 'auto' picks 1..101 from the PID,
    skipping the caller's domain, so the demo never talks to a robot on the caller's domain."""
    environ = os.environ if environ is None else environ
    if choice == 'env':
        return environ.get('ROS_DOMAIN_ID', '0')
    if choice == 'auto':
        current = environ.get('ROS_DOMAIN_ID', '0')
        pid = os.getpid() if pid is None else pid
        domain = 1 + pid % 101
        if str(domain) == current.strip():
            domain = 1 + (domain % 101)
        return str(domain)
    try:
        value = int(choice)
    except ValueError:
        raise UsageError(f"--domain-id: 'auto', 'env' or a number, got {choice!r}") from None
    if not 0 <= value <= 101:
        raise UsageError(f'--domain-id: must be in 0..101, got {value}')
    return str(value)




# ============================================================================ the run
def _say(text: str) -> None:
    print(text, flush=True)


def _progress_line(recorder: DemoRecorder, ros: DemoSession, duration: float, rate_hz: float) -> str:
    t = recorder.motion_time()
    live = recorder.recent(1.0, rate_hz)
    sim_rate = recorder.sim_rate_hz()
    pred = live['prediction_nmse']
    return (f'[{t:6.1f} / {duration:g} s] {ros.phase_name or "-":8s} | sim {sim_rate:5.0f} Hz '
            f'({sim_rate / rate_hz:4.2f}x) | tracking RMS {1e3 * live["tracking_rms"]:7.2f} mrad '
            f'| pred nMSE {"   -  " if not math.isfinite(pred) else f"{pred:6.3f}"} | node '
            f'{"ready" if recorder.ready_now else "not ready" if recorder.ready else "learning"}')


def run(args: argparse.Namespace) -> int:
    from invdyn_ros.sim.arm import ArmConfig, SimulatedArm
    from invdyn_ros.sim.controller_node import CONTROLLER_PARAMETERS

    out = Path(args.output).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    controller_overrides = dict(args.controller_param)
    unknown = sorted(set(controller_overrides) - set(CONTROLLER_PARAMETERS))
    if unknown:
        raise UsageError(f'--controller-param: unknown parameter(s) {unknown}')

    def controller_value(name: str) -> float:
        """A numeric controller parameter the schedule depends on (override or default)."""
        value = controller_overrides.get(name, CONTROLLER_PARAMETERS[name][0])
        try:
            return float(value)
        except (TypeError, ValueError):
            raise UsageError(f'--controller-param {name}: expected a number, got {value!r}') \
                from None

    try:
        schedule = build_schedule(
            args.duration, args.learning_seconds, period_s=1.0 / controller_value('base_freq_hz'),
            ramp_s=controller_value('ramp_s'), payload_change=args.payload_change is not None,
            payload_before_kg=args.payload, payload_after_kg=args.payload_change,
            unseen_s=args.unseen_seconds, unseen_speed=controller_value('unseen_speed'))
        arm = SimulatedArm(ArmConfig(robot=args.robot, payload_kg=args.payload))
    except (DemoError, ConfigError) as exc:
        raise UsageError(str(exc)) from None
    if args.payload_change is not None and args.payload_change > arm.config.max_payload_kg:
        raise UsageError(f'--payload-change: at most {arm.config.max_payload_kg:g} kg')

    # ROS environment: private domain, localhost discovery, logs in the output folder.
    env = os.environ.copy()
    env['ROS_DOMAIN_ID'] = choose_domain_id(args.domain_id)
    if args.domain_id != 'env' or 'ROS_AUTOMATIC_DISCOVERY_RANGE' not in env:
        env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env.setdefault('ROS_LOG_DIR', str(out / 'ros_log'))
    os.environ.update({k: env[k] for k in ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE',
                                           'ROS_LOG_DIR')})

    params_path = out / 'invdyn_node_params.yaml'
    base_file = find_params_file('ur5.yaml')
    params = node_parameters(arm.joint_names, arm.effort_limits, args.seed,
                             load_base_parameters(base_file), dict(args.node_param),
                             robot_urdf=arm.urdf_path.read_text())
    write_params_file(params_path, params)
    rate_hz = 1.0 / arm.config.dt
    _say(f'invdyn_demo: {args.robot}, {args.duration:g} s simulated '
         f'(learned phase from t={schedule.get("learned").start_s:g} s), output {out}, '
         f'ROS_DOMAIN_ID={env["ROS_DOMAIN_ID"]}')
    _say('phases: ' + ', '.join(f'{p.name} {p.start_s:g}-{p.end_s:g} s' for p in schedule.phases)
         + (f'; payload {schedule.payload_before_kg:g} -> {schedule.payload_after_kg:g} kg at '
            f't={schedule.payload_change_s:g} s' if schedule.payload_change_s is not None else ''))
    _say(f'invdyn_node params: {params_path} (base: {base_file or "built-in defaults"}); '
         f'log: {out / "invdyn_node.log"}')

    # The child first, before this process starts its ROS threads.
    node = start_node(params_path, env, out / 'invdyn_node.log')
    _say(f'invdyn_node started: pid {node.proc.pid} (process group {node.pgid})')
    recorder = DemoRecorder(arm.joint_names)
    ros = None
    try:
        ros = DemoSession(args, recorder, schedule, controller_parameters(controller_overrides))
        _say('waiting for invdyn_node to come up ...')
        started = time.monotonic()
        deadline = started + args.node_start_timeout
        while not ros.node_is_up():
            status = node.poll()
            if status is not None:
                raise NodeDied(f'invdyn_node exited with status {status} during start-up')
            if time.monotonic() > deadline:
                raise NodeDied(f'invdyn_node did not come up within {args.node_start_timeout:g} s')
            time.sleep(0.2)
        ros.start_arm()
        _say(f'invdyn_node is up after {time.monotonic() - started:.1f} s; simulator and '
             'controller started')

        wall_start = time.monotonic()
        trajectory_phase = schedule.get('trajectory')
        switches_seen = 0
        next_print = 0.0
        last_t, last_progress = -1.0, time.monotonic()
        phase_seen = None
        while not ros.done.is_set():
            time.sleep(0.2)
            status = node.poll()
            if status is not None:
                raise NodeDied(f'invdyn_node exited with status {status} at '
                               f't={recorder.motion_time():.1f} s')
            while ros.errors:
                _say(f'warning: {ros.errors.popleft()}')
            t = recorder.motion_time()
            now = time.monotonic()
            if t > last_t:
                last_t, last_progress = t, now
            elif now - last_progress > STALL_TIMEOUT_S:
                raise DemoError(f'the simulation stalled at t={t:.1f} s (no progress for '
                                f'{STALL_TIMEOUT_S:g} s of wall time)')
            if trajectory_phase is not None and ros.trajectory_sent is None and \
                    recorder.t0_ns is not None and ros.controller.trajectory is not None and \
                    t >= trajectory_phase.start_s - TRAJECTORY_LEAD_S:
                sent = ros.send_trajectory(trajectory_phase.start_s, trajectory_phase.end_s)
                _say(f'sent the reference {sent["start_s"]:g}-{sent["end_s"]:g} s as a '
                     f'JointTrajectory of {sent["points"]} points to /{NODE_NAME}/trajectory_in '
                     f'at t={sent["sent_at_s"]:.1f} s')
            if ros.phase_name != phase_seen and recorder.t0_ns is not None:
                phase_seen = ros.phase_name
                phase = schedule.get(phase_seen)
                _say(f'--- phase {phase.name} ({phase.mode} feedforward, {phase.reference} '
                     f'reference) from t={phase.start_s:g} s')
            if ros.controller is not None and len(ros.controller.switches) > switches_seen:
                switch = ros.controller.switches[switches_seen]
                switches_seen += 1
                _say(f'controller: reference -> {switch["reference"]} at t={switch["t_s"]:.3f} s, '
                     f'blended in over {switch["ramp_s"]:g} s')
            if t >= next_print and recorder.t0_ns is not None:
                _say(_progress_line(recorder, ros, schedule.duration_s, rate_hz))
                next_print = (math.floor(t / PROGRESS_EVERY_S) + 1) * PROGRESS_EVERY_S
        _say(_progress_line(recorder, ros, schedule.duration_s, rate_hz))
        wall = time.monotonic() - wall_start
        counters = ros.counters()
    finally:
        if ros is not None:
            ros.close()
        status = node.stop()
    counters['node_exit_status'] = status
    if status not in (0, None):
        _say(f'warning: invdyn_node exited with status {status} when stopped; see '
             f'{out / "invdyn_node.log"}')

    run_data = recorder.snapshot(counters)
    summary = build_summary(run_data, schedule, rate_hz=rate_hz, extra={
        'robot': args.robot, 'payload_kg': args.payload, 'seed': args.seed,
        'real_time_factor_target': args.real_time_factor, 'wall_seconds_total': wall,
        'node_parameters': params,
        **({'trajectory_feedforward': ros.trajectory_sent} if ros.trajectory_sent else {}),
        **({'unseen_reference': unseen_reference(ros.controller, schedule)}
           if schedule.unseen_start_s is not None and ros.controller is not None else {})})
    validate_summary(summary, len(arm.joint_names))
    write_summary(out / 'summary.json', summary)
    (out / 'table.md').write_text(format_markdown_table(summary))
    plot_run(run_data, schedule, out / 'tracking_error.png', summary)
    if args.save_recording:
        save_recording(out / 'recording.npz', run_data)
    _say('')
    _say(format_table(summary))
    _say('')
    _say(f'wrote {out / "summary.json"}, {out / "tracking_error.png"}, {out / "table.md"}')
    return EXIT_OK


def unseen_reference(controller, schedule: Schedule) -> dict[str, Any]:
    """summary.json's description of the unseen reference and of the switch to it: seed, speed,
    centre offset, period, the switch's time and blend (and whether the blend was over before the
    learned_unseen measure window, as the schedule assumed), and how far its poses are from the
    primary reference's (:func:`invdyn_ros.sim.demo.reference_distance`, one period of each)."""
    primary = controller.reference_trajectory('primary')
    unseen = controller.reference_trajectory('unseen')
    out: dict[str, Any] = {
        'seed': int(unseen.seed), 'speed': float(unseen.speed),
        'center_offset_rad': [float(x) for x in unseen.center - primary.center],
        'period_s': float(unseen.period_s),
        'max_velocity_rad_s': float(unseen.max_velocity),
        'max_acceleration_rad_s2': float(unseen.max_acceleration),
        'distance_to_primary': reference_distance(
            primary.sample(np.linspace(0.0, primary.period_s, 1000, endpoint=False))[0],
            unseen.sample(np.linspace(0.0, unseen.period_s, 500, endpoint=False))[0]),
    }
    switch = next((s for s in controller.switches if s['reference'] == 'unseen'), None)
    if switch is not None:
        window = schedule.get(UNSEEN_PHASES[0]).measure_start_s
        out['switch'] = dict(switch, blend_over_before_measure_window=bool(
            switch['t_s'] + switch['ramp_s'] <= window + 1e-9))
    return out


def strip_ros_args(argv: list[str]) -> list[str]:
    """``argv`` without a ``--ros-args ... [--]`` section (launch_ros may append one; the demo's
    nodes take their parameters from the demo's options, not from the command line)."""
    out, inside = [], False
    for arg in argv:
        if arg == '--ros-args':
            inside = True
        elif inside and arg == '--':
            inside = False
        elif not inside:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = strip_ros_args(list(sys.argv[1:] if argv is None else argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse printed usage / --help
        return int(exc.code or 0)

    # SIGTERM takes the same clean path as Ctrl-C; a second signal hurries it (StopSignals).
    STOP_SIGNALS.interrupted, STOP_SIGNALS.extra = False, 0
    previous = {sig: signal.signal(sig, STOP_SIGNALS) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _check_args(args)
        return run(args)
    except UsageError as exc:
        print(f'invdyn_demo: error: {exc}', file=sys.stderr)
        return EXIT_USAGE
    except NodeDied as exc:
        log = Path(args.output).expanduser() / 'invdyn_node.log'
        print(f'invdyn_demo: error: {exc}; see {log}', file=sys.stderr)
        try:
            tail = log.read_text(errors='replace').splitlines()[-15:]
            print('\n'.join('  | ' + line for line in tail), file=sys.stderr)
        except OSError:
            pass
        return EXIT_NODE
    except KeyboardInterrupt:
        print('invdyn_demo: interrupted; child processes stopped, no summary written',
              file=sys.stderr)
        return args.interrupt_exit_code
    except (DemoError, InvdynError) as exc:
        print(f'invdyn_demo: error: {exc}', file=sys.stderr)
        return EXIT_FAILED
    finally:
        # After an interrupt the cleanup is done and only the exit is left: a later signal
        # (launch's SIGTERM after its SIGINT) must not turn exit 130 / 0 into -15. A Python
        # handler is not enough -- interpreter finalization puts SIG_DFL back in its place
        # (CI once got -15 from a SIGTERM 0.05 s after the SIGINT) -- SIG_IGN stays.
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_IGN if STOP_SIGNALS.interrupted else handler)


if __name__ == '__main__':
    sys.exit(main())
