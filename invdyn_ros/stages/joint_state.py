"""The one rule from a sensor_msgs/JointState to joint-ordered arrays (ROS-free).

Everything that reads joint states uses it: the live node (``invdyn_node``), the bag reader
(:func:`invdyn_ros.offline.bag.read_recording`, so an offline evaluation treats each message as the
node does), the simulated controller and the demo monitor. A message is anything with ``name``,
``position``, ``velocity``, ``effort`` and ``header.stamp.sec`` / ``.nanosec`` (an rclpy message,
a rosbags-deserialized one).

The rule, in this order (the first failing check decides the :class:`Rejection`):

- joints are matched by NAME into ``joint_names``; extra joints are ignored;
  duplicate names -> ``DUPLICATE_NAMES``, a configured joint missing -> ``MISSING_JOINT``;
- ``position`` must have one entry per name, ``velocity`` and ``effort`` one per name or none
  -> ``LENGTHS``;
- ``header.stamp`` must be set (it is the time axis) -> ``ZERO_STAMP``;
- the used positions and efforts must be finite -> ``NONFINITE``. Velocities may hold NaN / Inf
  entries: they are passed on, and the estimator replaces them by position differences.

An accepted message gives ``(stamp, q, qd, tau)``: ``stamp`` in seconds (float), ``q`` (n,)
float64, ``qd`` / ``tau`` (n,) float64 or None when the message has none (an empty array). A
message without effort is predicted, never learned from.
"""
from __future__ import annotations

import array
import enum
import math
from typing import Any, Sequence

import numpy as np

Sample = tuple  # (stamp: float, q: ndarray, qd: ndarray | None, tau: ndarray | None)


class Rejection(enum.Enum):
    """Why a JointState was not used. ``value`` is its short name (the bag reader's
    ``meta['skipped']`` key), :attr:`counter` the node's diagnostics counter, :attr:`text` the
    sentence of its warning."""

    DUPLICATE_NAMES = 'duplicate_names'
    MISSING_JOINT = 'missing_joint'
    LENGTHS = 'lengths'
    ZERO_STAMP = 'zero_stamp'
    NONFINITE = 'nonfinite'

    @property
    def counter(self) -> str:
        return _COUNTERS[self]

    @property
    def text(self) -> str:
        return _TEXTS[self]


_COUNTERS = {Rejection.DUPLICATE_NAMES: 'rejected_names',
             Rejection.MISSING_JOINT: 'rejected_names',
             Rejection.LENGTHS: 'rejected_shape',
             Rejection.ZERO_STAMP: 'rejected_stamp',
             Rejection.NONFINITE: 'rejected_nonfinite'}
_TEXTS = {Rejection.DUPLICATE_NAMES: 'duplicate joint names',
          Rejection.MISSING_JOINT: 'a configured joint is missing',
          Rejection.LENGTHS: 'position / velocity / effort length does not match name',
          Rejection.ZERO_STAMP: 'header.stamp is zero',
          Rejection.NONFINITE: 'NaN or Inf in a position or effort'}

#: the node's diagnostics counters the rule can bump (each starts at 0)
COUNTERS = tuple(dict.fromkeys(_COUNTERS.values()))


_frombuffer = np.frombuffer
_ARRAY = array.array


def _floats(values: Any) -> np.ndarray:
    """A float64 view of an rclpy ``array('d')`` (no copy), else a float64 array."""
    if type(values) is _ARRAY and values.typecode == 'd':
        return _frombuffer(values)
    return np.asarray(values, dtype=np.float64)


class JointStateRule:
    """Orders and checks JointState messages for ``joint_names`` (see the module docstring).

    Keeps the index of the last name list seen, so a stream with a constant name list costs one
    list comparison per message (the node's latency path)."""

    def __init__(self, joint_names: Sequence[str]) -> None:
        self.joint_names = tuple(joint_names)
        self.n = len(self.joint_names)
        self._names: list[str] | None = None
        self._idx: np.ndarray | None = None
        self._identity = False

    def _index(self, names: Any) -> Rejection | None:
        """Update the cached index for ``names``; a Rejection if they do not fit."""
        names = list(names)
        k = len(names)
        if len(set(names)) != k:
            return Rejection.DUPLICATE_NAMES
        try:
            idx = np.array([names.index(j) for j in self.joint_names], dtype=np.intp)
        except ValueError:
            return Rejection.MISSING_JOINT
        self._names = names
        self._idx = idx
        self._identity = k == self.n and bool((idx == np.arange(k)).all())
        return None

    def __call__(self, msg: Any) -> Sample | Rejection:
        """``(stamp, q, qd | None, tau | None)`` in ``joint_names`` order, or the Rejection."""
        names = msg.name
        if names != self._names:
            bad = self._index(names)
            if bad is not None:
                return bad
        k = len(names)
        pos, vel, eff = msg.position, msg.velocity, msg.effort
        if len(pos) != k or (len(vel) != 0 and len(vel) != k) or (len(eff) != 0 and len(eff) != k):
            return Rejection.LENGTHS
        st = msg.header.stamp
        if st.sec == 0 and st.nanosec == 0:
            return Rejection.ZERO_STAMP
        stamp = st.sec + 1e-9 * st.nanosec
        if type(pos) is _ARRAY and type(vel) is _ARRAY and type(eff) is _ARRAY \
                and pos.typecode == vel.typecode == eff.typecode == 'd':   # rclpy: views
            q = _frombuffer(pos)
            qd = _frombuffer(vel) if len(vel) else None
            tau = _frombuffer(eff) if len(eff) else None
        else:
            q = _floats(pos)
            qd = _floats(vel) if len(vel) else None
            tau = _floats(eff) if len(eff) else None
        if not self._identity:
            idx = self._idx
            q = q[idx]
            qd = qd[idx] if qd is not None else None
            tau = tau[idx] if tau is not None else None
        # a cheap screen over every entry (NaN / Inf anywhere, or huge finite values whose sum
        # overflows), then the exact check on the used joints alone (NaN in an ignored extra
        # joint is no reason)
        if not math.isfinite(sum(pos) + sum(eff)):
            if not np.isfinite(q).all() or (tau is not None and not np.isfinite(tau).all()):
                return Rejection.NONFINITE
        return stamp, q, qd, tau
