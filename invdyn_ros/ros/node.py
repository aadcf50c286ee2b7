"""ROS 2 node ``invdyn_node``: learns the arm's inverse dynamics online, publishes learned torques.

Start it next to a robot driver::

    ros2 run invdyn_ros invdyn_node --ros-args --params-file config/kuka_lwr.yaml
    ros2 launch invdyn_ros invdyn.launch.py config:=/path/to/ur5.yaml \\
        feedforward_topic:=/effort_controller/commands

What it offers (topics, QoS, services, lifecycle, checkpoints, signals, parameters) is described in
one place for users: the README's "Interface of ``invdyn_node``" and "Lifecycle" sections, whose
parameter table is generated from :data:`invdyn_ros.pipeline.parameters.PARAMETERS` (also
``invdyn_node --help``). How it is built: ``docs/API.md`` ("``ros/node.py``").

The node is a thin translator around :class:`invdyn_ros.pipeline.pipeline.Pipeline` (all numerics
live there, ROS-free, shared with the offline evaluator): a managed node
(``rclpy.lifecycle.LifecycleNode``) that orders and checks joint states by the one rule of
:mod:`invdyn_ros.stages.joint_state`, calls the pipeline, and publishes pre-built messages. What is
not its own wiring lives beside it: ``~/feedforward``'s rule (:mod:`~invdyn_ros.ros.feedforward_gate`),
``/diagnostics`` and its log lines (:mod:`~invdyn_ros.ros.node_diagnostics`), the parameter checks
(:mod:`~invdyn_ros.ros.node_settings`, :mod:`~invdyn_ros.ros.node_parameters`), the trainer's start
(:mod:`~invdyn_ros.ros.trainer_setup`), the process (:mod:`~invdyn_ros.ros.node_main`: arguments,
signals, executor loop, exit codes), the messages (:mod:`~invdyn_ros.ros.serialized`,
:mod:`~invdyn_ros.ros.node_messages`), the ``robot_description`` wait
(:mod:`~invdyn_ros.ros.robot_description`), the checkpoint service
(:mod:`~invdyn_ros.ros.checkpoint_service`) and the trajectory relay
(:mod:`~invdyn_ros.ros.trajectory_msgs_io`).

Latency: the joint-state callback publishes ``~/predicted_effort`` as soon as the torque is known
(``Pipeline.process(defer=True)``); the feedforward, the learning bookkeeping (``Pipeline.finish``)
and the auxiliary topics follow. Nothing on the per-message path logs: warnings about rejected
input come from the diagnostics timer, at most one line per period (the counts that grew, with
their reasons).
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from invdyn_ros.errors import CheckpointError, ConfigError, InvdynError
from invdyn_ros.pipeline.pipeline import Pipeline, PipelineConfig
from invdyn_ros.pipeline.scheduling import raise_receive_threads, realtime_priority
from invdyn_ros.ros import node_main
from invdyn_ros.ros.checkpoint_service import CheckpointService
from invdyn_ros.ros.feedforward_gate import NOTHING, REFERENCE_PRIOR, ZEROS, FeedforwardGate
from invdyn_ros.ros.node_diagnostics import (LatencyRing, Snapshot, WarningThrottle,  # noqa: F401
                                             bad_input_warning, count_lost, node_counters,
                                             rejected_counts, statuses)
from invdyn_ros.ros.node_main import build_arg_parser, collect_garbage_off_path  # noqa: F401
from invdyn_ros.ros.node_messages import AuxMessages, FeedforwardMessage, diagnostic_array
from invdyn_ros.ros.node_parameters import read_parameters
from invdyn_ros.ros.node_settings import (NodeSettings, needs_robot_model, positive,  # noqa: F401
                                          process_settings, ros_args_error)
from invdyn_ros.ros.robot_description import wait_for_robot_description
from invdyn_ros.ros.serialized import SerializedJointState
from invdyn_ros.ros.trainer_setup import renice_trainer, start_trainer, trainer_options
from invdyn_ros.ros.trajectory_msgs_io import TrajectoryRelay
from invdyn_ros.stages import kernels
from invdyn_ros.stages.joint_state import JointStateRule, Rejection

FAST_PATH = 'compiled (numba)' if kernels.AVAILABLE else \
    f'numpy (numba not installed or {kernels.DISABLE_ENV} set)'

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      history=HistoryPolicy.KEEP_LAST)
BEST_EFFORT = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT,
                         history=HistoryPolicy.KEEP_LAST)
NODE_NAME = 'invdyn_node'
MISSED_GAP_MAX_S = 1.0          # longer stamp gaps are pauses of the source, not missed samples


class InvdynNode(LifecycleNode):
    """See the module docstring (Lifecycle: the transitions)."""

    def __init__(self, abort: Any = None, **kwargs: Any) -> None:
        """``abort``: an event (``is_set()``) that ends a slow start-up early (see
        ``_make_trainer``); ``kwargs`` go to ``rclpy.lifecycle.LifecycleNode``.

        Declares and reads the (read-only) parameters; with ``autostart`` (default) configures
        and activates at once and raises what configuring raised (ConfigError, CheckpointError,
        ...), as a plain node's start-up would."""
        self._abort = abort
        self._configured = False
        self._gate: FeedforwardGate | None = None   # what ~/feedforward carries (configure)
        self._checkpoints: CheckpointService | None = None   # the save service (configure)
        self._trajectories: TrajectoryRelay | None = None    # the trajectory relay (configure)
        self._closed = False
        self._entities: list[tuple[Any, Any]] = []
        # not rclpy's automatic declaration (node_parameters says why)
        kwargs.setdefault('automatically_declare_parameters_from_overrides', False)
        super().__init__(kwargs.pop('node_name', NODE_NAME), **kwargs)
        self.params = read_parameters(self)
        p = self.params
        self.autostart = p['autostart']
        # the process's own settings (main builds the executor before any transition)
        self.executor_kind, self.realtime_priority = process_settings(p)
        self.scheduling = 'normal'
        if self.autostart:
            self._autostart()

    # ------------------------------------------------------------------ lifecycle
    def _autostart(self) -> None:
        """configure + activate without a lifecycle manager; raises configure's error."""
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            error = self._configure_error or InvdynError('configure failed')
            raise error
        if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            raise InvdynError('activate failed')

    def on_configure(self, state: Any) -> TransitionCallbackReturn:
        """Parameters validated, URDF (waits for robot_description if needed), checkpoint
        resumed, trainer started, topics / services / timers created. A failure leaves the node
        unconfigured with nothing held (logged when a lifecycle manager asked)."""
        self._configure_error: BaseException | None = None
        before = self._entity_sets()
        try:
            self._configure()
        except Exception as exc:  # noqa: BLE001 - autostart re-raises it; a manager is told
            self._configure_error = exc
            self._entities = self._new_entities(before)
            self._release(save=False)
            if not self.autostart:
                self.get_logger().error(f'configure failed: {exc}')
            return TransitionCallbackReturn.FAILURE
        self._entities = self._new_entities(before)
        self._configured = True
        return TransitionCallbackReturn.SUCCESS

    @property
    def _active(self) -> bool:
        """The lifecycle node is active (held by the feedforward gate)."""
        return self._gate is not None and self._gate.active

    def on_activate(self, state: Any) -> TransitionCallbackReturn:
        self._gate.set_active(True)
        self.get_logger().info('active: the learned feedforward is published (zeros until '
                               'ready)')
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: Any) -> TransitionCallbackReturn:
        self._feedforward(self._gate.set_active(False))
        self.get_logger().info('inactive: ~/feedforward is zero (learning goes on)')
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: Any) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: Any) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: Any) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        """``Node.destroy_node`` plus the lifecycle state machine: rclpy's LifecycleNode leaves
        it alive, and with it the node's lifecycle services, ``~/transition_event`` and the node
        itself in the ROS graph until the object is garbage collected (a stale
        ``~/get_state`` server another client may then talk to)."""
        super().destroy_node()
        self._state_machine.destroy_when_not_in_use()

    def _entity_sets(self) -> tuple[set, ...]:
        return (set(self.publishers), set(self.subscriptions), set(self.timers),
                set(self.services))

    def _new_entities(self, before: tuple[set, ...]) -> list[tuple[Any, Any]]:
        """The topics, timers and services made since ``before``, with their destroy method."""
        destroy = (self.destroy_publisher, self.destroy_subscription, self.destroy_timer,
                   self.destroy_service)
        now = self._entity_sets()
        return [(d, e) for d, old, new in zip(destroy, before, now) for e in new - old]

    def _release(self, save: bool = True) -> None:
        """The inverse of configure: zero feedforward, final checkpoint (``save``), trainer
        stopped and joined, topics / timers / services destroyed. Idempotent."""
        configured, self._configured = self._configured, False
        zeros = self._gate.set_active(False) if self._gate is not None else NOTHING
        if self._trajectories is not None and not self._trajectories.close():
            self.get_logger().error('the trajectory relay did not stop within 5 s')
        if configured:
            try:
                self._feedforward(zeros)
            except Exception:  # noqa: BLE001 - the context may already be shut down
                pass
        pipeline = getattr(self, 'pipeline', None)
        if pipeline is not None:
            self.pipeline = None
            if save and configured and self.checkpoint_path:
                # the final save is the trainer's last job and the stop waits for it: full
                # priority (a niced worker behind busy processes would take seconds)
                self._renice(nice=0)
                try:
                    files = pipeline.save_checkpoint(self.checkpoint_path, final=True)
                    self.get_logger().info(f'final checkpoint written: {sorted(files.values())}')
                except (InvdynError, OSError) as exc:
                    self.get_logger().error(f'final checkpoint failed: {exc}')
            pipeline.close()
        self._checkpoints = None             # it holds the pipeline
        self._trajectories = None            # so does the relay (closed above)
        entities, self._entities = self._entities, []
        for destroy, entity in entities:
            try:
                destroy(entity)
            except Exception:  # noqa: BLE001 - the context may already be shut down
                pass

    def _configure(self) -> None:
        """What ``on_configure`` does (see there); raises on invalid parameters or a checkpoint
        that does not fit."""
        if needs_robot_model(self.params):
            self.params['robot_description'] = wait_for_robot_description(
                self, positive('robot_description_timeout_s',
                               self.params['robot_description_timeout_s'], allow_zero=True),
                self._abort)
        self.config = PipelineConfig.from_params(self.params)
        if self.config.torque_limits is None:
            raise ConfigError('torque_limits: required (one |torque| limit in N m per joint): '
                              'the feedforward drives an effort interface')
        st = self.settings = NodeSettings.from_params(self.params)
        self.trainer_kind, self.stale_timeout_s = st.trainer, st.stale_timeout_s
        self.checkpoint_period_s, self.aux_decimation = st.checkpoint_period_s, st.aux_decimation
        self.checkpoint_path = st.checkpoint_path        # may become the fresh location
        self.checkpoint_mismatch, self.trainer_nice = st.checkpoint_mismatch, st.trainer_nice

        self.joint_names = self.config.joint_names
        n = self.n = len(self.joint_names)
        log = self.get_logger()
        self._physics_states: dict = {}       # the checkpoint's physics members (_resume)
        self.pipeline = Pipeline(self.config, self._make_trainer(st.publish_period_s,
                                                                 st.max_updates_per_sample))
        try:
            physics_log = self.pipeline.load_physics(self._physics_states)
        except CheckpointError:
            self.pipeline.close()
            raise
        if physics_log is not None:
            (log.warning if physics_log.startswith('WARNING') else log.info)(physics_log)

        # ---- state of the data path
        self.counters = node_counters()
        self._rule = JointStateRule(self.joint_names)
        self._gate = FeedforwardGate(self.stale_timeout_s)   # times: perf_counter
        self._last_stamp = -math.inf         # header stamp (s) of the last valid output
        self._aux_count = 0
        self._latencies = LatencyRing()      # the callback latencies for the diagnostics
        self._diag_last = (time.perf_counter(), 0)
        self._throttle = WarningThrottle()      # the diagnostics period's log lines
        self._last_error: dict[str, str] = {}   # counter -> reason of its latest increment

        # ---- pre-built messages
        # ~/predicted_effort as CDR bytes: serialized once by rclpy, per message only the stamp
        # and the three arrays are overwritten (~1 µs instead of ~25 µs of message building
        # and conversion on the latency path)
        self._pe = SerializedJointState(self.joint_names)
        self._ff = FeedforwardMessage(n)
        labels = self.config.predictor_labels
        self._aux = AuxMessages(self.joint_names, (labels[0], labels[-1]))

        # ---- ROS interfaces
        self.pe_pub = self.create_publisher(JointState, '~/predicted_effort', RELIABLE)
        self.ff_pub = self.create_publisher(Float64MultiArray, '~/feedforward', RELIABLE)
        self.id_pub = self.create_publisher(Float64MultiArray, '~/identifier', RELIABLE)
        self.unc_pub = self.create_publisher(Float64MultiArray, '~/uncertainty', RELIABLE)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', RELIABLE)
        # With the SingleThreadedExecutor the callback also takes the MessageInfo (the DDS
        # reception time, for reception_latency_*); rclpy's EventsExecutor of these wheels raises
        # SystemError('null argument to internal routine') on message-info callbacks.
        self.create_subscription(
            JointState, 'joint_states',
            self._on_joint_states if self.executor_kind == 'single' else self._on_joint_states_msg,
            qos_profile_sensor_data,
            event_callbacks=SubscriptionEventCallbacks(message_lost=self._on_lost))
        self.create_subscription(JointTrajectoryPoint, '~/reference', self._on_reference,
                                 BEST_EFFORT)
        self.traj_pub = self.create_publisher(JointTrajectory, '~/trajectory_out', RELIABLE)
        self._trajectories = TrajectoryRelay(self.pipeline, self.get_logger(),
                                             publish=self.traj_pub.publish,
                                             max_point_dt=st.trajectory_max_point_dt)
        self.create_subscription(JointTrajectory, '~/trajectory_in', self._on_trajectory,
                                 RELIABLE)
        saves = self._checkpoints = CheckpointService(self.pipeline, self.checkpoint_path, log)
        self.create_service(Trigger, '~/save_checkpoint',
                            saves.on_request_async if self.executor_kind == 'events'
                            else saves.on_request)
        self.create_timer(min(0.05, self.stale_timeout_s / 2.0), self._on_watchdog)
        self.create_timer(st.diagnostics_period_s, self._on_diagnostics)
        if self.checkpoint_path and self.checkpoint_period_s > 0:
            self.create_timer(self.checkpoint_period_s, saves.on_timer)
        log.info(f'{n} joints {list(self.joint_names)}, networks '
                 f'{list(self.config.predictor_labels)}, prior {self.config.physics.prior}, '
                 f'feedforward {self.config.physics.feedforward_mode}, window {self.config.learner.window}, '
                 f'trainer {self.trainer_kind}, fast path {FAST_PATH}, checkpoint '
                 f'{self.checkpoint_path or "(none)"}; publishing zeros until ready '
                 f'(nMSE < {self.config.ready_nmse})')

    # ------------------------------------------------------------------ set-up
    def _make_trainer(self, publish_period: float, max_updates: float) -> Any:
        """The trainer, resumed from ``checkpoint_path`` (:func:`~invdyn_ros.ros.trainer_setup.
        start_trainer`: the ``checkpoint_mismatch`` rule; may switch ``checkpoint_path`` to the
        fresh location), its worker reniced to ``trainer_nice``. A stop requested while the
        worker is still starting (``abort``) ends its start-up with :class:`TrainerError`."""
        options = trainer_options(self.trainer_kind, publish_period, max_updates,
                                  self.trainer_nice, self._abort)
        trainer, self.checkpoint_path, self._physics_states = start_trainer(
            self.config, self.trainer_kind, self.checkpoint_path, self.checkpoint_mismatch,
            options, self.get_logger())
        self._renice()
        return trainer

    def _renice(self, nice: int | None = None) -> None:
        """The trainer worker to ``nice`` (default ``trainer_nice``; :func:`renice_trainer`)."""
        renice_trainer(self.trainer_kind, self.trainer_nice, nice, self.get_logger())

    def apply_realtime_priority(self) -> bool:
        """Put the calling thread (call it from the thread that spins the executor) under
        SCHED_FIFO at ``realtime_priority`` (:func:`~invdyn_ros.pipeline.scheduling.
        realtime_priority`; refused: a warning, normal scheduling), and with it the middleware's
        receive threads, which hand it its messages (:func:`~invdyn_ros.pipeline.scheduling.
        raise_receive_threads`; ``scheduling`` then says how many). The trainer worker (already
        started) keeps normal scheduling. Returns whether the priority is in effect."""
        log = self.get_logger()
        ok, scheduling = realtime_priority(self.realtime_priority, log)
        if ok:
            raised = raise_receive_threads(self.realtime_priority, log)
            scheduling += f' (+{len(raised)} middleware receive threads)'
        if self.realtime_priority:
            self.scheduling = scheduling
        return ok

    # ------------------------------------------------------------------ data path
    def _order(self, msg: Any) -> tuple[float, Any, Any, Any] | None:
        """(stamp, q, qd | None, tau | None) in joint_names order
        (:mod:`invdyn_ros.stages.joint_state`), or None (the rejection counted)."""
        sample = self._rule(msg)
        if type(sample) is Rejection:
            self.counters[sample.counter] += 1
            self._last_error[sample.counter] = sample.text
            return None
        return sample

    def _on_joint_states_msg(self, msg: Any) -> None:
        self._on_joint_states(msg, None)

    def _on_joint_states(self, msg: Any, info: Any) -> None:
        t_in = time.perf_counter()
        c_in = time.thread_time()
        self.counters['received'] += 1
        try:
            sample = self._order(msg)
            if sample is None:
                return
            pipeline = self.pipeline
            out = pipeline.process(*sample, defer=True)
            if out is None:
                pipeline.finish()
                self._feedforward(self._gate.on_unpredicted(t_in, pipeline.ready))
                return
            data = self._pe.fill(msg.header.stamp, out.q, out.qd, out.torque)
            t_pub = time.perf_counter()
            self.pe_pub.publish(data)
            t_done = time.perf_counter()
            cpu = time.thread_time() - c_in
            # from the middleware's reception of the message (system clock, ns), which includes
            # the executor's wake-up, take and deserialization before the callback
            received = info.get('received_timestamp') if type(info) is dict else None
            self._latencies.record(t_done - t_in, cpu, t_pub - t_in,
                                   (time.time_ns() - received) * 1e-9 if received else math.nan)
            # --- off the latency path: feedforward, learning bookkeeping, auxiliary topics
            self.counters['outputs'] += 1
            self._feedforward(self._gate.on_measured(t_in, out.ready, pipeline.fallback_ready),
                              out.torque, out.q)
            out = pipeline.finish()             # the complete Output of the published sample
            # samples that never reached us (DDS queue overflow in a burst, a lagging loop): a
            # stamp gap of k nominal periods means k-1 missed; gaps over 1 s count as pauses
            rate = pipeline.settled_rate_hz                # not from a burst's estimate
            gap = out.stamp - self._last_stamp
            self._last_stamp = out.stamp
            if rate and 1.5 < gap * rate and gap <= MISSED_GAP_MAX_S:
                self.counters['missed_by_stamp_gap'] += int(round(gap * rate)) - 1
            self._aux_count += 1
            if self._aux_count >= self.aux_decimation:
                self._aux_count = 0
                self._publish_aux(out)
        except Exception as exc:  # noqa: BLE001 - never let one message kill the node
            self.counters['internal_errors'] += 1
            self._last_error['internal_errors'] = f'{type(exc).__name__}: {exc}'

    def _feedforward(self, decision: Any, torque: Any = None, q: Any = None) -> None:
        """Publish what the gate decided (:mod:`invdyn_ros.ros.feedforward_gate`): the feedforward
        of ``torque`` at ``q`` (measured / reference), zeros, or nothing."""
        if decision.publish is None:
            return
        if decision.prior:        # the learned prediction is not ready, the physics prior is
            torque = self.pipeline.prior_torque(reference=decision is REFERENCE_PRIOR)
            if torque is None:
                decision = ZEROS
        self.ff_pub.publish(self._ff.zeros() if decision.publish == 'zeros' else
                            self._ff.fill(self.pipeline.feedforward(torque, q)))
        self.counters[decision.counter] += 1
        if decision.became_stale:
            self.counters['stale_events'] += 1
            self.get_logger().warning(
                f'no valid joint state for {self.stale_timeout_s} s: feedforward is zero')

    def _publish_aux(self, out: Any) -> None:
        """``~/identifier`` and ``~/uncertainty`` of ``out`` (not published where not finite)."""
        msg = self._aux.identifier(out.active, out.std_a, out.std_b)
        if msg is not None:
            self.id_pub.publish(msg)
        msg = self._aux.uncertainty(out.uncertainty)
        if msg is not None:
            self.unc_pub.publish(msg)

    def _on_reference(self, msg: Any) -> None:
        t_in = time.perf_counter()
        self.counters['references'] += 1
        try:
            torque = self.pipeline.predict_reference(msg.positions, msg.velocities,
                                                     msg.accelerations, stamp=t_in)
            if torque is None:
                return                      # invalid (counted by the pipeline) or warming up
            self._feedforward(self._gate.on_reference(t_in, self.pipeline.ready,
                                                      self.pipeline.fallback_ready), torque,
                              msg.positions)
        except Exception as exc:  # noqa: BLE001
            self.counters['internal_errors'] += 1
            self._last_error['internal_errors'] = f'{type(exc).__name__}: {exc}'

    def _on_trajectory(self, msg: Any) -> None:
        """A planned trajectory: the pipeline frozen here, one batched prediction for all its
        points in the relay's thread, then published (trajectory_msgs_io)."""
        try:
            if not self._active:             # lifecycle inactive: no learned efforts
                self.get_logger().warning('inactive: trajectory passed through without '
                                          'feedforward', throttle_duration_sec=1.0)
            self._trajectories.submit(msg, annotate=self._active)
        except Exception as exc:  # noqa: BLE001
            self.counters['internal_errors'] += 1
            self._last_error['internal_errors'] = f'{type(exc).__name__}: {exc}'

    def _on_lost(self, info: Any) -> None:
        """Messages the middleware reports lost (:func:`~invdyn_ros.ros.node_diagnostics.
        count_lost`)."""
        count_lost(self.counters, info)

    def _on_watchdog(self) -> None:
        """Zero feedforward while the input is stale (a controller holds the last command)."""
        self._feedforward(self._gate.on_tick(time.perf_counter()))

    # ------------------------------------------------------------------ diagnostics
    def _on_diagnostics(self) -> None:
        """A snapshot of the period to :func:`invdyn_ros.ros.node_diagnostics.statuses`; its log
        lines (:class:`~invdyn_ros.ros.node_diagnostics.WarningThrottle`) logged, its statuses
        published."""
        saves = self._checkpoints
        saves.check_result()
        now = time.perf_counter()
        t_prev, n_prev = self._diag_last
        received = self.counters['received']
        self._diag_last = (now, received)
        *latencies, count = self._latencies.take()
        stats = self.pipeline.stats()
        filter_error = self.pipeline.filter_error
        log = self.get_logger()
        for severity, line in self._throttle.lines(
                rejected_counts(self.counters, stats), self._last_error,
                stats['estimator']['rate_changes'], stats['rate_hz'], filter_error):
            (log.error if severity == 'error' else log.warning)(line)
        snapshot = Snapshot(
            node_name=self.get_name(), joint_names=list(self.joint_names),
            counters=self.counters, stats=stats,
            input_rate_hz=(received - n_prev) / max(now - t_prev, 1e-9),
            latencies_us=tuple(latencies), latency_count=count, active=self._active,
            stale=self._gate.stale, filter_error=filter_error,
            checkpoint_failed=saves.failed, last_checkpoint=saves.last,
            trainer_kind=self.trainer_kind, scheduling=self.scheduling,
            prior=self.config.physics.prior,
            feedforward_mode=self.config.physics.feedforward_mode,
            buffer_capacity=self.config.learner.buffer_capacity,
            trajectory=list(self._trajectories.diagnostics()))
        self.diag_pub.publish(diagnostic_array(statuses(snapshot),
                                               self.get_clock().now().to_msg()))

    # ------------------------------------------------------------------ shutdown
    def close(self) -> None:
        """Zero feedforward, final checkpoint, trainer stopped (call with the executor stopped):
        the lifecycle's shutdown transition (``on_shutdown``), or the same release directly
        where the state machine cannot take it."""
        if self._closed:
            return
        self._closed = True
        try:
            self.trigger_shutdown()
        except Exception:  # noqa: BLE001 - finalized already, or the context is shut down
            pass
        self._release()


# ============================================================================ entry point
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``invdyn_node``: :func:`invdyn_ros.ros.node_main.main` with this node (the
    process: arguments, rclpy, signals, the executor loop, the exit code)."""
    return node_main.main(argv, InvdynNode)


if __name__ == '__main__':
    sys.exit(main())
