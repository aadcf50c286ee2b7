"""node_messages: the node's pre-built Float64MultiArray and DiagnosticArray messages (real
message classes, serialized with rclpy's serializer where the wire form matters)."""
from __future__ import annotations

import math

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Float64MultiArray

from invdyn_ros.ros.node_diagnostics import ERROR, OK, WARN, Status
from invdyn_ros.ros.node_messages import (AuxMessages, FeedforwardMessage, diagnostic_array,
                                          farray)

JOINTS = ('j1', 'j2', 'j3')


def test_farray_keeps_float64_values_exactly():
    x = np.array([1.0, -2.5e-300, 3.0e300, math.pi])
    assert list(farray(x)) == list(x)
    assert list(farray([1, 2])) == [1.0, 2.0]                  # ints become float64
    assert list(farray(np.arange(6.0)[::2])) == [0.0, 2.0, 4.0]   # a strided view


def test_feedforward_message_carries_the_torque_then_zeros_on_the_wire():
    ff = FeedforwardMessage(3)
    msg = deserialize_message(serialize_message(ff.fill(np.array([1.5, -2.0, 0.25]))),
                              Float64MultiArray)
    assert list(msg.data) == [1.5, -2.0, 0.25]
    assert [(d.label, d.size, d.stride) for d in msg.layout.dim] == [('joint', 3, 3)]
    assert list(ff.zeros().data) == [0.0, 0.0, 0.0]


def test_identifier_message_is_a_row_major_3_by_n_array_with_labelled_rows_and_joints():
    aux = AuxMessages(JOINTS, ('residual_lstm', 'gru'))
    msg = aux.identifier(np.array([0, 1, 0]), np.array([0.1, 0.2, 0.3]),
                         np.array([1.1, 1.2, 1.3]))
    msg = deserialize_message(serialize_message(msg), Float64MultiArray)
    np.testing.assert_array_equal(np.reshape(msg.data, (3, 3)),
                                  [[0, 1, 0], [0.1, 0.2, 0.3], [1.1, 1.2, 1.3]])
    assert [(d.label, d.size, d.stride) for d in msg.layout.dim] == [
        ('active,std_residual_lstm,std_gru', 3, 9), ('j1,j2,j3', 3, 3)]


def test_aux_messages_with_a_non_finite_value_are_not_built():
    aux = AuxMessages(JOINTS, ('lstm', 'gru'))
    assert aux.identifier(np.zeros(3), np.array([0.1, math.nan, 0.3]), np.zeros(3)) is None
    assert aux.uncertainty(np.array([0.1, 0.2, math.inf])) is None
    msg = aux.uncertainty(np.array([0.1, 0.2, 0.3]))
    assert list(msg.data) == [0.1, 0.2, 0.3]
    assert [(d.label, d.size) for d in msg.layout.dim] == [('j1,j2,j3', 3)]


def test_diagnostic_array_maps_levels_and_stringifies_values():
    stamp = Time(sec=12, nanosec=34)
    msg = diagnostic_array([Status('invdyn: a', 'arm', OK, 'fine', [('rate', 999.5)]),
                            Status('invdyn: b', 'arm', WARN, 'hm', [('ready', False)]),
                            Status('invdyn: c', 'arm', ERROR, 'bad', [])], stamp)
    assert [s.level for s in msg.status] == [DiagnosticStatus.OK, DiagnosticStatus.WARN,
                                             DiagnosticStatus.ERROR]
    assert [(kv.key, kv.value) for kv in msg.status[0].values] == [('rate', '999.5')]
    assert [(kv.key, kv.value) for kv in msg.status[1].values] == [('ready', 'False')]
    assert msg.status[2].message == 'bad' and msg.status[2].hardware_id == 'arm'
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 34)
