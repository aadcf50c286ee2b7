"""node_parameters.py: read_parameters on a real rclpy node (declared from the table, read back,
checked; unknown names and empty lists are ConfigErrors naming them)."""
from __future__ import annotations

import pytest
import rclpy
from rclpy.context import Context
from rclpy.node import Node
from rclpy.parameter import Parameter

from invdyn_ros.errors import ConfigError
from invdyn_ros.pipeline.parameters import PARAMETER_DOCS, PARAMETERS
from invdyn_ros.ros.node_parameters import read_parameters


@pytest.fixture
def make_node():
    ctx = Context()
    rclpy.init(context=ctx)
    nodes = []

    def make(*overrides: Parameter) -> Node:
        node = Node('params_under_test', context=ctx, parameter_overrides=list(overrides),
                    automatically_declare_parameters_from_overrides=False)
        nodes.append(node)
        return node

    yield make
    for node in nodes:
        node.destroy_node()
    rclpy.shutdown(context=ctx)


def test_every_parameter_is_declared_with_its_default_and_read_back(make_node):
    node = make_node(Parameter('joint_names', value=['a', 'b']),
                     Parameter('torque_limits', value=[5.0, 6.0]),
                     Parameter('use_sim_time', value=False))          # rclpy's own: accepted
    values = read_parameters(node)
    assert set(values) == set(PARAMETER_DOCS)
    assert list(values['joint_names']) == ['a', 'b']
    assert list(values['torque_limits']) == [5.0, 6.0]
    assert type(values['torque_limits']) in (list, tuple)            # not array.array
    assert values['window'] == PARAMETERS['window'].default
    assert all(node.has_parameter(name) for name in PARAMETER_DOCS)
    assert read_parameters(node) == values                            # a second read: the same


def test_an_unknown_name_lists_the_accepted_ones(make_node):
    node = make_node(Parameter('joint_names', value=['a']), Parameter('windw', value=3))
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['windw'\].*accepted"):
        read_parameters(node)


def test_an_empty_list_and_missing_joint_names_name_the_parameter(make_node):
    with pytest.raises(ConfigError, match='joint_names: .*non-empty'):
        read_parameters(make_node(Parameter('joint_names', value=[])))
    with pytest.raises(ConfigError, match='joint_names: required'):
        read_parameters(make_node())
    with pytest.raises(ConfigError, match='window'):                  # the table's range check
        read_parameters(make_node(Parameter('joint_names', value=['a']),
                                  Parameter('window', value=0)))
