"""The one JointState rule: ordering by name, None for empty arrays, typed rejections."""
import math

import numpy as np
import pytest
from sensor_msgs.msg import JointState

from invdyn_ros.offline.bag import JOINT_STATE_TYPE, joint_state_typestore
from invdyn_ros.stages.joint_state import COUNTERS, JointStateRule, Rejection


def msg(names, pos, vel=(), eff=(), sec=5, nanosec=250_000_000):
    m = JointState()
    m.header.stamp.sec, m.header.stamp.nanosec = sec, nanosec
    m.name = list(names)
    m.position, m.velocity, m.effort = list(pos), list(vel), list(eff)
    return m


def test_orders_by_name_and_ignores_extra_joints():
    rule = JointStateRule(['a', 'b'])
    stamp, q, qd, tau = rule(msg(['gripper', 'b', 'a'], [9.0, 2.0, 1.0], [0.9, 0.2, 0.1],
                                 [90.0, 20.0, 10.0]))
    assert stamp == pytest.approx(5.25)
    np.testing.assert_array_equal(q, [1.0, 2.0])
    np.testing.assert_array_equal(qd, [0.1, 0.2])
    np.testing.assert_array_equal(tau, [10.0, 20.0])
    assert q.dtype == np.float64


def test_name_order_may_change_between_messages():
    rule = JointStateRule(['a', 'b'])
    assert list(rule(msg(['a', 'b'], [1.0, 2.0]))[1]) == [1.0, 2.0]
    assert list(rule(msg(['b', 'a'], [1.0, 2.0]))[1]) == [2.0, 1.0]
    assert list(rule(msg(['a', 'b'], [3.0, 4.0]))[1]) == [3.0, 4.0]


def test_empty_velocity_and_effort_are_none():
    _, q, qd, tau = JointStateRule(['a'])(msg(['a'], [1.0]))
    assert qd is None and tau is None
    _, _, qd, tau = JointStateRule(['a'])(msg(['a'], [1.0], [0.5]))
    assert qd is not None and tau is None


@pytest.mark.parametrize('m, reason', [
    (msg(['a', 'a', 'b'], [1, 2, 3]), Rejection.DUPLICATE_NAMES),
    (msg(['a'], [1.0]), Rejection.MISSING_JOINT),
    (msg(['a', 'b'], [1.0]), Rejection.LENGTHS),
    (msg(['a', 'b'], [1.0, 2.0], [0.1]), Rejection.LENGTHS),
    (msg(['a', 'b'], [1.0, 2.0], [], [1.0, 2.0, 3.0]), Rejection.LENGTHS),
    (msg(['a', 'b'], [1.0, 2.0], sec=0, nanosec=0), Rejection.ZERO_STAMP),
    (msg(['a', 'b'], [math.nan, 2.0]), Rejection.NONFINITE),
    (msg(['b', 'a'], [1.0, math.inf]), Rejection.NONFINITE),
    (msg(['a', 'b'], [1.0, 2.0], [], [1.0, -math.inf]), Rejection.NONFINITE),
])
def test_rejections_are_typed_and_name_a_counter(m, reason):
    got = JointStateRule(['a', 'b'])(m)
    assert got is reason
    assert got.counter in COUNTERS and got.text


def test_what_is_not_a_rejection():
    rule = JointStateRule(['a', 'b'])
    # NaN in an ignored extra joint
    assert not isinstance(rule(msg(['a', 'b', 'x'], [1.0, 2.0, math.nan], [], [1, 2, math.nan])),
                          Rejection)
    # NaN / Inf velocities pass: the estimator replaces them by position differences
    _, _, qd, _ = rule(msg(['a', 'b'], [1.0, 2.0], [math.nan, math.inf]))
    assert math.isnan(qd[0]) and math.isinf(qd[1])
    # huge finite values whose sum overflows are finite (the estimator judges magnitudes)
    _, q, _, _ = rule(msg(['a', 'b'], [1.7e308, 1.7e308]))
    assert np.isfinite(q).all()
    # a stamp with only nanoseconds is set
    assert rule(msg(['a', 'b'], [1.0, 2.0], sec=0, nanosec=1))[0] == pytest.approx(1e-9)


def test_node_counters_are_the_node_diagnostics_names():
    assert set(COUNTERS) == {'rejected_names', 'rejected_shape', 'rejected_stamp',
                             'rejected_nonfinite'}


def test_a_bag_message_is_judged_like_an_rclpy_message():
    ts = joint_state_typestore()
    T = ts.types
    cases = [(['b', 'a'], [1.0, 2.0], [0.1, 0.2], []),
             (['b', 'a'], [1.0, math.nan], [], [3.0, 4.0]),
             (['a'], [1.0], [], [])]
    for names, pos, vel, eff in cases:
        bag_msg = ts.deserialize_cdr(ts.serialize_cdr(T[JOINT_STATE_TYPE](
            header=T['std_msgs/msg/Header'](stamp=T['builtin_interfaces/msg/Time'](
                sec=7, nanosec=5), frame_id=''),
            name=names, position=np.array(pos), velocity=np.array(vel, dtype=np.float64),
            effort=np.array(eff, dtype=np.float64)), JOINT_STATE_TYPE), JOINT_STATE_TYPE)
        a = JointStateRule(['a', 'b'])(bag_msg)
        b = JointStateRule(['a', 'b'])(msg(names, pos, vel, eff, sec=7, nanosec=5))
        if isinstance(b, Rejection):
            assert a is b
            continue
        assert a[0] == b[0]
        for x, y in zip(a[1:], b[1:]):
            assert (x is None) == (y is None)
            if x is not None:
                np.testing.assert_array_equal(x, y)


def test_any_message_like_object_with_any_float_sequences():
    """Lists, numpy arrays, array('f'): converted, never reinterpreted as raw float64 bytes."""
    import array
    from types import SimpleNamespace

    stamp = SimpleNamespace(sec=1, nanosec=0)
    m = SimpleNamespace(header=SimpleNamespace(stamp=stamp), name=['b', 'a'],
                        position=array.array('f', [1.5, 2.5]), velocity=[0.5, 0.25],
                        effort=np.array([3.0, 4.0], dtype=np.float32))
    _, q, qd, tau = JointStateRule(['a', 'b'])(m)
    np.testing.assert_array_equal(q, [2.5, 1.5])
    np.testing.assert_array_equal(qd, [0.25, 0.5])
    np.testing.assert_array_equal(tau, [4.0, 3.0])
    assert q.dtype == qd.dtype == tau.dtype == np.float64
