"""The one parameter table (invdyn_ros.pipeline.parameters) and what comes from it: PipelineConfig's
defaults and checks, the node's declarations (read back through the real describe_parameters
service of a running node), ``invdyn_node --help`` and the README's table."""
from __future__ import annotations

import dataclasses
import inspect
import re
import time

import pytest
import rclpy
from rcl_interfaces.srv import DescribeParameters, GetParameters
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from test_node import (REPO, START_TIMEOUT, call_service, log_of, start_node, stop_node,
                       write_params)

from invdyn_ros.errors import ConfigError
from invdyn_ros.pipeline.config import PipelineConfig
from invdyn_ros.pipeline.parameters import (NODE_ONLY_PARAMETERS, PARAMETER_DOCS, PARAMETERS,
                                            PIPELINE_PARAMETERS, Param, check_all, markdown_table)
from invdyn_ros.stages.identification import JOINT_WEIGHT_MAX, OnlineIdentification
from invdyn_ros.stages.physics import PhysicsConfig

NAMES = ['a', 'b']
PIPELINE = [p for p in PARAMETERS.values() if not p.node_only]
NODE_ONLY = [p for p in PARAMETERS.values() if p.node_only]


def boundary_values(p: Param) -> tuple[list, list]:
    """(values just inside the range, values just outside) of a numeric parameter."""
    inside, outside = [], []
    step = 1 if p.kind == 'int' else 1e-3
    if p.lo is not None:
        (inside if not p.lo_open else outside).append(p.lo)
        (inside if p.lo_open else outside).append(p.lo + step if p.lo_open else p.lo - step)
    if p.hi is not None:
        (inside if not p.hi_open else outside).append(p.hi)
        (inside if p.hi_open else outside).append(p.hi - step if p.hi_open else p.hi + step)
    return inside, outside


def wrong_type(p: Param):
    return {'int': 'x', 'float': 'x', 'bool': 'yes', 'str': 3, 'choice': 'nonsense',
            'floats': 'abc', 'names': 5}[p.kind]


# ----------------------------------------------------------------------------- the table
def test_views_hold_every_parameter_once_with_its_default():
    assert set(PIPELINE_PARAMETERS).isdisjoint(NODE_ONLY_PARAMETERS)
    assert set(PIPELINE_PARAMETERS) | set(NODE_ONLY_PARAMETERS) == set(PARAMETERS)
    assert set(PARAMETER_DOCS) == {p.name for p in PARAMETERS.values() if not p.builtin}
    for p in PARAMETERS.values():
        assert p.kind in ('int', 'float', 'bool', 'str', 'choice', 'floats', 'names'), p
        assert p.doc.strip(), p.name
        if p.kind == 'choice':
            assert p.default in p.choices, p.name
    # every default passes its own rule (joint_names has none: required)
    defaults = check_all({'joint_names': NAMES})
    assert defaults['joint_names'] == tuple(NAMES) and defaults['torque_limits'] is None


@pytest.mark.parametrize('param', [p for p in PIPELINE if p.kind in ('int', 'float')],
                         ids=lambda p: p.name)
def test_the_tables_ranges_are_what_the_pipeline_config_accepts(param):
    """Inside the table's range from_params accepts the value (no deeper check is narrower),
    outside it refuses naming the parameter."""
    inside, outside = boundary_values(param)
    assert inside or param.lo is None
    for value in inside:
        PipelineConfig.from_params({'joint_names': NAMES, param.name: value})
    for value in outside:
        with pytest.raises(ConfigError, match=f'^{param.name}: '):
            PipelineConfig.from_params({'joint_names': NAMES, param.name: value})


@pytest.mark.parametrize('param', PIPELINE, ids=lambda p: p.name)
def test_a_wrong_type_is_refused_naming_the_parameter(param):
    with pytest.raises(ConfigError, match=f'^{param.name}: '):
        PipelineConfig.from_params({'joint_names': NAMES, param.name: wrong_type(param)})


@pytest.mark.parametrize('param', [p for p in NODE_ONLY if not p.builtin], ids=lambda p: p.name)
def test_node_only_parameters_follow_the_same_rules(param):
    """from_params ignores them (one YAML serves node and evaluator), the node checks them with
    check_all: the same family of rules."""
    bad = wrong_type(param)
    PipelineConfig.from_params({'joint_names': NAMES, param.name: bad})
    with pytest.raises(ConfigError, match=f'^{param.name}: '):
        check_all({'joint_names': NAMES, param.name: bad})
    inside, outside = boundary_values(param)
    for value in inside:
        check_all({'joint_names': NAMES, param.name: value}, [param.name])
    for value in outside:
        with pytest.raises(ConfigError, match=f'^{param.name}: '):
            check_all({'joint_names': NAMES, param.name: value}, [param.name])


