"""The demo's monitor node (``invdyn_demo``): subscribes what invdyn_node publishes
(``~/predicted_effort`` through the node's own JointState rule, and its ``/diagnostics`` ready
flag with the stamp it became ready at, ``ready_since``) into the demo's recorder, and publishes
the payload change and the trajectory of the trajectory phase. Imports rclpy; ``invdyn_demo``
imports this module only when it runs."""
from __future__ import annotations

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64
from trajectory_msgs.msg import JointTrajectory

from invdyn_ros.sim.demo_recorder import DemoRecorder, ready_since_ns
from invdyn_ros.stages.joint_state import JointStateRule, Rejection

__all__ = ['DemoMonitor']


class DemoMonitor(Node):
    """Subscribes what invdyn_node (named ``node_name``) publishes; publishes the payload change."""

    def __init__(self, context, recorder: DemoRecorder, node_name: str) -> None:
        super().__init__('invdyn_demo', context=context)
        self.recorder = recorder
        self.node_name = node_name
        self.rule = JointStateRule(recorder.joint_names)
        # Best effort matches any publisher reliability; deep enough for 500 Hz bursts.
        qos = QoSProfile(depth=200, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.BEST_EFFORT)
        self.create_subscription(JointState, f'/{node_name}/predicted_effort',
                                 self._on_predicted, qos)
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)
        self.payload_pub = self.create_publisher(Float64, '/sim_arm/payload_kg', 10)
        self.trajectory_pub = self.create_publisher(  # reliable, as the node's
            JointTrajectory, f'/{node_name}/trajectory_in', 10)
        self.Float64 = Float64
        self.diag_ready: bool | None = None
        self.diag_values: dict[str, str] = {}

    def _on_predicted(self, msg) -> None:
        sample = self.rule(msg)            # the node's own JointState rule
        if isinstance(sample, Rejection) or sample[3] is None:
            self.recorder.counters['predictions_rejected'] += 1
            return
        effort = sample[3].copy()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self.recorder.add_prediction(stamp, effort)

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if self.node_name not in status.name:
                continue
            values = {kv.key: kv.value for kv in status.values}
            self.diag_values = values
            if 'ready' in values:
                self.diag_ready = values['ready'].strip().lower() in ('true', '1', 'yes')
                self.recorder.mark_ready(stamp_ns=ready_since_ns(values) if self.diag_ready
                                         else None, ready=self.diag_ready)
