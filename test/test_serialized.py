"""SerializedJointState: the bytes decode (with rclpy) to exactly the message rclpy would send.

Byte equality with ``serialize_message`` holds except in CDR padding bytes, whose content the
format leaves unspecified (Fast CDR does not clear them), so the check is: same length, and the
decoded messages are equal field by field, bit for bit."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip('rclpy')
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import JointState  # noqa: E402

from invdyn_ros.ros.serialized import SerializedJointState  # noqa: E402


def _message(names, frame_id, sec, nanosec, p, v, e):
    m = JointState()
    m.name = list(names)
    m.header.frame_id = frame_id
    m.header.stamp.sec, m.header.stamp.nanosec = sec, nanosec
    m.position, m.velocity, m.effort = p.tolist(), v.tolist(), e.tolist()
    return m


@pytest.mark.parametrize('names, frame_id', [
    ([f'lbr_A{i}' for i in range(1, 8)], ''),
    (['shoulder_pan_joint', 'shoulder_lift_joint', 'elbow_joint', 'wrist_1_joint',
      'wrist_2_joint', 'wrist_3_joint'], 'base_link'),
    (['j'], ''),
    (['ä', 'bb', 'ccc', 'dddd', 'eeeee'], 'odd'),     # UTF-8 and every string alignment
])
def test_bytes_equal_rclpy_serialization(names, frame_id):
    s = SerializedJointState(names, frame_id)
    assert s.names == tuple(names)
    rng = np.random.default_rng(len(names))
    n = len(names)
    for _ in range(100):
        p, v, e = rng.normal(size=(3, n)) * 10.0 ** rng.integers(-300, 300, size=(3, n))
        sec = int(rng.integers(-2 ** 31, 2 ** 31))
        nanosec = int(rng.integers(0, 10 ** 9))
        m = _message(names, frame_id, sec, nanosec, p, v, e)
        data = s.fill(m.header.stamp, p, v, e)
        assert len(data) == len(serialize_message(m))
        back = deserialize_message(data, JointState)
        assert back == deserialize_message(serialize_message(m), JointState)
        assert list(back.name) == list(names) and back.header.frame_id == frame_id
        assert (back.header.stamp.sec, back.header.stamp.nanosec) == (sec, nanosec)
        np.testing.assert_array_equal(back.position, p)
        np.testing.assert_array_equal(back.velocity, v)
        np.testing.assert_array_equal(back.effort, e)


def test_fill_does_not_leak_values_between_messages_and_accepts_float32():
    s = SerializedJointState(['a', 'b'])
    first = s.fill(_message(['a', 'b'], '', 1, 2, *np.ones((3, 2))).header.stamp,
                   [1.0, 2.0], [3.0, 4.0], [5.0, 6.0])
    second = s.fill(_message(['a', 'b'], '', 3, 4, *np.ones((3, 2))).header.stamp,
                    np.float32([7.5, 8.5]), [9.0, 10.0], [11.0, 12.0])
    a, b = deserialize_message(first, JointState), deserialize_message(second, JointState)
    assert list(a.effort) == [5.0, 6.0] and a.header.stamp.sec == 1     # bytes, not a view
    assert list(b.position) == [7.5, 8.5] and b.header.stamp.nanosec == 4


def test_wrong_lengths_raise_and_no_names_is_rejected():
    s = SerializedJointState(['a', 'b'])
    stamp = JointState().header.stamp
    with pytest.raises(ValueError):
        s.fill(stamp, [1.0], [1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        SerializedJointState([])