def test_list_rules_and_integral_floats():
    p = check_all({'joint_names': NAMES, 'torque_limits': [1, 2.5], 'window': 4.0,
                   'effort_scale': []})
    assert p['torque_limits'] == (1.0, 2.5) and p['effort_scale'] is None
    assert p['window'] == 4 and isinstance(p['window'], int)
    for name, value, match in [('torque_limits', [1.0], 'need 2 values > 0'),
                               ('torque_limits', [1.0, 0.0], 'need 2 values > 0'),
                               ('effort_scale', [1.0, 0.0], 'non-zero'),
                               ('gravity', [0.0, -9.81], 'need 3'),
                               ('payload_com', [], 'need 3'),
                               ('joint_names', ['a', 'a'], 'unique'),
                               ('window', 2.5, 'integer')]:
        with pytest.raises(ConfigError, match=f'^{name}: .*{match}'):
            check_all({'joint_names': NAMES, name: value})


def test_config_defaults_are_the_tables():
    """PipelineConfig's and PhysicsConfig's own field defaults and OnlineIdentification's (used
    when code builds them directly) come from the table, and from_params without values gives the
    same config."""
    fields = {f.name: f.default for f in dataclasses.fields(PipelineConfig)
              if f.default is not dataclasses.MISSING}
    shared = set(fields) & set(PARAMETERS)
    assert len(shared) >= 8, shared
    for name in shared:
        assert fields[name] == PARAMETERS[name].default, name
    cfg = PipelineConfig.from_params({'joint_names': NAMES})
    for name in shared:
        assert getattr(cfg, name) == PARAMETERS[name].default, name
    assert cfg.learner.batch_size == PARAMETERS['batch_size'].default
    assert cfg.filter.cutoff_hz == PARAMETERS['filter_cutoff_hz'].default
    assert cfg.physics.identification_regularization == \
        PARAMETERS['identification_regularization'].default
    # PhysicsConfig's own defaults (a PipelineConfig built without from_params) too
    physics = {f.name: f.default for f in dataclasses.fields(PhysicsConfig)
               if f.default is not dataclasses.MISSING and f.name in PARAMETERS}
    assert len(physics) >= 8, physics
    for name, default in physics.items():
        expected = PARAMETERS[name].default
        assert (list(default) if isinstance(default, tuple) else default) == expected, name
    # and OnlineIdentification's own (code that builds it directly, e.g. the timing benches)
    ident = inspect.signature(OnlineIdentification).parameters
    assert ident['memory_s'].default == PARAMETERS['identification_memory_s'].default
    assert ident['regularization'].default == PARAMETERS['identification_regularization'].default
    # the regularization's description names the joint weights' cap
    assert f'at most {JOINT_WEIGHT_MAX:g}x' in PARAMETERS['identification_regularization'].doc


# ----------------------------------------------------------------------------- outputs
def test_help_lists_every_declared_parameter_with_type_and_default():
    from invdyn_ros.ros.node import build_arg_parser

    text = build_arg_parser().format_help()
    for name, (default, _) in PARAMETER_DOCS.items():
        p = PARAMETERS[name]
        assert f'  {name} ({p.type_text()}, default {default!r}): ' in text, name
    assert 'use_sim_time' not in text          # rclpy's own


def test_the_readme_table_is_the_generated_one():
    text = (REPO / 'README.md').read_text(encoding='utf-8')
    found = re.search(r'<!-- parameters table: begin -->\n(.*?)<!-- parameters table: end -->',
                      text, re.S)
    assert found, 'README.md lost its parameters table markers'
    assert found.group(1) == markdown_table(), \
        'README parameter table is stale: paste the output of python -m invdyn_ros.pipeline.parameters'
    for name in PARAMETER_DOCS:
        assert f'| `{name}`' in found.group(1)


@pytest.mark.ros
def test_the_running_node_declares_every_parameter_from_the_table(tmp_path):
    params = write_params(tmp_path / 'p.yaml', {
        'joint_names': NAMES, 'torque_limits': [1.0, 2.0], 'trainer': 'inline', 'window': 4,
        'hidden_size': 8, 'stale_timeout_s': 1})
    proc = start_node(['--ros-args', '--params-file', str(params)], tmp_path / 'node.log')
    ctx = Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node('invdyn_param_probe', context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    try:
        describe = node.create_client(DescribeParameters, '/invdyn_node/describe_parameters')
        get = node.create_client(GetParameters, '/invdyn_node/get_parameters')
        deadline = time.monotonic() + START_TIMEOUT
        while not (describe.service_is_ready() and get.service_is_ready()):
            assert proc.poll() is None, log_of(proc)[-3000:]
            assert time.monotonic() < deadline, log_of(proc)[-3000:]
            executor.spin_once(timeout_sec=0.1)
        names = list(PARAMETER_DOCS)

        def call(client, request):
            return call_service(client, request, proc,
                                spin=lambda s: executor.spin_once(timeout_sec=s))

        descriptors = call(describe, DescribeParameters.Request(names=names)).descriptors
        values = call(get, GetParameters.Request(names=['window', 'stale_timeout_s',
                                                        'batch_size'])).values
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        code = stop_node(proc)
    assert code == 0, log_of(proc)[-3000:]
    assert [d.name for d in descriptors] == names
    for d in descriptors:
        p = PARAMETERS[d.name]
        assert d.description == p.description, d.name
        assert d.additional_constraints == p.type_text(), d.name
        assert d.read_only and d.dynamic_typing, d.name
    assert values[0].integer_value == 4                     # given
    assert values[1].integer_value == 1                     # given (an int for a float: fine)
    assert values[2].integer_value == PARAMETERS['batch_size'].default   # the table's default
