"""The URDF from the ``robot_description`` topic, as robot_state_publisher publishes it
(std_msgs/String, transient local): :func:`wait_for_robot_description`.

The node calls it at configure when ``prior`` or ``feedforward_mode`` needs the robot model and
neither ``robot_description`` nor ``urdf_path`` is set. It waits on its own wait set, not an
executor: configure runs both before the node is spun (autostart) and inside the executor's
``~/change_state`` callback (a second executor would take the node away from the first).
"""
from __future__ import annotations

import time
from typing import Any

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from invdyn_ros.errors import InvdynError, TrainerError

__all__ = ['wait_for_robot_description', 'ROBOT_DESCRIPTION_QOS', 'WARN_EVERY_S']

#: robot_state_publisher's QoS for ``robot_description``: a late subscriber still gets it.
ROBOT_DESCRIPTION_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                   durability=DurabilityPolicy.TRANSIENT_LOCAL,
                                   history=HistoryPolicy.KEEP_LAST)
WARN_EVERY_S = 5.0          # a warning this often while waiting
_POLL_NS = 100_000_000      # 0.1 s per wait, then the stop request and the timeout are checked


def wait_for_robot_description(node: Any, timeout_s: float, abort: Any = None) -> str:
    """The first non-blank URDF on ``node``'s ``robot_description`` topic (relative, so it
    follows the node's namespace and can be remapped).

    ``timeout_s``: 0 waits for ever, else :class:`InvdynError` naming the topic after that long.
    ``abort``: an event (``is_set()``) that ends the wait with :class:`TrainerError` (the node's
    main handles it as a stop during start-up). Warns every :data:`WARN_EVERY_S` while waiting.
    The subscription and the wait set are destroyed again whatever happens."""
    from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

    got: list[str] = []
    log = node.get_logger()
    sub = node.create_subscription(String, 'robot_description', lambda msg: None,
                                   ROBOT_DESCRIPTION_QOS)
    topic = node.resolve_topic_name('robot_description')
    wait_set = _rclpy.WaitSet(1, 0, 0, 0, 0, 0, node.context.handle)
    t0 = last_warn = time.monotonic()
    try:
        while not got or not got[-1].strip():
            if abort is not None and abort.is_set():
                raise TrainerError('stopped while waiting for the robot description')
            wait_set.clear_entities()
            with sub.handle:
                wait_set.add_subscription(sub.handle)
                wait_set.wait(_POLL_NS)
                if sub.handle.pointer in wait_set.get_ready_entities('subscription'):
                    taken = sub.handle.take_message(String, False)
                    if taken is not None:
                        got.append(taken[0].data)
            now = time.monotonic()
            if timeout_s and now - t0 > timeout_s:
                raise InvdynError(f'no robot description on {topic} within {timeout_s} s '
                                  '(set robot_description or urdf_path, or start '
                                  'robot_state_publisher)')
            if now - last_warn >= WARN_EVERY_S:
                last_warn = now
                log.warning(f'prior / feedforward_mode need the robot model: waiting for {topic} '
                            f'(std_msgs/String, transient local) for {now - t0:.0f} s; set '
                            'robot_description or urdf_path to skip')
    finally:
        wait_set.destroy_when_not_in_use()
        node.destroy_subscription(sub)
    log.info(f'robot description received on {topic} ({len(got[-1])} bytes)')
    return got[-1]
