"""ROS 2 node ``torque_controller``: joint PD + feedforward on ``/joint_states`` (demo controller).

Each valid ``/joint_states`` message is one control step at its stamp ``t``:

1. the reference for the *next* step, ``t + reference_preview_s``, is published on
   ``/invdyn_node/reference`` (trajectory_msgs/JointTrajectoryPoint with positions, velocities,
   accelerations, ``time_from_start`` = trajectory time). Why ahead: the learned feedforward comes
   back asynchronously; the answer to this step's reference arrives after this step's command is
   out, so it is requested one period early and is on hand when the next step needs it;
2. the feedforward by ``mode``: ``pd`` none; ``learned`` the newest ``/invdyn_node/feedforward``
   (Float64MultiArray, subscribed best effort: ``FEEDFORWARD_QOS``) if it is valid and younger
   than ``feedforward_timeout_s`` (wall clock; stale -> none, counted; one applied again because
   no newer one came since the previous step: counted as ``repeated_feedforward``);
   ``trajectory`` the point efforts of the newest annotated
   trajectory_msgs/JointTrajectory on ``trajectory_topic`` (invdyn_node's ``~/trajectory_out``),
   linearly interpolated at ``t`` as joint_trajectory_controller with an effort interface adds
   them (``TrajectoryFollower``; its points' times are ``header.stamp + time_from_start`` on the
   joint-state clock, a zero stamp meaning "now"; outside their span, or without efforts: none,
   counted); ``ideal`` the simulator's own inverse dynamics on the reference
   (``SimulatedArm.rnea`` with the same friction and payload parameters: the demo's ceiling);
3. ``tau = clip(kp (q_d - q) + kd (qd_d - qd) + ff)`` is published on
   ``/effort_controller/commands``.

The trajectory (``FourierTrajectory``) starts at the first measured pose, at rest, and its clock
is ``t - t_first``. Two references are described by the parameters: the ``primary`` one
(``trajectory_seed``, ``base_freq_hz``, ``center``, ...) and an ``unseen`` one (another seed,
``unseen_speed`` times faster, centred ``unseen_center_offset`` away: motion a model learned on
the primary one has not seen). ``reference`` selects one; changed at runtime, the controller
blends from the running reference into the other at its next step (``SwitchedTrajectory``: the
reference's position, velocity and acceleration stay continuous; the blend lasts at least
``ramp_s``) and the new reference's clock starts at the switch. Each switch is kept in
``switches`` (time, target, blend duration). ``mode`` can be changed at runtime (parameter or
std_msgs/String on ``~/mode``); ``use_feedforward=false`` forces PD whatever ``mode`` says.
Payload changes published on the simulator's ``~/payload_kg`` topic are mirrored into the ideal
model (``payload_topic``).
Also publishes ``~/tracking_error`` (Float64MultiArray, q_d - q measured, per joint).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from invdyn_ros.errors import ConfigError
# at start-up, not in the trajectory callback: their first import (scipy.interpolate) took
# 0.3-0.5 s, during which the demo's simulator, on the same executor, stood still
from invdyn_ros.pipeline.trajectory_feedforward import order_joints
from invdyn_ros.ros.trajectory_msgs_io import trajectory_arrays
from invdyn_ros.sim.arm import UR_HOME, SimulatedArm
from invdyn_ros.sim.controller import (PDController, TrajectoryFollower, critically_damped_kd,
                                       ur5_default_gains)
from invdyn_ros.sim.sim_arm_node import (ARM_PARAMETERS, arm_config_from_parameters,
                                         build_arg_parser, declare_parameters, float_array_is_valid,
                                         param_bool, param_float, param_floats, param_int,
                                         param_str, run_node)
from invdyn_ros.sim.trajectory import FourierTrajectory, SwitchedTrajectory
from invdyn_ros.stages.joint_state import JointStateRule, Rejection

MODES = ('pd', 'learned', 'trajectory', 'ideal')
#: QoS of the learned feedforward subscription (see where it is created)
FEEDFORWARD_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT,
                             history=HistoryPolicy.KEEP_LAST)
REFERENCES = ('primary', 'unseen')
#: Default offset of the unseen reference's centre from the primary's (rad, every joint): with the
#: primary's ~1 rad amplitude, most of the unseen motion lies outside the poses of the primary.
UNSEEN_CENTER_OFFSET_RAD = 0.6


@dataclass(frozen=True)
class ControlStep:
    """What one control step did (for observers, see ``add_step_observer``).

    ``stamp_ns``: the joint state's stamp; ``t``: trajectory time (s); ``mode``: the effective
    mode; ``reference``: ``(q_d, qd_d, qdd_d)`` at ``t``; ``error``: ``q_d - q`` (measured q);
    ``feedforward``: the feedforward added to the PD torque (None when there was none);
    ``command``: the torque sent.
    """

    stamp_ns: int
    t: float
    mode: str
    reference: tuple
    error: np.ndarray
    feedforward: np.ndarray | None
    command: np.ndarray

CONTROLLER_PARAMETERS: dict[str, tuple[Any, str]] = {
    'mode': ('learned', "feedforward source: 'pd' (none), 'learned' (invdyn_node), 'trajectory' "
                        "(the point efforts of invdyn_node's annotated trajectory), 'ideal' (true "
                        'model); changeable at runtime'),
    'use_feedforward': (True, 'false forces PD only whatever mode says; changeable at runtime'),
    'joint_states_topic': ('/joint_states', 'measured joint states'),
    'command_topic': ('/effort_controller/commands', 'effort command output'),
    'reference_topic': ('/invdyn_node/reference', 'reference output (JointTrajectoryPoint)'),
    'feedforward_topic': ('/invdyn_node/feedforward', 'learned feedforward input'),
    'trajectory_topic': ('/invdyn_node/trajectory_out', 'annotated JointTrajectory input (as '
                         "joint_trajectory_controller's ~/joint_trajectory): its point efforts are "
                         "the feedforward of mode 'trajectory'"),
    'payload_topic': ('/sim_arm/payload_kg', 'payload changes to mirror into the ideal model'),
    'feedforward_timeout_s': (0.05, 'learned feedforward older than this (wall s) is ignored'),
    'reference_preview_s': (None, 'the published reference is this far ahead (s); unset = one '
                                  'period, 1 / rate_hz'),
    'kp': (None, 'proportional gains (N m/rad); unset = UR5 defaults'),
    'kd': (None, 'damping gains (N m s/rad); unset = critically damped for the UR5'),
    'torque_limits': (None, 'command clamp (N m); unset = the model effort limits'),
    'trajectory_seed': (0, 'seed of the Fourier coefficients'),
    'base_freq_hz': (0.1, 'Fourier base frequency (Hz)'),
    'harmonics': (5, 'number of harmonics'),
    'center': (None, 'trajectory centre pose (rad); unset = UR home'),
    'max_amplitude': (1.0, 'largest excursion from the centre (rad)'),
    'max_velocity': (1.5, 'velocity bound (rad/s)'),
    'max_acceleration': (4.0, 'acceleration bound (rad/s^2)'),
    'margin': (0.2, 'distance kept from the joint limits (rad)'),
    'ramp_s': (2.0, 'minimum ramp-in duration from the start pose, and of the blend into a newly '
                    'selected reference (s)'),
    'reference': ('primary', "the reference tracked: 'primary' (trajectory_seed, base_freq_hz, "
                             "center, ...) or 'unseen' (unseen_*); changeable at runtime: the "
                             'switch blends continuously into the other one'),
    'unseen_trajectory_seed': (None, 'seed of the unseen reference; unset = trajectory_seed + 1'),
    'unseen_speed': (1.5, 'the unseen reference is this many times faster (base frequency x speed, '
                          'velocity bound x speed, acceleration bound x speed^2)'),
    'unseen_center_offset': (None, "the unseen reference's centre minus center (rad per joint); "
                                   f'unset = {UNSEEN_CENTER_OFFSET_RAD:g} on every joint'),
}


class TorqueControllerNode(Node):
    """The ``torque_controller`` node (see the module docstring)."""

    def __init__(self, **kwargs) -> None:
        super().__init__('torque_controller', **kwargs)
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64, Float64MultiArray, String
        from trajectory_msgs.msg import JointTrajectoryPoint

        declare_parameters(self, ARM_PARAMETERS)
        declare_parameters(self, CONTROLLER_PARAMETERS)
        # The ideal model: the simulator's physics without sensor noise.
        self.model_arm = SimulatedArm(arm_config_from_parameters(self, with_noise=False))
        self.n = n = self.model_arm.n
        self.joint_names = self.model_arm.joint_names
        self._rule = JointStateRule(self.joint_names)

        kp_param, kd_param = param_floats(self, 'kp'), param_floats(self, 'kd')
        if kp_param is None and kd_param is None and n == 6:
            kp, kd = ur5_default_gains()
        else:
            if kp_param is None:
                raise ConfigError('kp: required for a robot other than the UR5 (or when kd is set)')
            kp = np.asarray(kp_param)
            inertia = np.diag(self.model_arm.mass_matrix(self.model_arm.true_state()[0]))
            kd = np.asarray(kd_param) if kd_param is not None else critically_damped_kd(kp, inertia)
        limits = param_floats(self, 'torque_limits')
        limits = np.asarray(limits) if limits is not None else self.model_arm.effort_limits
        for name, value in (('kp', kp), ('kd', kd), ('torque_limits', limits)):
            if np.size(value) != n:
                raise ConfigError(f'{name}: expected {n} values, got {np.size(value)}')
        self.controller = PDController(kp, kd, limits)

        self.mode = self._checked_mode(param_str(self, 'mode'))
        self.use_feedforward = param_bool(self, 'use_feedforward')
        self.feedforward_timeout_s = param_float(self, 'feedforward_timeout_s')
        if self.get_parameter('reference_preview_s').value is None:
            self.preview_s = self.model_arm.config.dt
        else:
            self.preview_s = param_float(self, 'reference_preview_s')
            if self.preview_s < 0.0:
                raise ConfigError(f'reference_preview_s: must be >= 0, got {self.preview_s}')
        if not (np.isfinite(self.feedforward_timeout_s) and self.feedforward_timeout_s > 0.0):
            raise ConfigError('feedforward_timeout_s: must be > 0')
        center = param_floats(self, 'center')
        self._trajectory_args = dict(
            seed=param_int(self, 'trajectory_seed'), base_freq_hz=param_float(self, 'base_freq_hz'),
            harmonics=param_int(self, 'harmonics'),
            center=np.asarray(center) if center is not None else np.array(UR_HOME[:n]),
            lower=self.model_arm.lower_limits, upper=self.model_arm.upper_limits,
            margin=param_float(self, 'margin'), max_amplitude=param_float(self, 'max_amplitude'),
            max_velocity=param_float(self, 'max_velocity'),
            max_acceleration=param_float(self, 'max_acceleration'),
            ramp_s=param_float(self, 'ramp_s'))
        seed = self.get_parameter('unseen_trajectory_seed').value
        offset = param_floats(self, 'unseen_center_offset')
        offset = np.full(n, UNSEEN_CENTER_OFFSET_RAD) if offset is None else np.asarray(offset)
        if offset.shape != (n,):
            raise ConfigError(f'unseen_center_offset: expected {n} values, got {offset.size}')
        self._reference_args = {
            'primary': self._trajectory_args,
            'unseen': dict(self._trajectory_args,
                           seed=(self._trajectory_args['seed'] + 1 if seed is None
                                 else param_int(self, 'unseen_trajectory_seed')),
                           speed=param_float(self, 'unseen_speed'),
                           center=self._trajectory_args['center'] + offset)}
        # Validate the trajectory parameters now (a bad value must fail at start, not at run time).
        for args in self._reference_args.values():
            FourierTrajectory(n, **args)
        self.reference = self._checked_reference(param_str(self, 'reference'))
        self._active_reference = self.reference
        self.switches: list[dict[str, Any]] = []
        self.trajectory: FourierTrajectory | SwitchedTrajectory | None = None
        self._t0: float | None = None

        self._feedforward: np.ndarray | None = None
        self._feedforward_wall = -np.inf
        self._feedforward_used_wall = -np.inf   # the reception time of the last one applied
        self._step_observers: list[Callable[[ControlStep], None]] = []
        self._feedforward_observers: list[Callable[[np.ndarray], None]] = []
        self.counters = {'steps': 0, 'rejected_states': 0, 'rejected_feedforward': 0,
                         'stale_feedforward': 0, 'repeated_feedforward': 0, 'rejected_mode': 0,
                         'rejected_payload': 0, 'trajectories': 0, 'rejected_trajectories': 0,
                         'trajectories_without_effort': 0, 'steps_without_trajectory_effort': 0,
                         'reference_switches': 0, 'rejected_reference': 0,
                         'failed_reference_switches': 0}
        self._follower: TrajectoryFollower | None = None
        self._last_t = 0.0
        self.last_error = np.zeros(n)

        self._Float64MultiArray = Float64MultiArray
        self._JointTrajectoryPoint = JointTrajectoryPoint
        self.command_pub = self.create_publisher(Float64MultiArray,
                                                 param_str(self, 'command_topic'), 10)
        self.reference_pub = self.create_publisher(JointTrajectoryPoint,
                                                   param_str(self, 'reference_topic'), 10)
        self.error_pub = self.create_publisher(Float64MultiArray, '~/tracking_error', 10)
        self.create_subscription(JointState, param_str(self, 'joint_states_topic'),
                                 self._on_joint_states, 10)
        # Best effort, newest only: the feedforward is a stream in which only the newest sample
        # matters. A reliable subscription holds back every newer sample behind a lost one until
        # Fast DDS repairs it (~100 ms measured in the demo: 10 held samples arriving in a burst),
        # and the controller meanwhile applies the feedforward of 20-50 steps ago. Best effort
        # matches invdyn_node's reliable publisher.
        self.create_subscription(Float64MultiArray, param_str(self, 'feedforward_topic'),
                                 self._on_feedforward, FEEDFORWARD_QOS)
        self.create_subscription(String, '~/mode', self._on_mode_topic, 10)
        from trajectory_msgs.msg import JointTrajectory
        self.create_subscription(JointTrajectory, param_str(self, 'trajectory_topic'),
                                 self._on_trajectory, 10)
        self.create_subscription(Float64, param_str(self, 'payload_topic'), self._on_payload, 10)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.get_logger().info(f'torque_controller: mode {self.mode}, '
                               f'kp {np.round(kp, 2).tolist()}, kd {np.round(kd, 2).tolist()}')

    # -------------------------------------------------------------- mode handling
    @staticmethod
    def _checked_mode(mode: str) -> str:
        if mode not in MODES:
            raise ConfigError(f'mode: must be one of {MODES}, got {mode!r}')
        return mode

    @staticmethod
    def _checked_reference(reference: str) -> str:
        if reference not in REFERENCES:
            raise ConfigError(f'reference: must be one of {REFERENCES}, got {reference!r}')
        return reference

    def reference_trajectory(self, name: str, start=None) -> FourierTrajectory:
        """The ``primary`` or ``unseen`` reference as its own clock runs (from 0): ramping in from
        ``start`` at rest when given, else without a ramp-in (it is blended in when switched to)."""
        args = dict(self._reference_args[self._checked_reference(name)])
        if start is None:
            args['ramp_s'] = 0.0
        return FourierTrajectory(self.n, start=start, **args)

    @property
    def effective_mode(self) -> str:
        return self.mode if self.use_feedforward else 'pd'

    def _on_mode_topic(self, msg) -> None:
        from rclpy.parameter import Parameter

        result = self.set_parameters([Parameter('mode', value=msg.data.strip())])[0]
        if not result.successful:
            self.get_logger().warning(f'ignored mode request: {result.reason}',
                                      throttle_duration_sec=1.0)

    def _on_set_parameters(self, params):
        from rcl_interfaces.msg import SetParametersResult

        for p in params:
            if p.name == 'mode':
                if p.value not in MODES:
                    self.counters['rejected_mode'] += 1
                    return SetParametersResult(successful=False,
                                               reason=f'mode: must be one of {MODES}')
            elif p.name == 'reference':
                if p.value not in REFERENCES:
                    self.counters['rejected_reference'] += 1
                    return SetParametersResult(successful=False,
                                               reason=f'reference: must be one of {REFERENCES}')
            elif p.name == 'use_feedforward':
                if not isinstance(p.value, bool):
                    return SetParametersResult(successful=False,
                                               reason='use_feedforward: must be true or false')
            elif p.name == 'payload_kg':
                try:
                    self.model_arm.set_payload(float(p.value))
                except (ConfigError, TypeError, ValueError) as exc:
                    return SetParametersResult(successful=False, reason=str(exc))
            else:
                return SetParametersResult(
                    successful=False, reason=f'{p.name}: read-only at runtime (restart the node)')
        for p in params:
            if p.name == 'mode' and p.value != self.mode:
                self.mode = p.value
                self.get_logger().info(f'mode -> {self.mode}')
            elif p.name == 'use_feedforward':
                self.use_feedforward = p.value
            elif p.name == 'reference' and p.value != self.reference:
                self.reference = p.value    # the next control step blends into it
        return SetParametersResult(successful=True)

    def _switch_reference(self, t: float) -> None:
        """Blend from the running reference into ``self.reference`` from trajectory time ``t``
        (module docstring). A switch that cannot be made keeps the running reference (counted)."""
        target = self.reference
        try:
            self.trajectory = SwitchedTrajectory(
                self.trajectory, self.reference_trajectory(target), t,
                self._trajectory_args['ramp_s'] or 1.0)
        except (ConfigError, ValueError) as exc:
            self.counters['failed_reference_switches'] += 1
            self.reference = self._active_reference
            self.get_logger().error(f'reference switch to {target} failed: {exc}')
            return
        self._active_reference = target
        self.counters['reference_switches'] += 1
        self.switches.append({'t_s': float(t), 'reference': target,
                              'ramp_s': float(self.trajectory.ramp_duration)})
        self.get_logger().info(f'reference -> {target} at t={t:.3f} s (blend '
                               f'{self.trajectory.ramp_duration:g} s)')

    def _on_payload(self, msg) -> None:
        try:
            self.model_arm.set_payload(msg.data)
        except ConfigError as exc:
            self.counters['rejected_payload'] += 1
            self.get_logger().warning(f'ignored payload: {exc}', throttle_duration_sec=1.0)

    # -------------------------------------------------------------- data path
    def _on_feedforward(self, msg) -> None:
        ok, reason = float_array_is_valid(msg.data, self.n)
        if not ok:
            self.counters['rejected_feedforward'] += 1
            self.get_logger().warning(f'rejected feedforward ({reason})', throttle_duration_sec=1.0)
            return
        self._feedforward = np.array(msg.data, dtype=float)
        self._feedforward_wall = time.monotonic()
        for fn in self._feedforward_observers:
            fn(self._feedforward.copy())

    def _on_trajectory(self, msg) -> None:
        """An annotated trajectory (JTC-like): it replaces the previous one (module docstring)."""
        try:
            if self._t0 is None:
                raise ValueError('no joint state yet: the trajectory clock starts at the first')
            a = trajectory_arrays(msg)
            idx = order_joints(self.joint_names, a['joint_names'])
            stamp = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
            start = self._last_t if stamp == 0.0 else stamp - self._t0

            def ordered(x):
                return None if x is None else x[:, idx]

            follower = TrajectoryFollower(start + a['times'], ordered(a['positions']),
                                          ordered(a['velocities']), ordered(a['accelerations']),
                                          ordered(a['efforts']))
        except ValueError as exc:   # TrajectoryError is a ValueError
            self.counters['rejected_trajectories'] += 1
            self.get_logger().warning(f'ignored trajectory: {exc}', throttle_duration_sec=1.0)
            return
        self.counters['trajectories'] += 1
        if follower.efforts is None:
            self.counters['trajectories_without_effort'] += 1
            self.get_logger().warning('trajectory without efforts (invdyn_node not ready?): no '
                                      'trajectory feedforward', throttle_duration_sec=1.0)
        self._follower = follower

    def _trajectory_feedforward(self, t: float) -> np.ndarray | None:
        """The newest trajectory's interpolated point effort at ``t``; None outside its span."""
        f = self._follower
        if f is None or f.efforts is None or not f.times[0] <= t <= f.times[-1]:
            self.counters['steps_without_trajectory_effort'] += 1
            return None
        return f.effort(t)

    def add_step_observer(self, fn: Callable[[ControlStep], None]) -> None:
        """Call ``fn(ControlStep)`` after every control step, in the executor's thread (for
        in-process tools such as ``invdyn_demo``'s recorder)."""
        self._step_observers.append(fn)

    def add_feedforward_observer(self, fn: Callable[[np.ndarray], None]) -> None:
        """Call ``fn(feedforward)`` for every valid learned feedforward message received."""
        self._feedforward_observers.append(fn)

    def _ordered(self, msg) -> tuple[float, np.ndarray, np.ndarray] | None:
        """(stamp, q, qd) in joint_names order by the node's JointState rule
        (:mod:`invdyn_ros.stages.joint_state`), or None if the message is unusable: rejected by the
        rule, or without a finite velocity for every joint (PD needs it)."""
        sample = self._rule(msg)
        if isinstance(sample, Rejection):
            return None
        stamp, q, qd, _ = sample
        if qd is None or not np.isfinite(qd).all():
            return None
        return stamp, q, qd

    def _on_joint_states(self, msg) -> None:
        state = self._ordered(msg)
        if state is None or (self._t0 is not None and state[0] < self._t0):
            self.counters['rejected_states'] += 1
            self.get_logger().warning('ignored joint state (missing joints, wrong lengths, zero '
                                      'stamp, NaN/Inf, no velocity or time going backwards)',
                                      throttle_duration_sec=1.0)
            return
        stamp, q, qd = state
        if self.trajectory is None:
            self._t0 = stamp
            self._active_reference = self.reference
            self.trajectory = self.reference_trajectory(self.reference, start=q)
            self.get_logger().info(
                f'{self.reference} trajectory starts at t={stamp:.3f} s from the measured pose '
                f'(ramp-in {self.trajectory.ramp_duration:g} s)')
        t = stamp - self._t0
        self._last_t = t
        if self.reference != self._active_reference:
            self._switch_reference(t)

        # 1. the reference one step ahead, for the asynchronous learned feedforward.
        t_next = t + self.preview_s
        q_n, qd_n, qdd_n = self.trajectory.sample(t_next)
        point = self._JointTrajectoryPoint()
        point.positions, point.velocities = q_n.tolist(), qd_n.tolist()
        point.accelerations = qdd_n.tolist()
        ns = int(round(t_next * 1e9))
        point.time_from_start.sec, point.time_from_start.nanosec = divmod(ns, 1_000_000_000)
        self.reference_pub.publish(point)

        # 2. feedforward for this step.
        q_d, qd_d, qdd_d = self.trajectory.sample(t)
        mode = self.effective_mode
        ff = None
        if mode == 'ideal':
            ff = self.model_arm.rnea(q_d, qd_d, qdd_d)
        elif mode == 'learned':
            if self._feedforward is not None and \
                    time.monotonic() - self._feedforward_wall < self.feedforward_timeout_s:
                ff = self._feedforward
                if self._feedforward_wall == self._feedforward_used_wall:
                    self.counters['repeated_feedforward'] += 1
                self._feedforward_used_wall = self._feedforward_wall
            else:
                self.counters['stale_feedforward'] += 1
        elif mode == 'trajectory':
            ff = self._trajectory_feedforward(t)

        # 3. command.
        tau = self.controller.compute(q_d, qd_d, q, qd, ff)
        self.command_pub.publish(self._Float64MultiArray(data=tau.tolist()))
        self.last_error = q_d - q
        self.error_pub.publish(self._Float64MultiArray(data=self.last_error.tolist()))
        self.counters['steps'] += 1
        if self._step_observers:
            step = ControlStep(
                stamp_ns=msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec, t=t,
                mode=mode, reference=(q_d, qd_d, qdd_d), error=self.last_error.copy(),
                feedforward=None if ff is None else np.array(ff, dtype=float), command=tau.copy())
            for fn in self._step_observers:
                fn(step)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    from rclpy.utilities import remove_ros_args

    parser = build_arg_parser(
        'torque_controller', 'Joint PD + feedforward (none, learned from invdyn_node, or the '
        'simulator\'s ideal inverse dynamics) tracking a Fourier reference.',
        {**CONTROLLER_PARAMETERS, **ARM_PARAMETERS})
    parser.parse_args(remove_ros_args(argv)[1:])
    return run_node(TorqueControllerNode, argv)


if __name__ == '__main__':
    sys.exit(main())
