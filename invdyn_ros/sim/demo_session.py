"""The closed-loop demo's in-process ROS side: the simulated arm, the torque controller and the
monitor of invdyn_node on one executor, switched through the phases in simulated time.

:class:`DemoSession` creates ``sim_arm`` and ``torque_controller`` (``invdyn_ros.sim``) and the
:class:`~invdyn_ros.sim.demo_monitor.DemoMonitor` in a private rclpy context, spins them in a
thread, records every tick and control step into the :class:`~invdyn_ros.sim.demo.DemoRecorder`,
switches the controller's mode and reference at the :class:`~invdyn_ros.sim.demo.Schedule`'s
phase boundaries, puts the payload on, and sends the trajectory phase's plan to invdyn_node.
invdyn_node itself is a child process (:mod:`invdyn_ros.sim.demo_node`).
"""
from __future__ import annotations

import argparse
import math
import threading
import time
from collections import deque
from typing import Any

import numpy as np

from invdyn_ros.ros.trajectory_msgs_io import trajectory_message
from invdyn_ros.sim.demo_node import NODE_NAME
from invdyn_ros.sim.demo_recorder import DemoRecorder
from invdyn_ros.sim.demo_schedule import TRAJECTORY_POINT_DT_S, Schedule

__all__ = ['DemoSession']


