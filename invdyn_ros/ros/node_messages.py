"""The node's outgoing messages other than ``~/predicted_effort``
(:mod:`invdyn_ros.ros.serialized`): built once with their layouts, per publication only the
data is set.

- :class:`FeedforwardMessage`: ``~/feedforward`` (std_msgs/Float64MultiArray, one value per
  joint, zeros ready-made).
- :class:`AuxMessages`: ``~/identifier`` (a (3, n) row-major array: the active network per joint
  and both networks' error spreads; ``layout.dim[0].label`` names the rows, ``dim[1]`` the joints)
  and ``~/uncertainty`` (per joint, ``dim[0]`` names the joints). A message with a non-finite
  value is not published.
- :func:`diagnostic_array`: the ROS-free statuses of :mod:`invdyn_ros.ros.node_diagnostics` as a
  diagnostic_msgs/DiagnosticArray.
"""
from __future__ import annotations

import array
from typing import Any, Iterable, Sequence

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Float64MultiArray, MultiArrayDimension

from invdyn_ros.ros.node_diagnostics import ERROR, OK, WARN

__all__ = ['farray', 'FeedforwardMessage', 'AuxMessages', 'diagnostic_array']

_LEVELS = {OK: DiagnosticStatus.OK, WARN: DiagnosticStatus.WARN, ERROR: DiagnosticStatus.ERROR}


def farray(x: Any) -> array.array:
    """float64 numpy -> array.array('d'): what rclpy stores for float64[] (1 µs, no per-item
    type checks, unlike assigning a list or an ndarray)."""
    return array.array('d', np.ascontiguousarray(x, dtype=np.float64).tobytes())


class FeedforwardMessage:
    """``~/feedforward`` for ``n`` joints: ``fill(torque)`` or ``zeros()`` returns the one
    pre-built message with its data set."""

    def __init__(self, n: int) -> None:
        self.msg = Float64MultiArray()
        self.msg.layout.dim = [MultiArrayDimension(label='joint', size=n, stride=n)]
        self._zeros = farray(np.zeros(n))

    def fill(self, torque: Any) -> Any:
        self.msg.data = farray(torque)
        return self.msg

    def zeros(self) -> Any:
        self.msg.data = self._zeros
        return self.msg


class AuxMessages:
    """``~/identifier`` and ``~/uncertainty`` for ``joint_names``; ``labels``: the two
    networks' names (the identifier's rows ``active,std_<a>,std_<b>``)."""

    def __init__(self, joint_names: Sequence[str], labels: tuple[str, str]) -> None:
        n = self.n = len(joint_names)
        joints = ','.join(joint_names)
        a, b = labels
        self.identifier_msg = Float64MultiArray()
        self.identifier_msg.layout.dim = [
            MultiArrayDimension(label=f'active,std_{a},std_{b}', size=3, stride=3 * n),
            MultiArrayDimension(label=joints, size=n, stride=n)]
        self.uncertainty_msg = Float64MultiArray()
        self.uncertainty_msg.layout.dim = [MultiArrayDimension(label=joints, size=n, stride=n)]
        self._buf = np.zeros(3 * n)

    def identifier(self, active: Any, std_a: Any, std_b: Any) -> Any | None:
        """The ``~/identifier`` message, or None if a value is not finite."""
        n, buf = self.n, self._buf
        buf[:n] = active
        buf[n:2 * n] = std_a
        buf[2 * n:] = std_b
        if not np.isfinite(buf).all():
            return None
        self.identifier_msg.data = farray(buf)
        return self.identifier_msg

    def uncertainty(self, uncertainty: Any) -> Any | None:
        """The ``~/uncertainty`` message, or None if a value is not finite."""
        if not np.isfinite(uncertainty).all():
            return None
        self.uncertainty_msg.data = farray(uncertainty)
        return self.uncertainty_msg


def diagnostic_array(statuses: Iterable[Any], stamp: Any) -> Any:
    """DiagnosticArray of :func:`invdyn_ros.ros.node_diagnostics.statuses` (name, hardware_id,
    level, message, values), stamped ``stamp`` (builtin_interfaces/Time)."""
    msg = DiagnosticArray()
    for st in statuses:
        status = DiagnosticStatus(name=st.name, hardware_id=st.hardware_id,
                                  level=_LEVELS[st.level], message=st.message)
        status.values = [KeyValue(key=k, value=str(v)) for k, v in st.values]
        msg.status.append(status)
    msg.header.stamp = stamp
    return msg
