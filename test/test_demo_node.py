"""demo_node.py: invdyn_node's parameters in the demo (its child process is exercised by the real
runs in test_demo.py)."""
from __future__ import annotations

from pathlib import Path

from invdyn_ros.sim.demo_node import (DEMO_NODE_PARAMETERS, DEMO_PARAMS_FILE, load_base_parameters,
                                      node_parameters)

REPO = Path(__file__).resolve().parents[1]


def test_node_parameters_from_ur5_yaml():
    base = load_base_parameters(REPO / 'config' / 'ur5.yaml')
    params = node_parameters(('j1', 'j2'), [10.0, 20.0], 3, base, {'window': 5})
    assert params['joint_names'] == ['j1', 'j2'] and params['torque_limits'] == [10.0, 20.0]
    assert params['effort_scale'] == [1.0, 1.0] and params['seed'] == 3
    assert params['window'] == 5 and params['checkpoint_path'] == ''   # demo learns from scratch
    assert params['batch_size'] == base['batch_size']


def test_the_demo_parameters_come_from_config_demo_yaml():
    assert DEMO_PARAMS_FILE is not None and DEMO_PARAMS_FILE.name == 'demo.yaml'
    assert DEMO_NODE_PARAMETERS == load_base_parameters(DEMO_PARAMS_FILE)
    params = node_parameters(('j1',), [1.0], 0, {}, {})
    assert params['prior'] == 'none' and params['feedforward_mode'] == 'total'   # no URDF: none
    assert params['window'] == DEMO_NODE_PARAMETERS['window']
