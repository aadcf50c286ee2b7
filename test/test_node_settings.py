"""node_settings: the node's own parameters checked without ROS (each error names its parameter)."""
import os

import pytest

from invdyn_ros.errors import ConfigError
from invdyn_ros.pipeline.parameters import PARAMETERS
from invdyn_ros.ros.node_settings import (NodeSettings, integer, needs_robot_model, positive,
                                          process_settings)


def defaults(**changes):
    p = {name: spec.default for name, spec in PARAMETERS.items()}
    p.update(changes)
    return p


def test_defaults_give_the_settings():
    s = NodeSettings.from_params(defaults(checkpoint_path='  ~/ck/arm '))
    assert s.trainer == 'process' and s.stale_timeout_s == PARAMETERS['stale_timeout_s'].default
    assert s.checkpoint_path == os.path.expanduser('~/ck/arm')       # stripped, expanded
    assert isinstance(s.diagnostics_period_s, float) and s.aux_decimation >= 1
    assert NodeSettings.from_params(defaults(checkpoint_period_s=0)).checkpoint_period_s == 0.0
    assert s.trajectory_max_point_dt == 0.0                           # points as planned
    assert NodeSettings.from_params(
        defaults(trajectory_max_point_dt=0.02)).trajectory_max_point_dt == 0.02


@pytest.mark.parametrize('name, value', [
    ('trainer', 'gpu'), ('stale_timeout_s', 0), ('stale_timeout_s', float('nan')),
    ('checkpoint_period_s', -1.0), ('diagnostics_period_s', 0.0), ('publish_period_s', True),
    ('max_updates_per_sample', float('inf')), ('aux_decimation', 0), ('aux_decimation', 1.5),
    ('checkpoint_path', 3), ('checkpoint_mismatch', 'rename'), ('trainer_nice', 20),
    ('trainer_nice', -1), ('trajectory_max_point_dt', -0.02),
    ('trajectory_max_point_dt', float('inf')),
])
def test_an_invalid_value_is_a_config_error_naming_the_parameter(name, value):
    with pytest.raises(ConfigError, match=f'^{name}: '):
        NodeSettings.from_params(defaults(**{name: value}))


def test_process_settings():
    assert process_settings(defaults(executor='single', realtime_priority=7)) == ('single', 7)
    with pytest.raises(ConfigError, match='^executor: '):
        process_settings(defaults(executor='multi'))
    with pytest.raises(ConfigError, match=r'^realtime_priority: must be an integer in 0\.\.99 '
                                          r'\(0 = normal scheduling\), got 100'):
        process_settings(defaults(realtime_priority=100))


def test_integer_and_positive():
    assert integer('x', 3, 1) == 3 and integer('x', 19, 0, 19) == 19
    for bad in (True, 0, 2.0, '3'):
        with pytest.raises(ConfigError, match='^x: must be an integer >= 1'):
            integer('x', bad, 1)
    assert positive('y', 2) == 2.0 and isinstance(positive('y', 2), float)
    assert positive('y', 0, allow_zero=True) == 0.0
    for bad in (0, -1e-9, float('inf'), False, None):
        with pytest.raises(ConfigError, match='^y: must be a finite number > 0'):
            positive('y', bad)


def test_needs_robot_model_only_for_a_prior_or_minus_gravity_without_a_model():
    assert not needs_robot_model({'prior': 'none', 'feedforward_mode': 'total'})
    assert needs_robot_model({'prior': 'rnea'})
    assert needs_robot_model({'feedforward_mode': 'minus_gravity', 'urdf_path': '  '})
    assert not needs_robot_model({'prior': 'rnea', 'urdf_path': '/a.urdf'})
    assert not needs_robot_model({'prior': 'rnea', 'robot_description': '<robot/>'})
