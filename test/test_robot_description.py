"""invdyn_ros.ros.robot_description: the URDF from a transient-local topic, with real rclpy
nodes in this process (the node-level test is test_node_physics)."""
import threading
import time

import pytest
import rclpy
from rclpy.node import Node
from std_msgs.msg import String

from invdyn_ros.errors import InvdynError, TrainerError
from invdyn_ros.ros.robot_description import ROBOT_DESCRIPTION_QOS, wait_for_robot_description


@pytest.fixture
def context():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        yield ctx
    finally:
        rclpy.shutdown(context=ctx)


def make_node(context, name, namespace=''):
    return Node(name, namespace=namespace, context=context)


def test_a_description_published_before_the_wait_arrives(context):
    pub_node = make_node(context, 'rsp', namespace='arm')
    waiter = make_node(context, 'waiter', namespace='arm')
    pub = pub_node.create_publisher(String, 'robot_description', ROBOT_DESCRIPTION_QOS)
    pub.publish(String(data='<robot name="a"/>'))     # before any subscriber: transient local
    try:
        urdf = wait_for_robot_description(waiter, timeout_s=30.0)
        assert urdf == '<robot name="a"/>'
        assert list(waiter.subscriptions) == []              # its subscription is gone again
    finally:
        pub_node.destroy_node()
        waiter.destroy_node()


def test_a_blank_description_is_skipped_for_the_next(context):
    pub_node = make_node(context, 'rsp')
    waiter = make_node(context, 'waiter')
    pub = pub_node.create_publisher(String, 'robot_description', ROBOT_DESCRIPTION_QOS)
    pub.publish(String(data='  \n'))

    def later():
        time.sleep(0.5)
        pub.publish(String(data='<robot name="b"/>'))
    thread = threading.Thread(target=later)
    thread.start()
    try:
        assert wait_for_robot_description(waiter, timeout_s=30.0) == '<robot name="b"/>'
    finally:
        thread.join()
        pub_node.destroy_node()
        waiter.destroy_node()


def test_no_description_times_out_naming_the_topic(context):
    waiter = make_node(context, 'waiter', namespace='left')
    try:
        with pytest.raises(InvdynError, match='/left/robot_description within 0.3 s'):
            wait_for_robot_description(waiter, timeout_s=0.3)
        assert list(waiter.subscriptions) == []
    finally:
        waiter.destroy_node()


def test_a_stop_request_ends_the_wait(context):
    waiter = make_node(context, 'waiter')
    abort = threading.Event()
    timer = threading.Timer(0.3, abort.set)
    timer.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(TrainerError, match='stopped while waiting'):
            wait_for_robot_description(waiter, timeout_s=0.0, abort=abort)   # 0: no timeout
        assert time.monotonic() - t0 < 30.0
        assert list(waiter.subscriptions) == []
    finally:
        timer.cancel()
        waiter.destroy_node()