class DemoSession:
    """The in-process ROS side: sim_arm, torque_controller and the demo's monitor on one executor.

    Recording: the simulator's and the controller's public observers (``add_step_observer``,
    ``add_feedforward_observer``) hand the recorder each tick's applied torque and each control
    step's tracking error and feedforward with their exact stamps -- cheaper and exact compared
    with subscribing to the same data over DDS in this very process. invdyn_node's ``~/predicted_effort`` and
    ``/diagnostics`` come over DDS (it is another process).
    """

    def __init__(self, args: argparse.Namespace, recorder: DemoRecorder, schedule: Schedule,
                 controller_parameters: dict[str, Any]) -> None:
        """``controller_parameters``: torque_controller's parameters besides robot, payload,
        mode, reference and trajectory seed (the demo's gains and settings with the user's
        overrides)."""
        import rclpy
        from rclpy.parameter import Parameter
        from rclpy.signals import SignalHandlerOptions

        self.rclpy = rclpy
        self.Parameter = Parameter
        self.args = args
        self.recorder = recorder
        self.schedule = schedule
        self.controller_parameters = controller_parameters
        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.executor = self._make_executor()
        self.monitor = self._make_monitor()
        self.executor.add_node(self.monitor)
        self.sim = None
        self.controller = None
        self.phase_name: str | None = None
        self.payload_sent = False
        self.trajectory_sent: dict[str, Any] | None = None
        self.done = threading.Event()
        self.errors: deque[str] = deque(maxlen=5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name='demo-executor', daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- executor
    def _make_executor(self):
        """rclpy's EventsExecutor when available (about half the CPU per callback of the
        SingleThreadedExecutor here); driven with spin_once in a loop, because its spin() in a
        non-main thread stalls its timers in this rclpy version."""
        try:
            from rclpy.experimental import EventsExecutor
            return EventsExecutor(context=self.context)
        except Exception:  # noqa: BLE001 - older rclpy: the classic executor
            from rclpy.executors import SingleThreadedExecutor
            return SingleThreadedExecutor(context=self.context)

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.1)
            except Exception as exc:  # noqa: BLE001 - report, keep the loop alive, main decides
                if self._stop.is_set() or not self.context.ok():
                    break
                self.errors.append(f'{type(exc).__name__}: {exc}')
                time.sleep(0.01)

    # ---------------------------------------------------------------- nodes
    def _make_monitor(self):
        from invdyn_ros.sim.demo_monitor import DemoMonitor
        return DemoMonitor(self.context, self.recorder, NODE_NAME)

    def start_arm(self) -> None:
        """Create sim_arm and torque_controller (after invdyn_node is up, so it sees t = 0)."""
        from invdyn_ros.sim.controller_node import TorqueControllerNode
        from invdyn_ros.sim.sim_arm_node import SimArmNode

        P = self.Parameter
        args, recorder, ros = self.args, self.recorder, self

        def on_sim_step(stamp_ns: int, applied_torque: np.ndarray) -> None:
            recorder.add_torque(stamp_ns, applied_torque, time.monotonic())
            ros.on_tick(stamp_ns)

        def on_control_step(step: Any) -> None:
            recorder.add_tracking(step.stamp_ns, step.error)
            if step.mode in ('learned', 'trajectory'):
                # The true-model feedforward for this step's reference scores the learned one.
                ideal = ros.controller.model_arm.rnea(*step.reference)
                used = step.feedforward
                recorder.add_feedforward(step.stamp_ns, ideal * 0.0 if used is None else used,
                                         ideal, used is not None)

        def on_feedforward(data: np.ndarray) -> None:
            # A non-zero feedforward means the node is ready (it sends zeros until then); the
            # fallback when its /diagnostics carry no 'ready' value.
            if not recorder.ready and ros.monitor.diag_ready is None and np.any(data != 0.0):
                recorder.mark_ready()

        common = [P('robot', value=args.robot), P('payload_kg', value=float(args.payload))]
        self.sim = SimArmNode(context=self.context, parameter_overrides=common + [
            P('seed', value=int(args.seed)),
            P('real_time_factor', value=float(args.real_time_factor))])
        ctl_params = common + [P('mode', value='pd'), P('reference', value='primary'),
                               P('trajectory_seed', value=int(args.seed))]
        ctl_params += [P(k, value=v) for k, v in self.controller_parameters.items()]
        self.controller = TorqueControllerNode(context=self.context, parameter_overrides=ctl_params)
        self.sim.add_step_observer(on_sim_step)
        self.controller.add_step_observer(on_control_step)
        self.controller.add_feedforward_observer(on_feedforward)
        self.phase_name = 'pd'
        from rclpy.logging import LoggingSeverity
        for node in (self.sim, self.controller):  # the demo prints phases and progress itself
            node.get_logger().set_level(LoggingSeverity.WARN)
        self.executor.add_node(self.controller)
        self.executor.add_node(self.sim)

    # ---------------------------------------------------------------- phase switching
    def on_tick(self, stamp_ns: int) -> None:
        """Called by the simulator every period (executor thread): switch phases in sim time."""
        if self.recorder.t0_ns is None or self.controller is None:
            return
        t = self.recorder.motion_time(stamp_ns)
        if t >= self.schedule.duration_s:
            if not self.done.is_set():
                self.sim.timer.cancel()   # motion over: no further ticks, commands or learning
                self.done.set()
            return
        phase = self.schedule.phase_at(t)
        if phase.name != self.phase_name:
            self.phase_name = phase.name
            # Mode and reference at once; a new reference is blended in from the next step.
            result = self.controller.set_parameters_atomically([
                self.Parameter('mode', value=phase.mode),
                self.Parameter('reference', value=phase.reference)])
            if not result.successful:
                self.errors.append(f'switch to {phase.mode} / {phase.reference} refused: '
                                   f'{result.reason}')
        change = self.schedule.payload_change_s
        if change is not None and not self.payload_sent and t >= change:
            self.payload_sent = True
            self.monitor.payload_pub.publish(
                self.monitor.Float64(data=float(self.schedule.payload_after_kg)))

    def send_trajectory(self, start_s: float, end_s: float) -> dict[str, Any]:
        """Send the controller's reference over ``[start_s, end_s]`` (motion time) as a
        JointTrajectory to invdyn_node's ``~/trajectory_in`` (points every
        TRAJECTORY_POINT_DT_S with positions, velocities, accelerations; ``header.stamp`` = the
        start on the joint-state clock), as a planner would send a plan."""
        dt = TRAJECTORY_POINT_DT_S
        times = start_s + dt * np.arange(int(math.ceil((end_s - start_s) / dt)) + 2)
        q, qd, qdd = self.controller.trajectory.sample(times)
        stamp = self.recorder.t0_ns + int(round(start_s * 1e9))
        msg = trajectory_message(self.controller.joint_names, times - start_s, q, qd, qdd, stamp)
        self.monitor.trajectory_pub.publish(msg)
        self.trajectory_sent = {'points': int(times.size), 'point_dt_s': dt,
                                'start_s': float(start_s), 'end_s': float(times[-1]),
                                'sent_at_s': float(self.recorder.motion_time())}
        return self.trajectory_sent

    # ---------------------------------------------------------------- graph
    def node_is_up(self) -> bool:
        """invdyn_node subscribes its inputs and publishes its outputs (as seen by discovery)."""
        m = self.monitor
        return (m.count_subscribers('/joint_states') >= 1 and
                m.count_subscribers(f'/{NODE_NAME}/reference') >= 1 and
                m.count_publishers(f'/{NODE_NAME}/feedforward') >= 1 and
                m.count_publishers(f'/{NODE_NAME}/predicted_effort') >= 1)

    def counters(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.sim is not None:
            out['sim'] = {**self.sim.counters, **self.sim.arm.counters}
        if self.controller is not None:
            out['controller'] = {**self.controller.counters, **self.controller.controller.counters}
        out['node_diagnostics'] = dict(self.monitor.diag_values)
        return out

    def close(self) -> None:
        self._stop.set()
        if self.sim is not None:
            try:
                self.sim.timer.cancel()
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass
        self._thread.join(timeout=5.0)
        try:
            self.executor.shutdown(timeout_sec=2.0)
        except Exception:  # noqa: BLE001
            pass
        for node in (self.sim, self.controller, self.monitor):
            if node is not None:
                try:
                    node.destroy_node()
                except Exception:  # noqa: BLE001
                    pass
        if self.context.ok():
            self.rclpy.shutdown(context=self.context)
